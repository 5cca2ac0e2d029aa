//! What every request handler and the in-process worker share: the store, the metrics, the
//! telemetry, the payment gateway, and the knobs read at start.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::catalogue_cache::CatalogueCache;
use crate::metrics::Metrics;
use crate::payment::PaymentGateway;
use crate::store::Store;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub telemetry: Telemetry,
    pub payments: Arc<PaymentGateway>,
    /// Wakes an idle in-process worker when a checkout commits a job.
    pub jobs_ready: Arc<Notify>,
    pub admin_token: Option<Arc<str>>,
    pub max_attempts: i64,
    pub catalogue: Arc<CatalogueCache>,
    /// Per-client limit on the write endpoints; `None` when off.
    pub rate_limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
}
