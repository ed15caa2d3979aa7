//! All API tests in one binary (one link of the large dependency tree).
mod auth;
mod errors;
mod helpers;
mod operations;
mod registry;
