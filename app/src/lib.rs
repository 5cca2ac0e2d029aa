//! recordstore: a small record-store web app (API, background worker, database) that keeps
//! a telemetry contract — correlation ids, W3C trace context, JSON logs, Prometheus metrics
//! with exemplars — so recordctl can drive it, break it and follow it.

pub mod alert_sink;
pub mod catalogue_cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod metrics;
pub mod payment;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;

pub use config::{Config, WorkerConfig};
pub use startup::{Application, Role, RunningApp};
