//! Spawning the app on a fresh database, polling with deadlines, and small HTTP helpers.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use recordstore::config::WorkerConfig;
use recordstore::payment::PaymentGateway;
use recordstore::store::{Order, Store};
use recordstore::worker::Worker;
use recordstore::{Application, Config, Role, RunningApp};
use serde_json::{Value, json};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs `$name(Db)` once per backend as `$name::on_sqlite` and `$name::on_postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                if $crate::postgres::shared().is_some() {
                    super::$name($crate::helpers::Db::Postgres).await;
                }
            }
        }
    };
}

/// Prints a SKIPPED line where it is seen: straight to stderr, past libtest's capture, with
/// the name of the test that skips.
pub fn skipped(line: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr(), "{line} [{test}]");
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("recordstore-test-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestApp {
    pub app: RunningApp,
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    _dir: Option<TempDir>,
}

/// A database URL for a fresh database of the given kind (and the temp dir that holds it).
pub async fn fresh_database(db: Db) -> (String, Option<TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = TempDir::new();
            (format!("sqlite://{}", dir.0.join("store.db").display()), Some(dir))
        }
        Db::Postgres => (
            crate::postgres::shared().expect("postgres").create_database().await,
            None,
        ),
    }
}

pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::embedded(database_url);
    config.admin_token = Some("test-token".into());
    config.worker.poll_interval = Duration::from_millis(50);
    config.worker.backoff_base = Duration::from_millis(20);
    config.worker.backoff_max = Duration::from_millis(200);
    config.db_max_connections = 16;
    config
}

pub async fn spawn_app(db: Db, role: Role) -> TestApp {
    let (url, dir) = fresh_database(db).await;
    spawn_with(test_config(&url), role, dir).await
}

pub async fn spawn_with(config: Config, role: Role, dir: Option<TempDir>) -> TestApp {
    let database_url = config.database_url.clone();
    let app = Application::build(config, role, Duration::from_secs(10))
        .await
        .expect("app builds")
        .spawn()
        .await;
    TestApp {
        base: app.base_url(),
        app,
        client: reqwest::Client::new(),
        database_url,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a product with the given stock; returns its id.
    pub async fn create_product(&self, title: &str, stock: i64) -> i64 {
        let response = self
            .client
            .post(self.url("/products"))
            .json(&json!({ "title": title, "artist": "Test Artist", "genre": "test", "price_cents": 1000, "stock": stock }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create product {title}");
        response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    pub async fn checkout(&self, product_id: i64, quantity: i64) -> reqwest::Response {
        self.client
            .post(self.url("/checkout"))
            .json(&json!({ "product_id": product_id, "quantity": quantity }))
            .send()
            .await
            .expect("POST /checkout")
    }

    pub async fn order(&self, id: i64) -> Order {
        let (status, body) = self.get_json(&format!("/orders/{id}")).await;
        assert_eq!(status, 200, "GET /orders/{id}: {body}");
        serde_json::from_value(body).unwrap()
    }

    /// Waits until order `id` is `completed` or `failed`.
    pub async fn wait_for_terminal(&self, id: i64) -> Order {
        eventually(&format!("order {id} to finish"), Duration::from_secs(20), || async {
            let order = self.order(id).await;
            (order.status == "completed" || order.status == "failed").then_some(order)
        })
        .await
    }

    pub async fn stock(&self, product_id: i64) -> i64 {
        self.get_json(&format!("/products/{product_id}")).await.1["stock"]
            .as_i64()
            .unwrap()
    }
}

/// A worker of the test's own on `store` (which may run on a clock the test moves), with
/// its own payment gateway and the app's metrics and telemetry.
pub fn worker_on(t: &TestApp, store: Store, config: WorkerConfig) -> Worker {
    let payments = Arc::new(PaymentGateway::new(
        store.clone(),
        t.app.metrics().clone(),
        5,
        Duration::from_secs(10),
    ));
    Worker::new(
        store,
        t.app.metrics().clone(),
        payments,
        config,
        t.app.telemetry().worker.clone(),
        Arc::new(tokio::sync::Notify::new()),
    )
}

/// Polls `check` until it returns `Some`, or panics after `limit` naming what it waited for.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?} waiting for {what}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
