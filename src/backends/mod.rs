//! Clients of the stack's backends (Prometheus, Loki, Jaeger, Alertmanager, the Pushgateway,
//! Docker). They know nothing of clap: each takes a base URL and
//! answers data or a [`BackendError`] that names the URL and what to do.

pub mod alertmanager;
pub mod docker;
pub mod jaeger;
pub mod links;
pub mod loki;
pub mod prometheus;
pub mod pushgateway;

use std::time::Duration;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot reach {backend} at {url}: {reason} (is the stack up? run docker compose up -d)")]
    Unreachable {
        backend: &'static str,
        url: String,
        reason: String,
    },
    #[error("{backend} at {url} answered {status}: {body}")]
    Api {
        backend: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{backend} at {url} answered something unexpected: {reason}")]
    Decode {
        backend: &'static str,
        url: String,
        reason: String,
    },
}

pub fn http_client() -> reqwest::Client {
    client_with_timeout(DEFAULT_TIMEOUT)
}

/// The one HTTP client builder every command and backend client uses: a whole-request
/// timeout and nothing else. (The load engine builds its own, tuned for throughput.)
pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("the TLS backend initialises")
}

/// Sends a GET and returns the status, content type and body, or `Unreachable`.
pub(crate) async fn get(
    client: &reqwest::Client,
    backend: &'static str,
    url: &str,
    query: &[(&str, String)],
) -> Result<(u16, String, String), BackendError> {
    let response = client
        .get(url)
        .query(query)
        .send()
        .await
        .map_err(|e| BackendError::Unreachable {
            backend,
            url: url.to_string(),
            // Without the URL: its query string (a whole LogQL query, encoded) is noise here.
            reason: error_chain(&e.without_url()),
        })?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.text().await.map_err(|e| BackendError::Unreachable {
        backend,
        url: url.to_string(),
        reason: error_chain(&e),
    })?;
    Ok((status, content_type, body))
}

/// A GET that must answer 200 with a JSON document of type `T`; any other status is
/// shown with its body as the backend sent it (Loki's errors are plain text).
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    backend: &'static str,
    url: &str,
    query: &[(&str, String)],
) -> Result<T, BackendError> {
    let (status, _content_type, body) = get(client, backend, url, query).await?;
    if status != 200 {
        return Err(BackendError::Api {
            backend,
            url: url.to_string(),
            status,
            body: body.trim().to_string(),
        });
    }
    serde_json::from_str(&body).map_err(|e| BackendError::Decode {
        backend,
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// The one message every command gives when the target does not answer: the URL, the cause,
/// and how to start a store.
pub fn target_unreachable(url: &str, cause: &str) -> String {
    format!(
        "cannot reach the target at {url}: {cause} (is it running? `recordctl store` starts one, \
         `docker compose up -d` the whole stack; or drop --target for the embedded store)"
    )
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
