//! recordctl's integration tests, one binary with one [`support`] module: the real binary and
//! the library against real servers on 127.0.0.1 (PostgreSQL, Prometheus, Alertmanager, the
//! blackbox exporter, the Docker engine) and fixture servers where no package exists (Loki,
//! Jaeger, Grafana). One module per command or part of the stack.

mod support;

/// What the app's shared PostgreSQL helper (`app/tests/api/postgres.rs`) calls when it skips.
mod helpers {
    pub fn skipped(line: &str) {
        crate::support::skipped(line)
    }
}

mod backends;
mod cli;
mod drill;
mod journey;
mod load;
mod observability;
mod probe;
mod stack;
