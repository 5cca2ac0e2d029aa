//! Integration tests of recordstore: the real app on 127.0.0.1:0 against SQLite and a real
//! PostgreSQL server, driven over HTTP.

mod alerts;
mod bad_input;
mod checkout;
mod concurrency;
mod helpers;
mod invariants;
mod metrics;
mod postgres;
mod readiness;
mod shutdown;
mod worker_crash;
