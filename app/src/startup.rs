//! Building and running the app: bind, migrate, seed, serve the API and/or run the worker,
//! and stop gracefully. [`Application::spawn`] is the entry point the embedded target and
//! the tests use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalogue_cache::CatalogueCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::payment::PaymentGateway;
use crate::routes::{AppState, api_router, worker_router};
use crate::store::{Store, StoreError, redact};
use crate::telemetry::{Captured, Telemetry};
use crate::worker::Worker;

/// Which parts of the app this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API and an in-process worker (`recordstore serve`).
    ApiAndWorker,
    /// The API only; jobs wait for a worker elsewhere.
    Api,
    /// The worker, with only health and metrics over HTTP (`recordstore worker`).
    Worker,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source} (set RECORDSTORE_LISTEN to a free address)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot prepare the database at {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    worker: Option<Arc<Worker>>,
    role: Role,
    max_body_bytes: usize,
}

impl Application {
    /// Binds the listener, connects to the database (waiting up to `db_wait` for it to come
    /// up), migrates and seeds. Nothing is served until [`run_until`](Self::run_until).
    pub async fn build(config: Config, role: Role, db_wait: Duration) -> Result<Application, StartupError> {
        let telemetry = Telemetry::init(&config.telemetry)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.listen,
                source,
            })?;
        let db_error = |source| StartupError::Database {
            url: redact(&config.database_url),
            source,
        };
        let store = Store::connect_lazy(&config.database_url, config.db_max_connections).map_err(db_error)?;
        prepare_database(&store, config.seed, db_wait, &telemetry)
            .await
            .map_err(db_error)?;
        let metrics = Metrics::new();
        let w = &config.worker;
        let payments = Arc::new(PaymentGateway::new(
            store.clone(),
            metrics.clone(),
            w.breaker_threshold,
            w.breaker_cooldown,
        ));
        let jobs_ready = Arc::new(Notify::new());
        let state = AppState {
            store: store.clone(),
            metrics: metrics.clone(),
            telemetry: telemetry.clone(),
            payments: payments.clone(),
            jobs_ready: jobs_ready.clone(),
            admin_token: config.admin_token.as_deref().map(Arc::from),
            max_attempts: config.worker.max_attempts,
            catalogue: Arc::new(CatalogueCache::new(config.catalogue_cache_ttl)),
            rate_limiter: config
                .write_rate_limit
                .map(|limit| Arc::new(crate::rate_limit::RateLimiter::new(limit))),
        };
        let worker = matches!(role, Role::ApiAndWorker | Role::Worker).then(|| {
            Arc::new(Worker::new(
                store,
                metrics,
                payments,
                config.worker.clone(),
                telemetry.worker.clone(),
                jobs_ready,
            ))
        });
        Ok(Application {
            listener,
            state,
            worker,
            role,
            max_body_bytes: config.max_body_bytes,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `cancel`, then lets in-flight requests and jobs finish.
    pub async fn run_until(self, cancel: CancellationToken) -> std::io::Result<()> {
        let router = match self.role {
            Role::Worker => worker_router(self.state.clone()),
            Role::Api | Role::ApiAndWorker => api_router(self.state.clone(), self.max_body_bytes),
        };
        let worker = self.worker.clone().map(|w| tokio::spawn(w.run(cancel.clone())));
        let addr = self.local_addr();
        let api = self.state.telemetry.api.clone();
        tracing::dispatcher::with_default(&api, || {
            tracing::info!(%addr, role = ?self.role, backend = ?self.state.store.backend(), "recordstore listening");
        });
        let router = router.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .await;
        cancel.cancel();
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        tracing::dispatcher::with_default(&api, || tracing::info!("recordstore stopped"));
        self.state.telemetry.flush();
        self.state.store.close().await;
        served
    }

    /// Runs the app in the background and returns a handle to it.
    pub async fn spawn(self) -> RunningApp {
        let cancel = CancellationToken::new();
        let addr = self.local_addr();
        let telemetry = self.state.telemetry.clone();
        let store = self.state.store.clone();
        let metrics = self.state.metrics.clone();
        let worker = self.worker.clone();
        let handle = tokio::spawn(self.run_until(cancel.clone()));
        RunningApp {
            addr,
            cancel,
            handle,
            telemetry,
            store,
            metrics,
            worker,
        }
    }
}

async fn prepare_database(store: &Store, seed: bool, wait: Duration, telemetry: &Telemetry) -> Result<(), StoreError> {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(100);
    loop {
        match store.migrate().await {
            Ok(applied) => {
                let seeded = if seed { store.seed_if_empty().await? } else { 0 };
                tracing::dispatcher::with_default(&telemetry.api, || {
                    tracing::info!(migrations_applied = ?applied, products_seeded = seeded, "database ready");
                });
                return Ok(());
            }
            Err(err @ StoreError::Unavailable(_)) if Instant::now() + delay < deadline => {
                tracing::dispatcher::with_default(&telemetry.api, || {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => return Err(err),
        }
    }
}

/// A running app: its address, its in-memory telemetry, and a way to stop it.
pub struct RunningApp {
    addr: SocketAddr,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    telemetry: Telemetry,
    store: Store,
    metrics: Metrics,
    worker: Option<Arc<Worker>>,
}

impl RunningApp {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (a wildcard listen address is reached on loopback).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            "127.0.0.1".parse().unwrap()
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Spans and log lines the app produced (when built with capture on).
    pub fn captured(&self) -> &Arc<Captured> {
        self.telemetry.captured()
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The in-process worker, if this app runs one.
    pub fn worker(&self) -> Option<&Arc<Worker>> {
        self.worker.as_ref()
    }

    /// Asks the app to stop without waiting for it: what a handle dropped on an error path
    /// does so that the app does not outlive its owner.
    pub fn stop_soon(&self) {
        self.cancel.cancel();
    }

    /// Stops serving, finishes in-flight requests and jobs, flushes telemetry.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.cancel.cancel();
        self.handle.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}
