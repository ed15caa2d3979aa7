//! Structured logs with `tracing`: readable with colour on a terminal, JSON lines (no ANSI codes)
//! everywhere else, for log shippers. `RUST_LOG` adds to the default filter.
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Our events at info; delta-rs' kernel logs every snapshot at info (every table poll), so it is
/// held to warnings unless `RUST_LOG` names it.
const DEFAULT_FILTER: &str =
    "info,buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake_core=warn";

fn filter() -> EnvFilter {
    let extra = std::env::var("RUST_LOG").unwrap_or_default();
    let quiet_kernel = !extra.contains("kernel") && !extra.contains("deltalake");
    let directives = match (extra.is_empty(), quiet_kernel) {
        (true, _) => DEFAULT_FILTER.to_owned(),
        (false, true) => {
            format!("{extra},buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake_core=warn")
        }
        (false, false) => extra,
    };
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

pub fn init() {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().with_ansi(false).try_init()
    };
}
