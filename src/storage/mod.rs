//! Everything kept on disk under the data directory: the registry (sites, customers, zones,
//! instruments) and API keys, each a JSON document replaced atomically.
mod durable;
pub mod intensity;
pub mod keys;
pub mod logged;
pub mod readings;
pub mod registry;
pub mod table;
pub mod wal;

pub use durable::DurableDocument;
pub use keys::KeyStore;
pub use registry::{Entity, Registry, RegistryError};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid document: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}
