//! All API tests in one binary (one link of the large dependency tree).
mod auth;
mod crash;
mod errors;
mod feeds;
mod footprint;
mod helpers;
mod intensity;
mod operations;
mod readings;
mod registry;
