//! carbon-ledger: energy and CO2e per workload from measured power and the grid's carbon intensity.
//!
//! Data flows one way: `http` -> `domain` (parsing) -> `storage`; nothing below `http` knows actix.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounting;
pub mod allocator;
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
