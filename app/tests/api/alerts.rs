//! The project's DatabaseDown alert, evaluated by a real Prometheus scraping the app: it goes
//! pending then firing when PostgreSQL stops, and clears when it is back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use recordstore::Role;

use crate::helpers::{eventually, spawn_with, test_config};
use crate::postgres::{PgServer, skip_or_fail};

/// A real Prometheus with the project's rules (evaluated every second), scraping `target`.
struct Prometheus {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(target: &str) -> Option<Prometheus> {
        if !Path::new("/usr/bin/prometheus").exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "prometheus is required in CI"
            );
            crate::helpers::skipped("SKIPPED: DatabaseDown alert test (apt-get install prometheus)");
            return None;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = std::env::temp_dir().join(format!("recordstore-alerts-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["slo.yml", "causes.yml"] {
            let text = std::fs::read_to_string(repo.join("observability/rules").join(file)).unwrap();
            std::fs::write(dir.join(file), text.replace("interval: 15s", "interval: 1s")).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: recordstore-api\n    static_configs:\n      - targets: ['{target}']\n",
            dir.join("slo.yml").display(),
            dir.join("causes.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = std::process::Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus");
        Some(Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        })
    }

    /// The state of `alert` (`pending`, `firing`) or `None` when inactive.
    async fn alert_state(&self, alert: &str) -> Option<String> {
        let doc: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", self.url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        doc["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == alert)
            .and_then(|a| a["state"].as_str().map(str::to_string))
    }

    async fn query(&self, promql: &str) -> Option<f64> {
        let doc: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        doc["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_goes_pending_then_firing_and_clears_when_postgres_is_back() {
    let server = match PgServer::start_new() {
        Ok(server) => Arc::new(server),
        Err(why) => {
            skip_or_fail(&why);
            return;
        }
    };
    let url = server.create_database().await;
    let t = spawn_with(test_config(&url), Role::ApiAndWorker, None).await;
    let Some(prometheus) = Prometheus::start(&t.app.addr().to_string()) else {
        return;
    };
    eventually("Prometheus to see the database up", Duration::from_secs(30), || async {
        (prometheus.query("recordstore_db_up").await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(
        prometheus.alert_state("DatabaseDown").await,
        None,
        "quiet while the database is up"
    );

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    eventually("DatabaseDown to go pending", Duration::from_secs(20), || async {
        (prometheus.alert_state("DatabaseDown").await.as_deref() == Some("pending")).then_some(())
    })
    .await;
    eventually(
        "DatabaseDown to fire after its 30 s",
        Duration::from_secs(60),
        || async { (prometheus.alert_state("DatabaseDown").await.as_deref() == Some("firing")).then_some(()) },
    )
    .await;

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.start())
        .await
        .unwrap()
        .expect("postgres restarts");
    eventually("DatabaseDown to clear", Duration::from_secs(30), || async {
        prometheus.alert_state("DatabaseDown").await.is_none().then_some(())
    })
    .await;
    t.app.shutdown().await.unwrap();
}
