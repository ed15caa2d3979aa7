//! The HTTP layer: routes registered once for both the server and the OpenAPI contract, bearer-key
//! auth, metrics, and the single error -> problem+json mapping.
pub mod auth;
mod embodied;
mod feeds;
mod footprint;
mod history;
mod insights;
mod intensity;
mod keys;
mod meters;
mod metrics;
mod ops;
mod periods;
pub mod problem;
mod readings;
mod records;
mod registry;
mod sci;
mod telemetry;
mod usage;
mod windows;

use crate::clock::Clock;
use crate::config::Settings;
use crate::storage::follower::Follower;
use crate::storage::keys::Bootstrap;
use crate::storage::location::Location;
use crate::storage::logged::{LoggedTable, LoggedTableError, LoggedTableOptions};
use crate::storage::periods::Periods;
use crate::storage::replica::Replica;
use crate::storage::rollups::Rollups;
use crate::storage::{KeyStore, Registry, StorageError};
use crate::supervisor::{Stage, Supervisor};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use problem::{ApiError, ErrorCode};
use std::net::TcpListener;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{scope, AppExt};
use utoipa_swagger_ui::SwaggerUi;

/// Limits of `POST /v1/readings`.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    pub max_rows_per_batch: usize,
    pub max_power_w: f64,
}

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub readings: Arc<LoggedTable>,
    pub intensity: Arc<LoggedTable>,
    pub functional_units: Arc<LoggedTable>,
    pub usage: Arc<LoggedTable>,
    pub meters: Arc<LoggedTable>,
    pub reports: crate::reports::ReportSources,
    pub feeds: crate::sources::feeds::FeedsStatus,
    pub telemetry: Arc<crate::sources::Telemetry>,
    pub ingest: IngestLimits,
    pub keys: Arc<KeyStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<metrics::HttpMetrics>,
    /// Keeps the registry and keys current with other replicas; readiness asks it.
    pub follower: Arc<Follower>,
    pub periods: Arc<Periods>,
    /// The last footprint forecasts, by everything they depend on.
    pub forecasts: crate::insights::cache::ForecastCache,
    pub replica: Replica,
    pub metrics_public: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "carbon-ledger",
        description = "Energy (kWh) and emissions (gCO2e) per workload, customer, site and grid zone, \
from measured power and the grid's carbon intensity at the hour it was used. Times are RFC 3339 UTC; \
errors are RFC 9457 problem details with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics"),
        (name = "registry", description = "Sites, customers, zones and instruments (admin)"),
        (name = "ingest", description = "Power telemetry from agents (admin or ingest keys)"),
        (name = "intensity", description = "Grid carbon intensity per zone"),
        (name = "reports", description = "Energy and emissions footprints"),
        (name = "insights", description = "From reporting to reducing: greenest windows (also in the Carbon Aware SDK's shape), shift opportunities, footprint forecasts"),
        (name = "embodied", description = "Hardware and reservations (admin): embodied emissions (Scope 3) and the Software Carbon Intensity"),
        (name = "keys", description = "API keys (admin)"),
        (name = "telemetry", description = "Telemetry from Prometheus and exporters: mappings, receivers, visibility")
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer <token>`"))
                    .build(),
            ),
        );
    }
}

fn routes(config: &mut ServiceConfig) {
    config
        .configure(ops::configure)
        .service(
            scope::scope("/v1")
                .configure(registry::configure)
                .configure(embodied::configure)
                .configure(sci::configure)
                .configure(meters::configure)
                .configure(usage::configure)
                .configure(history::configure)
                .configure(periods::configure)
                .configure(readings::configure)
                .configure(intensity::configure)
                .configure(footprint::configure)
                .configure(feeds::configure)
                .configure(keys::configure)
                .configure(telemetry::configure)
                .configure(windows::configure)
                .configure(insights::configure),
        )
        .service(scope::scope("/emissions").configure(windows::configure_carbon_aware_sdk))
        .service(scope::scope("/api/v1").configure(telemetry::configure_receivers))
        .service(scope::scope("/otlp/v1").configure(telemetry::configure_otlp));
}

/// The contract, generated from the same registration the server uses.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts()
        .1
}

/// The request's `Content-Type`, or "" when it has none or it is not text.
fn content_type(request: &HttpRequest) -> &str {
    request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn unknown_route(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no operation {} {}", request.method(), request.path()),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] StorageError),
    #[error("storage_url: {0}")]
    Location(#[from] crate::storage::location::LocationError),
    #[error("cannot open the reading store: {0}")]
    Readings(#[from] LoggedTableError),
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
}

/// A bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    readings: Arc<LoggedTable>,
    intensity: Arc<LoggedTable>,
    functional_units: Arc<LoggedTable>,
    meters: Arc<LoggedTable>,
    usage: Arc<LoggedTable>,
    rollups: Option<Arc<Rollups>>,
    /// What telemetry writes with: its windows still waiting are written at shutdown.
    telemetry: crate::sources::pull::Sinks,
    /// Every background task (sources, followers, flushers), stopped in that order before the
    /// last flush, so that none is halfway through a Delta call when the runtime shuts down.
    background: Supervisor,
    generated_admin_token: Option<String>,
    /// How long the final flush may take at shutdown.
    drain: std::time::Duration,
}

impl Application {
    pub async fn build(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StorageError::Io {
            action: "creating",
            path: settings.data_dir.clone(),
            source,
        })?;
        let location = match &settings.storage_url {
            Some(url) => Location::open(url, &settings.storage_options)?,
            None => Location::open(
                &settings.data_dir.to_string_lossy(),
                &settings.storage_options,
            )?,
        };
        let wal_dir = settings
            .wal_dir
            .clone()
            .unwrap_or_else(|| settings.data_dir.join("wal"));
        let replica = Replica::open(&wal_dir, settings.replica_id.as_deref())?;
        // Earlier releases kept the registry and keys as files in the data directory: moved
        // into the shared logs on the first start.
        let legacy = Some(settings.data_dir.as_path());
        let registry = Arc::new(Registry::open(&location, &replica.replica_id, legacy).await?);
        let keys = Arc::new(KeyStore::open(&location, &replica.replica_id, legacy).await?);
        let generated_admin_token = match keys
            .bootstrap(settings.admin_token.as_deref(), clock.now())
            .await?
        {
            Bootstrap::Generated(token) => Some(token),
            Bootstrap::Unchanged | Bootstrap::FromEnvironment => None,
        };
        let periods = Arc::new(Periods::open(&location, &replica.replica_id).await?);
        let follower = Follower::new(
            registry.clone(),
            keys.clone(),
            periods.clone(),
            std::time::Duration::from_secs(settings.registry_poll_s.max(1)),
        );
        let options = LoggedTableOptions {
            fsync: settings.durable_ingest,
            cache_rows: settings.read_cache_rows,
            refresh_interval: std::time::Duration::from_secs(settings.table_poll_s),
            compaction_interval: std::time::Duration::from_secs(
                settings.compaction_interval_s.max(1),
            ),
            decoded: Arc::new(crate::storage::decoded::DecodedFiles::new(
                settings.decoded_cache_mb * 1024 * 1024,
            )),
            ..LoggedTableOptions::default()
        };
        let flush_interval = std::time::Duration::from_secs(settings.flush_interval_s.max(1));
        let readings = LoggedTable::open(
            &location,
            &wal_dir,
            &replica,
            crate::storage::readings::SPEC,
            options.clone(),
        )
        .await?;
        let mut background = Supervisor::default();
        background.add(Stage::Storage, readings.spawn_flusher(flush_interval));
        let rollups = match settings.energy_rollups {
            true => {
                let refresh = std::time::Duration::from_secs(settings.table_poll_s.max(1));
                let decoded = options.decoded.clone();
                let rollups = Rollups::open(&location, &replica, refresh, decoded).await?;
                background.add(
                    Stage::Storage,
                    rollups.spawn_refresher(readings.clone(), flush_interval),
                );
                Some(rollups)
            }
            false => None,
        };
        background.add(Stage::Followers, follower.spawn());
        let workers = crate::allocator::Workers::default();
        if settings.release_memory_s > 0 {
            let every = std::time::Duration::from_secs(settings.release_memory_s);
            let releaser = crate::allocator::spawn_releaser(every, workers.clone());
            background.add(Stage::Followers, releaser);
        }
        let warming = readings.clone();
        background.add(
            Stage::Followers,
            tokio::spawn(async move {
                match warming.warm_cache().await {
                    Ok(dates) => tracing::info!(dates, "read cache warmed"),
                    Err(error) => tracing::warn!(error = %error, "warming the read cache failed"),
                }
            }),
        );
        let intensity = LoggedTable::open(
            &location,
            &wal_dir,
            &replica,
            crate::storage::intensity::SPEC,
            options.clone(),
        )
        .await?;
        background.add(Stage::Storage, intensity.spawn_flusher(flush_interval));
        let functional_units = LoggedTable::open(
            &location,
            &wal_dir,
            &replica,
            crate::storage::functional_units::SPEC,
            options.clone(),
        )
        .await?;
        background.add(
            Stage::Storage,
            functional_units.spawn_flusher(flush_interval),
        );
        let meters = LoggedTable::open(
            &location,
            &wal_dir,
            &replica,
            crate::storage::meters::SPEC,
            options.clone(),
        )
        .await?;
        background.add(Stage::Storage, meters.spawn_flusher(flush_interval));
        let usage = LoggedTable::open(
            &location,
            &wal_dir,
            &replica,
            crate::storage::usage::SPEC,
            options,
        )
        .await?;
        background.add(Stage::Storage, usage.spawn_flusher(flush_interval));
        let demo_tables = crate::demo::Tables {
            readings: &readings,
            intensity: &intensity,
            functional_units: &functional_units,
            meters: &meters,
            usage: &usage,
        };
        if settings.demo && crate::demo::load(&registry, demo_tables).await? {
            tracing::info!(
                from = crate::demo::FROM,
                to = crate::demo::TO,
                "loaded the demo data set"
            );
        }
        let (feeds, feed_tasks) =
            crate::sources::feeds::spawn_feeds(&settings.feeds, intensity.clone(), clock.clone());
        background.add_all(Stage::Sources, feed_tasks);
        let telemetry = Arc::new(crate::sources::Telemetry::open(
            &settings.data_dir,
            settings.telemetry.clone(),
        )?);
        let sinks = crate::sources::pull::Sinks {
            telemetry: telemetry.clone(),
            registry: registry.clone(),
            readings: readings.clone(),
            functional_units: functional_units.clone(),
            meters: meters.clone(),
            clock: clock.clone(),
            max_power_w: settings.max_power_w,
        };
        background.add(
            Stage::Sources,
            crate::sources::pull::spawn_quiet_window_writer(
                settings.telemetry.quiet_check_interval(),
                sinks.clone(),
            ),
        );
        background.add_all(
            Stage::Sources,
            crate::sources::scrape::spawn_scrapers(&settings.scrape, &sinks),
        );
        background.add_all(
            Stage::Sources,
            crate::sources::redfish::spawn_pollers(&settings.redfish, &sinks),
        );
        let state = web::Data::new(AppState {
            registry: registry.clone(),
            readings: readings.clone(),
            intensity: intensity.clone(),
            functional_units: functional_units.clone(),
            meters: meters.clone(),
            usage: usage.clone(),
            reports: crate::reports::ReportSources {
                registry: registry.clone(),
                readings: readings.clone(),
                intensity: intensity.clone(),
                functional_units: functional_units.clone(),
                meters: meters.clone(),
                usage: usage.clone(),
                default_factors: Arc::new(crate::domain::default_factors::shipped()),
                max_carry_forward: chrono::Duration::seconds(settings.max_carry_forward_s as i64),
                rollups: rollups.clone(),
            },
            feeds,
            telemetry,
            ingest: IngestLimits {
                max_rows_per_batch: settings
                    .max_rows_per_batch
                    .min(crate::storage::logged::MAX_ROWS_PER_BATCH),
                max_power_w: settings.max_power_w,
            },
            keys,
            clock,
            metrics: Arc::default(),
            follower,
            periods,
            forecasts: Default::default(),
            replica,
            metrics_public: settings.metrics_public,
        });
        let bind_error = |source| StartError::Bind {
            bind: settings.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let max_body_bytes = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            workers.join_current();
            let (app, contract) = App::new()
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body_bytes)
                        .error_handler(problem::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(problem::query_error))
                .app_data(web::PathConfig::default().error_handler(problem::path_error))
                .app_data(web::PayloadConfig::default().limit(max_body_bytes))
                .configure(routes)
                .split_for_parts();
            app.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", contract))
                .configure(crate::dashboard::configure)
                .default_service(web::to(unknown_route))
                .wrap(from_fn(problem::ensure_problem_bodies))
                .wrap(from_fn(metrics::observe))
        })
        .listen(listener)
        .map_err(bind_error)?
        .shutdown_timeout(15)
        .run();
        Ok(Self {
            port,
            server,
            readings,
            intensity,
            functional_units,
            meters,
            usage,
            rollups,
            telemetry: sinks,
            background,
            generated_admin_token,
            drain: std::time::Duration::from_secs(settings.shutdown_flush_s),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every table behind the server (readings first), for callers that move acknowledged rows
    /// from the log into the table on their own schedule (tests that interleave flushes).
    pub fn tables(&self) -> [Arc<LoggedTable>; 5] {
        [
            self.readings.clone(),
            self.intensity.clone(),
            self.functional_units.clone(),
            self.meters.clone(),
            self.usage.clone(),
        ]
    }

    /// The energy rollups behind reports (`None` when configured off), for callers that refresh
    /// them on their own schedule.
    pub fn rollups(&self) -> Option<Arc<Rollups>> {
        self.rollups.clone()
    }

    /// The admin token made on a first start without `CARBON_LEDGER_ADMIN_TOKEN`: show it once.
    pub fn generated_admin_token(&self) -> Option<&str> {
        self.generated_admin_token.as_deref()
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or `handle().stop`), letting in-flight requests finish, then
    /// writes buffered readings to the table (they are safe in the log either way).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let tables = self.tables();
        self.server.await?;
        // No request comes any more: the windows still waiting for a later sample are written, so
        // a stopped server's reports hold every acknowledged sample (a kill leaves them to the
        // next start, which writes what it replays).
        let sinks = &self.telemetry;
        let waiting = sinks
            .telemetry
            .write_waiting_windows(sinks.context(sinks.clock.now()), true);
        match tokio::time::timeout(self.drain, waiting).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "writing the waiting telemetry windows failed; the next start writes them")
            }
            Err(_) => tracing::warn!(
                "writing the waiting telemetry windows took too long; the next start writes them"
            ),
        }
        self.background.stop().await;
        // Bounded: an orchestrator kills at 30 s, and what is not flushed is safe in the log.
        for table in tables {
            match tokio::time::timeout(self.drain, table.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "final flush failed; the log keeps the rows for the next start")
                }
                Err(_) => tracing::warn!(
                    seconds = self.drain.as_secs(),
                    "final flush took too long; the log keeps the rows for the next start"
                ),
            }
        }
        Ok(())
    }
}
