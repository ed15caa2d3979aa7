//! Structured logs with `tracing`, filtered by `RUST_LOG`.
use tracing_subscriber::EnvFilter;

/// Our events at info; delta-rs' kernel logs every snapshot at info, so it is held to warnings.
const DEFAULT_FILTER: &str =
    "info,buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake_core=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
