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
    /// Exit 0 if the local server answers /healthz (for container health checks; no curl needed).
    Healthcheck {
        #[arg(long, env = "CARBON_LEDGER_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
    },
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
