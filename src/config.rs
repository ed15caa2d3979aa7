//! Typed settings, layered: defaults, then an optional TOML file, then `CARBON_LEDGER_*` environment
//! and command-line flags (clap resolves those two, flag first).
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub bind: String,
    /// Directory holding this replica's own state (its write-ahead log unless `wal_dir` says
    /// otherwise, telemetry series state) and, unless `storage_url` says otherwise, the tables
    /// and the registry.
    pub data_dir: PathBuf,
    /// Where the tables and the registry live, shared by every replica: `s3://bucket/prefix`,
    /// a `file://` URL or a path. Default: the data directory.
    pub storage_url: Option<String>,
    /// Options of the store at `storage_url` (object_store's S3 keys: `aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_allow_http`, ...), over the `AWS_*` environment.
    pub storage_options: std::collections::BTreeMap<String, String>,
    /// This replica's write-ahead log, on its own disk. Default: `<data_dir>/wal`.
    pub wal_dir: Option<PathBuf>,
    /// This replica's id; generated and kept in `wal_dir` when not given.
    pub replica_id: Option<String>,
    /// How often the registry and keys are checked for changes made by other replicas.
    pub registry_poll_s: u64,
    /// How late reports may see readings other replicas committed, in seconds.
    pub table_poll_s: u64,
    /// At most this long is spent flushing on SIGTERM (the rest replays from the log at the next
    /// start); in-flight requests get up to 15 s before that, so that both fit in the 30 s an
    /// orchestrator waits before SIGKILL.
    pub shutdown_flush_s: u64,
    /// How often small files are compacted, by whichever replica holds the compaction lease.
    pub compaction_interval_s: u64,
    /// How long an intensity point is carried forward over a gap in its zone's data.
    pub max_carry_forward_s: u64,
    /// Largest request body accepted, compressed or not.
    pub max_body_bytes: usize,
    /// Largest ingest batch, in readings.
    pub max_rows_per_batch: usize,
    /// Whether `/metrics` answers without an API key.
    pub metrics_public: bool,
    /// Highest average power a reading may state, in watts (a sanity ceiling).
    pub max_power_w: f64,
    /// fsync the write-ahead log before acknowledging ingest. Only benchmarks turn this off.
    pub durable_ingest: bool,
    /// How often buffered readings are written to the table, in seconds.
    pub flush_interval_s: u64,
    /// Readings kept in memory, resolved per date, so reports need not re-read unchanged dates.
    pub read_cache_rows: usize,
    /// Small table files (energy rollups per customer, intensity, meters) kept decoded in memory,
    /// in MB, for all tables together (a year of rollups for 4 customers at 3 sites is about
    /// 100 MB; a year of intensity for 2 zones a few MB).
    pub decoded_cache_mb: usize,
    /// How often the allocator gives back the memory it holds free, in seconds (0: never). After
    /// a burst (a large flush, an export) its threads idle with what they freed still resident.
    /// Blocking tasks give back their thread's as they end, whatever this says.
    pub release_memory_s: u64,
    /// Keep energy rollups (per site, customer, workload and five minutes) and answer reports
    /// from them wherever they serve; off, reports read every reading.
    pub energy_rollups: bool,
    /// Grid-intensity providers to pull.
    pub feeds: Vec<crate::sources::feeds::FeedSettings>,
    /// How telemetry series become readings (`[telemetry]`).
    pub telemetry: crate::sources::TelemetrySettings,
    /// Exporters to scrape (`[[scrape]]`).
    pub scrape: Vec<crate::sources::scrape::ScrapeSettings>,
    /// BMCs to poll over Redfish (`[[redfish]]`).
    pub redfish: Vec<crate::sources::redfish::RedfishSettings>,
    /// Load the demo data set into an empty data directory (`serve --demo`).
    #[serde(skip)]
    pub demo: bool,
    /// Token accepted as the first admin key (from `CARBON_LEDGER_ADMIN_TOKEN`; never read from the file).
    #[serde(skip)]
    pub admin_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("./data"),
            storage_url: None,
            storage_options: Default::default(),
            wal_dir: None,
            replica_id: None,
            registry_poll_s: 2,
            table_poll_s: 1,
            shutdown_flush_s: 10,
            compaction_interval_s: 60,
            max_carry_forward_s: 7200,
            max_body_bytes: 16 * 1024 * 1024,
            max_rows_per_batch: 100_000,
            metrics_public: true,
            max_power_w: 1_000_000.0,
            durable_ingest: true,
            flush_interval_s: 5,
            read_cache_rows: 2_000_000,
            release_memory_s: 10,
            decoded_cache_mb: 128,
            energy_rollups: true,
            feeds: Vec::new(),
            telemetry: crate::sources::TelemetrySettings::default(),
            scrape: Vec::new(),
            redfish: Vec::new(),
            demo: false,
            admin_token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// Values given on the command line or in the environment; each wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub storage_url: Option<String>,
    pub wal_dir: Option<PathBuf>,
    pub replica_id: Option<String>,
    pub admin_token: Option<String>,
    pub demo: bool,
}

impl Settings {
    pub fn load(overrides: Overrides) -> Result<Self, ConfigError> {
        let mut settings = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(bind) = overrides.bind {
            settings.bind = bind;
        }
        if let Some(data_dir) = overrides.data_dir {
            settings.data_dir = data_dir;
        }
        if let Some(storage_url) = overrides.storage_url {
            settings.storage_url = Some(storage_url);
        }
        if let Some(wal_dir) = overrides.wal_dir {
            settings.wal_dir = Some(wal_dir);
        }
        if let Some(replica_id) = overrides.replica_id {
            settings.replica_id = Some(replica_id);
        }
        settings.admin_token = overrides.admin_token.filter(|token| !token.is_empty());
        settings.demo = overrides.demo;
        Ok(settings)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("cl-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "bind = \"0.0.0.0:9000\"\nmax_rows_per_batch = 10\n").unwrap();
        let settings = Settings::load(Overrides {
            config: Some(path.clone()),
            data_dir: Some("/tmp/x".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(settings.bind, "0.0.0.0:9000");
        assert_eq!(settings.max_rows_per_batch, 10);
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(settings.max_carry_forward_s, 7200);

        let with_flag = Settings::load(Overrides {
            config: Some(path),
            bind: Some("127.0.0.1:1".into()),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(with_flag.bind, "127.0.0.1:1");
    }

    #[test]
    fn the_feeds_block_of_the_api_sketch_parses() {
        let text = r#"
            max_carry_forward_s = 7200
            [[feeds]]
            provider = "uk_carbon_intensity"
            base_url = "https://api.carbonintensity.org.uk"
            zones = ["GB"]
            poll_interval_s = 1800
            backfill_h = 48
            timeout_s = 10
            zone_map = { "GB" = "GB" }
            [[feeds]]
            provider = "watttime"
            zones = ["US-CAL-CISO"]
            zone_map = { "US-CAL-CISO" = "CAISO_NORTH" }
            username_env = "WATTTIME_USERNAME"
            password_env = "WATTTIME_PASSWORD"
        "#;
        let settings: Settings = toml::from_str(text).unwrap();
        assert_eq!(settings.feeds.len(), 2);
        assert_eq!(
            settings.feeds[1].provider,
            crate::sources::feeds::Provider::Watttime
        );
        assert_eq!(settings.feeds[1].zone_map["US-CAL-CISO"], "CAISO_NORTH");
        assert_eq!(settings.feeds[1].poll_interval_s, 1800);
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let err = toml::from_str::<Settings>("bnid = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bnid"));
    }
}
