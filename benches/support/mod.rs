//! What both benchmarks share: a real server on a loopback port with its own data directory.
use carbon_ledger::clock::SystemClock;
use carbon_ledger::config::Settings;
use carbon_ledger::http::Application;
use carbon_ledger::storage::logged::LoggedTable;
use carbon_ledger::storage::rollups::Rollups;
use std::sync::Arc;

pub const TOKEN: &str = "bench-admin-token";

pub struct BenchServer {
    pub base: String,
    pub client: reqwest::Client,
    pub handle: actix_web::dev::ServerHandle,
    /// The readings table behind the server.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; only the rollups bench reads it"
    )]
    pub readings: Arc<LoggedTable>,
    #[allow(
        dead_code,
        reason = "each bench compiles this module; only the rollups bench reads it"
    )]
    pub rollups: Option<Arc<Rollups>>,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
    data_dir: tempfile::TempDir,
}

/// Starts the server in this process with `settings`, on a free port, with its own data directory
/// and the benchmarks' admin token.
pub async fn start(settings: Settings) -> BenchServer {
    start_in(settings, tempfile::tempdir().unwrap()).await
}

/// `start`, on the data directory `dir` (another server's, stopped: the same data).
pub async fn start_in(settings: Settings, dir: tempfile::TempDir) -> BenchServer {
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: dir.path().to_owned(),
        admin_token: Some(TOKEN.into()),
        ..settings
    };
    let app = Application::build(&settings, Arc::new(SystemClock))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let [readings, ..] = app.tables();
    let rollups = app.rollups();
    let running = tokio::spawn(app.run_until_stopped());
    BenchServer {
        base,
        client: reqwest::Client::new(),
        handle,
        readings,
        rollups,
        running,
        data_dir: dir,
    }
}

impl BenchServer {
    /// Sends `request` with the admin token; an answer other than 2xx stops the benchmark.
    #[allow(
        dead_code,
        reason = "each bench compiles this module; the rollups and remote-write benches send with it"
    )]
    pub async fn send(&self, request: reqwest::RequestBuilder, what: &str) {
        let response = request.bearer_auth(TOKEN).send().await.unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "{what}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Stops the server and waits for its last flush, before the runtime goes away; hands back
    /// its data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.handle.stop(true).await;
        self.running.await.unwrap().unwrap();
        self.data_dir
    }
}
