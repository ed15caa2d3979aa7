//! Spawns the real server on 127.0.0.1:0 with its own temporary data directory, and speaks HTTP to it.
use carbon_ledger::clock::FixedClock;
use carbon_ledger::config::Settings;
use carbon_ledger::http::Application;
use carbon_ledger::storage::logged::LoggedTable;
use carbon_ledger::storage::rollups::{Rollups, Scope};
use reqwest::{Method, Response};
use serde_json::Value;
use std::sync::Arc;
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A runtime for property tests that drive servers (proptest's cases are synchronous), and the
/// case count and shrinking they can afford with a server or two per case.
pub fn property_runtime(cases: u32) -> (tokio::runtime::Runtime, proptest::test_runner::Config) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = proptest::test_runner::Config {
        cases,
        max_shrink_iters: 4 * cases,
        ..proptest::test_runner::Config::default()
    };
    (runtime, config)
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub data_dir: TempDir,
    handle: actix_web::dev::ServerHandle,
    tables: [Arc<LoggedTable>; 5],
    rollups: Option<Arc<Rollups>>,
}

pub fn settings_for(dir: &TempDir) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: dir.path().to_owned(),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_app_with(settings_for(&dir), dir).await
}

pub async fn spawn_app_with(settings: Settings, data_dir: TempDir) -> TestApp {
    let clock = FixedClock::at("2026-03-02T00:00:00Z".parse().expect("time"));
    let app = Application::build(&settings, Arc::new(clock))
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let tables = app.tables();
    let rollups = app.rollups();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        data_dir,
        handle,
        tables,
        rollups,
    }
}

impl TestApp {
    /// Stops the server (draining requests) and hands back its data directory for a restart.
    pub async fn stop(self) -> TempDir {
        self.handle.stop(true).await;
        self.data_dir
    }

    pub async fn restart(self) -> TestApp {
        let dir = self.stop().await;
        spawn_app_with(settings_for(&dir), dir).await
    }

    /// Moves every acknowledged reading and intensity point from the log into its table now, as
    /// the background flusher would.
    pub async fn flush(&self) {
        for table in &self.tables {
            table.flush().await.expect("flush");
        }
    }

    /// Compacts every table now, as the background flusher does once a minute.
    pub async fn compact(&self) {
        for table in &self.tables {
            table.compact().await.expect("compact");
        }
    }

    /// Recomputes stale energy rollups now, as the background refresher does after a flush.
    /// Returns how many dates it wrote.
    pub async fn refresh_rollups(&self) -> usize {
        let rollups = self.rollups.as_ref().expect("rollups on");
        (rollups.refresh(self.readings(), Scope::Stale).await).expect("refresh")
    }

    /// The energy rollups behind the server.
    pub fn rollups(&self) -> &Rollups {
        self.rollups.as_ref().expect("rollups on")
    }

    /// The readings table behind the server.
    pub fn readings(&self) -> &LoggedTable {
        &self.tables[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, Some(ADMIN_TOKEN), None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.call(Method::PUT, path, Some(ADMIN_TOKEN), Some(&body))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(ADMIN_TOKEN), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.call(Method::DELETE, path, Some(ADMIN_TOKEN), None)
            .await
    }

    /// Posts raw bytes as the admin, with the given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn create_key(&self, grant: Value) -> (String, String) {
        let response = self.post("/v1/api-keys", grant).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["token"].as_str().expect("token").to_owned(),
        )
    }
}

/// Asserts a problem+json answer with this status and code, and returns its body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(
        body["type"],
        format!("https://carbon-ledger.dev/problems/{code}")
    );
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}
