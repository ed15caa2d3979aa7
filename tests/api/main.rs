//! All API tests in one binary (one link of the large dependency tree).
mod auth;
mod consistency;
mod crash;
mod dashboard;
mod embodied;
mod errors;
mod feeds;
mod footprint;
mod helpers;
mod insights;
mod integrity;
mod intensity;
mod operations;
mod periods;
mod readings;
mod registry;
mod telemetry;
