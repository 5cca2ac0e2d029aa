//! Configuration from the environment, validated before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::telemetry::TelemetryConfig;

/// Every setting of the app. `Config::from_env` reads the variables documented in README.md.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub admin_token: Option<String>,
    pub telemetry: TelemetryConfig,
    pub db_max_connections: u32,
    pub worker: WorkerConfig,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Seed the catalogue into an empty database at start.
    pub seed: bool,
    /// How long a product list page may be served from memory; zero reads the database
    /// every time.
    pub catalogue_cache_ttl: Duration,
    /// Per-client limit on the write endpoints; `None` turns it off.
    pub write_rate_limit: Option<crate::rate_limit::RateLimit>,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs processed at once by this process.
    pub concurrency: usize,
    /// Jobs one claim takes (one transaction claims them and reserves their stock); the
    /// worker runs `concurrency / claim_batch` claiming loops.
    pub claim_batch: usize,
    /// How long a claimed job stays leased; a job whose lease runs out is picked up again.
    pub lease: Duration,
    /// How often an idle worker looks for jobs written by other processes.
    pub poll_interval: Duration,
    pub max_attempts: i64,
    /// First retry delay; doubles each attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive gateway failures that open the payment circuit breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before letting one trial call through.
    pub breaker_cooldown: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 64,
            claim_batch: 16,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Defaults suitable for the embedded target: SQLite at `database_url`, port 0, no
    /// stdout logging, spans and log lines kept in memory.
    pub fn embedded(database_url: impl Into<String>) -> Config {
        Config {
            database_url: database_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: None,
            telemetry: TelemetryConfig {
                log_to_stdout: false,
                capture: true,
                ..TelemetryConfig::default()
            },
            db_max_connections: 8,
            worker: WorkerConfig::default(),
            max_body_bytes: 64 * 1024,
            seed: true,
            catalogue_cache_ttl: Duration::from_millis(500),
            // The embedded store is the tool's own target: nothing to protect it from.
            write_rate_limit: None,
        }
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup`, so tests can pass a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://recordstore.db".to_string());
        if crate::store::Backend::from_url(&database_url).is_none() {
            return Err(ConfigError::new(
                "DATABASE_URL",
                &crate::store::redact(&database_url),
                "postgres://user:pass@host:5432/db or sqlite://path.db",
            ));
        }
        let listen = parse(
            &get,
            "RECORDSTORE_LISTEN",
            "0.0.0.0:8000",
            "an address like 0.0.0.0:8000",
        )?;
        let worker = WorkerConfig {
            concurrency: parse(&get, "RECORDSTORE_WORKER_CONCURRENCY", "64", "a number of jobs, e.g. 4")?,
            claim_batch: parse(&get, "RECORDSTORE_WORKER_CLAIM_BATCH", "16", "a number of jobs, e.g. 8")?,
            lease: Duration::from_millis(parse(&get, "RECORDSTORE_JOB_LEASE_MS", "30000", "milliseconds")?),
            poll_interval: Duration::from_millis(parse(&get, "RECORDSTORE_WORKER_POLL_MS", "250", "milliseconds")?),
            max_attempts: parse(&get, "RECORDSTORE_JOB_MAX_ATTEMPTS", "5", "a number of attempts")?,
            ..WorkerConfig::default()
        };
        if worker.concurrency == 0 || worker.claim_batch == 0 || worker.max_attempts < 1 {
            return Err(ConfigError::new(
                "RECORDSTORE_WORKER_CONCURRENCY/RECORDSTORE_WORKER_CLAIM_BATCH/RECORDSTORE_JOB_MAX_ATTEMPTS",
                "0",
                "at least 1",
            ));
        }
        let telemetry = TelemetryConfig {
            otlp_endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_to_stdout: true,
            capture: false,
            api_service: get("OTEL_SERVICE_NAME").unwrap_or_else(|| crate::telemetry::API_SERVICE.into()),
            worker_service: get("RECORDSTORE_WORKER_SERVICE_NAME")
                .unwrap_or_else(|| crate::telemetry::WORKER_SERVICE.into()),
        };
        let per_second: f64 = parse(
            &get,
            "RECORDSTORE_WRITE_RATE_LIMIT",
            "100",
            "writes per second per client (0 turns the limit off)",
        )?;
        let burst: f64 = parse(&get, "RECORDSTORE_WRITE_BURST", "200", "a number of writes")?;
        if !(per_second.is_finite() && per_second >= 0.0 && burst.is_finite() && burst >= 1.0) {
            return Err(ConfigError::new(
                "RECORDSTORE_WRITE_RATE_LIMIT/RECORDSTORE_WRITE_BURST",
                &format!("{per_second}/{burst}"),
                "a rate of 0 or more and a burst of 1 or more",
            ));
        }
        let write_rate_limit = (per_second > 0.0).then_some(crate::rate_limit::RateLimit { per_second, burst });
        Ok(Config {
            write_rate_limit,
            database_url,
            listen,
            admin_token: get("RECORDSTORE_ADMIN_TOKEN"),
            telemetry,
            db_max_connections: parse(&get, "RECORDSTORE_DB_MAX_CONNECTIONS", "16", "a number of connections")?,
            worker,
            max_body_bytes: parse(&get, "RECORDSTORE_MAX_BODY_BYTES", "65536", "bytes")?,
            seed: parse(&get, "RECORDSTORE_SEED", "true", "true or false")?,
            catalogue_cache_ttl: Duration::from_millis(parse(
                &get,
                "RECORDSTORE_CATALOGUE_CACHE_MS",
                "500",
                "milliseconds (0 turns the cache off)",
            )?),
        })
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    let raw = get(key).unwrap_or_else(|| default.to_string());
    raw.trim().parse().map_err(|_| ConfigError::new(key, &raw, expected))
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {key}={value:?}: expected {expected}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub expected: String,
}

impl ConfigError {
    fn new(key: &str, value: &str, expected: &str) -> Self {
        ConfigError {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_sqlite_on_port_8000() {
        let c = config(&[]).unwrap();
        assert!(c.database_url.starts_with("sqlite:"));
        assert_eq!(c.listen.port(), 8000);
        assert!(c.admin_token.is_none());
        assert_eq!(c.telemetry.api_service, "recordstore-api");
    }

    #[test]
    fn bad_values_name_the_variable_and_what_was_expected() {
        let err = config(&[("RECORDSTORE_LISTEN", "nope")]).unwrap_err();
        assert_eq!(err.key, "RECORDSTORE_LISTEN");
        assert!(err.to_string().contains("expected an address"), "{err}");
        let err = config(&[("DATABASE_URL", "mysql://u:secret@h/db")]).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
