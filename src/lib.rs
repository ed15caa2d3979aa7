//! carbon-ledger: energy and CO2e per workload from measured power and the grid's carbon intensity.
//!
//! Data flows one way: `http` -> `domain` (parsing) -> `storage`; nothing below `http` knows actix.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounting;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod insights;
pub mod reports;
pub mod sources;
pub mod storage;
pub mod supervisor;
pub mod telemetry;

/// mimalloc for every binary built on the crate (server, tests, benchmarks). With the system
/// allocator, each ingest request's megabyte-sized buffers came as fresh mappings, page-faulted on
/// first touch: encoding a 10,000-reading batch for the log took 78 ns a reading, 7 ns once such
/// memory was reused.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
