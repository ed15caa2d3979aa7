//! The `carbon-ledger` binary: parses the command line and wires the library together.
use carbon_ledger::clock::SystemClock;
use carbon_ledger::config::{Overrides, Settings};
use carbon_ledger::http::{openapi_document, Application};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    version,
    about = "Energy and CO2e per workload from measured power and grid carbon intensity"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// TOML config file.
        #[arg(long, env = "CARBON_LEDGER_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "CARBON_LEDGER_BIND")]
        bind: Option<String>,
        /// Data directory [default: ./data].
        #[arg(long, env = "CARBON_LEDGER_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Where the tables and registry live, shared by replicas (`s3://bucket/prefix`)
        /// [default: the data directory].
        #[arg(long, env = "CARBON_LEDGER_STORAGE_URL")]
        storage_url: Option<String>,
        /// This replica's write-ahead log directory [default: <data-dir>/wal].
        #[arg(long, env = "CARBON_LEDGER_WAL_DIR")]
        wal_dir: Option<PathBuf>,
        /// This replica's id [default: generated, kept in the WAL directory].
        #[arg(long, env = "CARBON_LEDGER_REPLICA_ID")]
        replica_id: Option<String>,
        /// Load the demo data set (sites, customers, a week of readings and intensity) into an
        /// empty data directory.
        #[arg(long)]
        demo: bool,
    },
    /// Print the OpenAPI contract (what openapi/openapi.json holds).
    Openapi,
    /// Maintain the energy rollups of a data directory or bucket (safe beside running servers).
    Rollups {
        #[command(subcommand)]
        action: RollupsAction,
        /// TOML config file.
        #[arg(long, env = "CARBON_LEDGER_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: ./data].
        #[arg(long, env = "CARBON_LEDGER_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Where the tables live (`s3://bucket/prefix`) [default: the data directory].
        #[arg(long, env = "CARBON_LEDGER_STORAGE_URL")]
        storage_url: Option<String>,
    },
    /// Exit 0 if the local server answers /healthz (for container health checks; no curl needed).
    Healthcheck {
        #[arg(long, env = "CARBON_LEDGER_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
    },
}

#[derive(Subcommand)]
enum RollupsAction {
    /// Recompute the rollups of the readings dates in [--from, --to] (UTC, inclusive; default:
    /// all) from the readings, whether they look stale or not.
    Rebuild {
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
    },
    /// Recompute every date from its readings and list where the stored rollups differ (exit
    /// status 1 if anywhere).
    Verify,
}

fn main() -> ExitCode {
    carbon_ledger::accounting::prefer_streaming_engine();
    match Cli::parse().command {
        Command::Openapi => match openapi_document().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Rollups {
            action,
            config,
            data_dir,
            storage_url,
        } => {
            let overrides = Overrides {
                config,
                data_dir,
                storage_url,
                ..Overrides::default()
            };
            match maintain_rollups(overrides, action) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck { bind } => match healthcheck(&bind) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("unhealthy: {err}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config,
            bind,
            data_dir,
            storage_url,
            wal_dir,
            replica_id,
            demo,
        } => {
            carbon_ledger::telemetry::init();
            owner_only_files();
            let overrides = Overrides {
                config,
                bind,
                data_dir,
                storage_url,
                wal_dir,
                replica_id,
                admin_token: std::env::var("CARBON_LEDGER_ADMIN_TOKEN").ok(),
                demo,
            };
            match serve(overrides) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(error = %err, "carbon-ledger stopped");
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Keys, registry, log and tables are the operator's alone: every file and directory this process
/// makes is owner-only (0600 / 0700), whatever the shell's umask.
fn owner_only_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// A bare HTTP/1.0 GET of /healthz on the listening address (a wildcard bind is reached on loopback).
fn healthcheck(bind: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::{Read, Write};
    let port = bind
        .rsplit_once(':')
        .map(|(_, port)| port)
        .unwrap_or("8080");
    let host = match bind.rsplit_once(':').map(|(host, _)| host) {
        Some("0.0.0.0") | Some("[::]") | None => "127.0.0.1",
        Some(host) => host,
    };
    let timeout = Some(std::time::Duration::from_secs(3));
    let address = format!("{host}:{port}");
    let mut stream = std::net::TcpStream::connect(&address)?;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "{address} answered: {}",
            answer.lines().next().unwrap_or("nothing")
        )
        .into())
    }
}

#[actix_web::main]
async fn serve(overrides: Overrides) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::load(overrides)?;
    let app = Application::build(&settings, Arc::new(SystemClock)).await?;
    if let Some(token) = app.generated_admin_token() {
        eprintln!(
            "\n  First start: generated the admin API key (shown only now, stored hashed):\n\n    {token}\n\n  Use it as 'Authorization: Bearer {token}'. Set CARBON_LEDGER_ADMIN_TOKEN to choose your own.\n"
        );
    }
    tracing::info!(bind = %settings.bind, port = app.port(), data_dir = %settings.data_dir.display(), "carbon-ledger listening");
    app.run_until_stopped().await?;
    tracing::info!("carbon-ledger stopped cleanly");
    Ok(())
}

/// Runs a rollups command against the store `overrides` name, as a replica of its own with a
/// scratch log directory (it writes nothing there), so it can run beside the servers. Returns
/// whether all is well.
#[tokio::main(flavor = "multi_thread")]
async fn maintain_rollups(
    overrides: Overrides,
    action: RollupsAction,
) -> Result<bool, Box<dyn std::error::Error>> {
    use carbon_ledger::storage::location::Location;
    use carbon_ledger::storage::logged::{LoggedTable, LoggedTableOptions};
    use carbon_ledger::storage::replica::Replica;
    use carbon_ledger::storage::rollups::{Rollups, Scope};
    let settings = Settings::load(overrides)?;
    let root = match &settings.storage_url {
        Some(url) => url.clone(),
        None => settings.data_dir.to_string_lossy().into_owned(),
    };
    let location = Location::open(&root, &settings.storage_options)?;
    let scratch =
        std::env::temp_dir().join(format!("carbon-ledger-rollups-{}", std::process::id()));
    let replica = Replica::open(&scratch, None)?;
    let options = LoggedTableOptions {
        cache_rows: 0,
        ..LoggedTableOptions::default()
    };
    let decoded_files = options.decoded.clone();
    let spec = carbon_ledger::storage::readings::SPEC;
    let readings = LoggedTable::open(&location, &scratch, &replica, spec, options).await?;
    let rollups = Rollups::open(
        &location,
        &replica,
        std::time::Duration::from_secs(1),
        decoded_files,
    )
    .await?;
    let outcome = match action {
        RollupsAction::Rebuild { from, to } => {
            let (from, to) = (from.map(|d| d.to_string()), to.map(|d| d.to_string()));
            let scope = Scope::Rebuild(from.as_deref(), to.as_deref());
            let dates = rollups.refresh(&readings, scope).await?;
            println!("rebuilt the energy rollups of {dates} readings dates");
            true
        }
        RollupsAction::Verify => {
            let differences = rollups.verify(&readings).await?;
            for difference in &differences {
                println!("{}: {}", difference.date, difference.detail);
            }
            if differences.is_empty() {
                println!("the energy rollups match the readings");
            }
            differences.is_empty()
        }
    };
    drop(readings);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(outcome)
}
