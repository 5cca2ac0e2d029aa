//! `recordstore`: run the API with its worker, the worker alone, migrations, or a demo.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use recordstore::{Application, Config, Role};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "recordstore",
    version,
    about = "A small record-store web app for practising SRE"
)]
#[command(
    after_help = "Configuration comes from the environment (DATABASE_URL, RECORDSTORE_LISTEN, \
OTEL_EXPORTER_OTLP_ENDPOINT, LOG_LEVEL, RECORDSTORE_ADMIN_TOKEN, ...); see README.md.\n\n\
Examples:\n  recordstore serve\n  DATABASE_URL=postgres://app:app@localhost:5432/store recordstore serve\n  \
RECORDSTORE_LISTEN=0.0.0.0:8001 recordstore worker\n  recordstore demo\n  \
recordstore healthcheck http://127.0.0.1:8000/health/ready\n  \
DATABASE_URL=postgres://app:app@localhost:5432/store recordstore audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API with an in-process worker.
    Serve {
        /// Run the API only; jobs wait for a separate `recordstore worker`.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run the background worker only (serves /health and /metrics on RECORDSTORE_LISTEN).
    Worker,
    /// Apply database migrations and seed an empty catalogue, then exit.
    Migrate,
    /// Check the invariants of orders, money and stock in DATABASE_URL (read-only) and print
    /// them as JSON. Exit 0 clean, 1 violations found, 2 bad configuration or an unmigrated
    /// database, 3 database unreachable.
    Audit,
    /// Start the store on a temporary SQLite database, buy one record, and show it complete.
    Demo,
    /// Exit 0 when URL answers 2xx within the timeout, else 1: a container healthcheck that
    /// needs no curl. The default URL is /health/ready on RECORDSTORE_LISTEN's port.
    Healthcheck {
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Receive Alertmanager webhooks on RECORDSTORE_LISTEN: one JSON log line per alert,
    /// the latest listed at GET /alerts.
    AlertSink,
}

const EXIT_CONFIG: u8 = 2;
const EXIT_UNAVAILABLE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        match run(cli.command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, message)) => {
                eprintln!("recordstore: {message}");
                ExitCode::from(code)
            }
        }
    })
}

async fn run(command: Command) -> Result<(), (u8, String)> {
    match command {
        Command::Demo => return demo().await.map_err(|e| (1, format!("{e:#}"))),
        Command::Healthcheck { url, timeout } => return healthcheck(url, timeout).await,
        Command::AlertSink => return alert_sink().await,
        Command::Audit => return audit().await,
        _ => {}
    }
    let config = Config::from_env().map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let role = match command {
        Command::Serve { no_worker: false } => Role::ApiAndWorker,
        Command::Serve { no_worker: true } => Role::Api,
        Command::Worker => Role::Worker,
        Command::Migrate => {
            let store = recordstore::store::Store::connect_lazy(&config.database_url, 2)
                .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
            let applied = store.migrate().await.map_err(|e| (EXIT_UNAVAILABLE, e.to_string()))?;
            let seeded = store
                .seed_if_empty()
                .await
                .map_err(|e| (EXIT_UNAVAILABLE, e.to_string()))?;
            println!("migrations applied: {applied:?}; products seeded: {seeded}");
            return Ok(());
        }
        Command::Demo | Command::Healthcheck { .. } | Command::AlertSink | Command::Audit => {
            unreachable!("handled above")
        }
    };
    let app = Application::build(config, role, Duration::from_secs(60))
        .await
        .map_err(|e| (EXIT_UNAVAILABLE, e.to_string()))?;
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    app.run_until(cancel)
        .await
        .map_err(|e| (1, format!("server error: {e}")))
}

async fn healthcheck(url: Option<String>, timeout: u64) -> Result<(), (u8, String)> {
    let url = match url {
        Some(url) => url,
        None => {
            let listen = Config::from_env().map_err(|e| (EXIT_CONFIG, e.to_string()))?.listen;
            format!("http://127.0.0.1:{}/health/ready", listen.port())
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout))
        .build()
        .map_err(|e| (1, e.to_string()))?;
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err((1, format!("{url} answered {}", response.status()))),
        Err(e) => Err((1, format!("{url}: {e}"))),
    }
}

/// `recordstore audit`: reads only DATABASE_URL (no migrations, no writes).
async fn audit() -> Result<(), (u8, String)> {
    use recordstore::store::{Store, StoreError, redact};
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://recordstore.db".into());
    let shown = redact(&url);
    // An audit must not create a database: a SQLite file that is not there is an error.
    let url = match url.strip_prefix("sqlite://") {
        Some(path) if !url.contains("mode=") => {
            let file = path.split('?').next().unwrap_or(path);
            if !std::path::Path::new(file).exists() {
                return Err((EXIT_UNAVAILABLE, format!("cannot audit {shown}: no such database file")));
            }
            format!("{url}{}mode=rw", if url.contains('?') { '&' } else { '?' })
        }
        _ => url,
    };
    let store = Store::connect_lazy(&url, 2).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let report = match store.audit().await {
        Ok(report) => report,
        Err(err @ StoreError::Unavailable(_)) => {
            return Err((
                EXIT_UNAVAILABLE,
                format!("cannot audit {shown}: {err} (is the database running?)"),
            ));
        }
        Err(err) => {
            return Err((
                EXIT_CONFIG,
                format!("cannot audit {shown}: {err} (run `recordstore migrate` on this database first?)"),
            ));
        }
    };
    store.close().await;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| (1, e.to_string()))?
    );
    if report.clean {
        Ok(())
    } else {
        Err((
            1,
            format!("{} invariant violations in {shown}", report.violations.len()),
        ))
    }
}

async fn alert_sink() -> Result<(), (u8, String)> {
    let listen = Config::from_env().map_err(|e| (EXIT_CONFIG, e.to_string()))?.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| (EXIT_UNAVAILABLE, format!("cannot listen on {listen}: {e}")))?;
    eprintln!("recordstore alert-sink listening on {listen}");
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let router = recordstore::alert_sink::router(recordstore::alert_sink::Received::default());
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
        .map_err(|e| (1, format!("server error: {e}")))
}

async fn stop_on_signal(cancel: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
}

/// One checkout on a throwaway SQLite store, printed step by step.
async fn demo() -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = std::env::temp_dir().join(format!("recordstore-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let app = Application::build(Config::embedded(&url), Role::ApiAndWorker, Duration::from_secs(5)).await?;
    let app = app.spawn().await;
    let base = app.base_url();
    println!("recordstore running at {base} on {url}");
    let client = reqwest::Client::new();
    let products: serde_json::Value = client.get(format!("{base}/products")).send().await?.json().await?;
    let product = &products["products"][0];
    println!(
        "GET /products -> {} products; buying {:?} by {}",
        products["count"],
        product["title"].as_str().unwrap_or("?"),
        product["artist"].as_str().unwrap_or("?")
    );
    let correlation_id = format!("demo-{}", std::process::id());
    let response = client
        .post(format!("{base}/checkout"))
        .header("x-correlation-id", &correlation_id)
        .json(&serde_json::json!({ "product_id": product["id"], "quantity": 1 }))
        .send()
        .await?;
    println!("POST /checkout -> {}", response.status());
    let accepted: serde_json::Value = response.json().await?;
    println!("  {accepted}");
    let order_id = accepted["order_id"]
        .as_i64()
        .context("checkout answered without an order_id")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let order = loop {
        let order: serde_json::Value = client
            .get(format!("{base}/orders/{order_id}"))
            .send()
            .await?
            .json()
            .await?;
        let status = order["status"].as_str().unwrap_or_default().to_string();
        if status == "completed" || status == "failed" || std::time::Instant::now() > deadline {
            break order;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("GET /orders/{order_id} -> status {}", order["status"]);
    let trace_id = accepted["trace_id"].as_str().unwrap_or_default();
    println!("\nspans of trace {trace_id}:");
    for span in app.captured().spans_of_trace(trace_id) {
        println!(
            "  {:<20} {:<28} {:>8.2} ms",
            span.service,
            span.name,
            span.duration().as_secs_f64() * 1000.0
        );
    }
    println!("\nlog lines with correlation id {correlation_id}:");
    for line in app.captured().logs_with_correlation_id(&correlation_id) {
        println!("  {}", serde_json::Value::Object(line));
    }
    let completed = order["status"] == "completed";
    app.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(completed, "order {order_id} did not complete: {order}");
    Ok(())
}
