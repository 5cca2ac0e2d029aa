//! The embedded target: recordstore started in-process on 127.0.0.1:0 with a throwaway
//! SQLite database and its worker, so commands work with nothing else running.

use std::path::PathBuf;
use std::time::Duration;

use recordstore::{Application, Config, Role, RunningApp};

/// Stops when dropped (an early error return cannot leak it); [`EmbeddedTarget::stop`]
/// waits for in-flight requests and jobs.
pub struct EmbeddedTarget {
    app: Option<RunningApp>,
    dir: PathBuf,
}

impl Drop for EmbeddedTarget {
    fn drop(&mut self) {
        if let Some(app) = &self.app {
            app.stop_soon();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl EmbeddedTarget {
    /// Starts the store; with `capture`, its spans and log lines are kept in memory.
    pub async fn start_with(capture: bool) -> Result<EmbeddedTarget, String> {
        let dir = std::env::temp_dir().join(format!(
            "recordctl-embedded-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut config = Config::embedded(format!("sqlite://{}", dir.join("store.db").display()));
        config.telemetry.capture = capture;
        let app = Application::build(config, Role::ApiAndWorker, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        Ok(EmbeddedTarget {
            app: Some(app.spawn().await),
            dir,
        })
    }

    /// For load tests: many requests, so spans and log lines are not kept.
    pub async fn start() -> Result<EmbeddedTarget, String> {
        EmbeddedTarget::start_with(false).await
    }

    fn app(&self) -> &RunningApp {
        self.app.as_ref().expect("the app runs until stop() or drop")
    }

    pub fn captured(&self) -> &std::sync::Arc<recordstore::telemetry::Captured> {
        self.app().captured()
    }

    pub fn base_url(&self) -> String {
        self.app().base_url()
    }

    /// Stops the store, waiting for in-flight requests and jobs; the drop removes its files.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            let _ = app.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An embedded store dropped on an error path stops serving and leaves no files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_embedded_store_stops_and_cleans_up() {
        let target = EmbeddedTarget::start().await.unwrap();
        let (url, dir) = (format!("{}/health/live", target.base_url()), target.dir.clone());
        let client = reqwest::Client::new();
        assert!(client.get(&url).send().await.unwrap().status().is_success());
        drop(target);
        assert!(!dir.exists(), "its database files are gone");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client.get(&url).send().await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "still serving 10 s after the drop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
