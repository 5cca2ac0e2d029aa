//! Where a subject's telemetry is read: the embedded store (spans and log lines in memory),
//! or a deployed target with the stack's backends (when traced).

use std::time::Duration;

use super::pillars::{self, Stack, Subject, Telemetry};
use crate::embedded::EmbeddedTarget;
use crate::exit::CommandError;

/// The target a command exercises, and where that target's telemetry can be read.
pub struct TraceSource {
    pub embedded: Option<EmbeddedTarget>,
    pub stack: Option<Stack>,
    pub base: String,
}

impl TraceSource {
    /// Starts the embedded store when there is no target; resolves the backends when a
    /// deployed target is traced.
    pub async fn open(
        target: Option<&str>,
        trace: bool,
        stack: &crate::config::StackArgs,
    ) -> Result<TraceSource, CommandError> {
        let stack = match (target, trace) {
            (Some(_), true) => Some(Stack::from_args(stack)?),
            _ => None,
        };
        let (embedded, base) = match target {
            Some(t) => (None, t.trim_end_matches('/').to_string()),
            None => {
                let app = EmbeddedTarget::start_with(true)
                    .await
                    .map_err(|e| CommandError::Unreachable(format!("cannot start the embedded recordstore: {e}")))?;
                let base = app.base_url();
                (Some(app), base)
            }
        };
        Ok(TraceSource { embedded, stack, base })
    }

    /// The subject's trace, log lines and metrics, waiting up to `wait`; `None` when there is
    /// nowhere to read them (a deployed target without backends). `since_ns` bounds the log
    /// search from below.
    pub async fn collect(&self, subject: &Subject, since_ns: u128, wait: Duration) -> Option<Telemetry> {
        match (&self.embedded, &self.stack) {
            (Some(app), _) => {
                eprintln!(
                    "recordctl: waiting up to {wait:?} for the telemetry of {}",
                    subject.correlation_id
                );
                Some(pillars::collect(app.captured(), &self.base, subject, wait).await)
            }
            (None, Some(stack)) => {
                eprintln!(
                    "recordctl: waiting up to {wait:?} for {} in Jaeger, Loki and Prometheus",
                    subject.correlation_id
                );
                Some(pillars::collect_from_stack(stack, subject, wait, since_ns).await)
            }
            (None, None) => None,
        }
    }

    /// Stops the embedded store, waiting for it to finish (dropping it stops it too, without
    /// waiting).
    pub async fn stop(self) {
        if let Some(app) = self.embedded {
            app.stop().await;
        }
    }
}
