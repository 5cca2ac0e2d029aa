//! The traffic engine: what `load-test` and a drill's background traffic run. Scenarios and
//! their thresholds, the executor that runs a scenario's transactions, the open model (arrival
//! schedule, shards), the closed model (goose users), the plain model (the raw HTTP/1.1 client, back to back or on a schedule),
//! the stats they record and the HDR logs they write. It knows nothing of clap or of reports.

pub mod closed;
pub mod executor;
pub mod hdr;
pub mod http_client;
pub mod open;
pub mod plain;
pub mod plain_open;
pub mod raw_http;
pub mod scenario;
pub mod schedule;
pub mod stats;
pub mod threshold;

/// Why a load run could not start or run to its end; the report is not written.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The target or the scenario cannot be run as given (a bad URL, a client that cannot be
    /// built).
    #[error("{0}")]
    Setup(String),
    /// The closed model's engine stopped with an error.
    #[error("{0}")]
    Closed(String),
}
