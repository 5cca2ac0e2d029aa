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
        // The store may still write its SQLite files while it stops: a removal that raced one
        // is tried again, a bounded number of times.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Why the embedded store did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot create {}: {source}", dir.display())]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Start(#[from] recordstore::startup::StartupError),
}

impl EmbeddedTarget {
    /// Starts the store; with `capture`, its spans and log lines are kept in memory.
    pub async fn start_with(capture: bool) -> Result<EmbeddedTarget, EmbeddedError> {
        let dir = std::env::temp_dir().join(format!(
            "recordctl-embedded-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        if let Err(source) = std::fs::create_dir_all(&dir) {
            return Err(EmbeddedError::Dir { dir, source });
        }
        let mut config = Config::embedded(format!("sqlite://{}", dir.join("store.db").display()));
        config.telemetry.capture = capture;
        let app = Application::build(config, Role::ApiAndWorker, Duration::from_secs(10)).await?;
        Ok(EmbeddedTarget {
            app: Some(app.spawn().await),
            dir,
        })
    }

    /// For load tests: many requests, so spans and log lines are not kept.
    pub async fn start() -> Result<EmbeddedTarget, EmbeddedError> {
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
