//! The Pushgateway: a group of metrics in the text exposition format, replaced in one PUT.

/// PUTs text exposition to `{gateway}/metrics/{group}`, replacing that group's metrics.
pub async fn put(gateway: &str, group: &str, body: String) -> Result<(), PushError> {
    let url = format!("{}/metrics/{group}", gateway.trim_end_matches('/'));
    let response = super::http_client()
        .put(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| PushError::Unreachable {
            url: url.clone(),
            reason: super::error_chain(&e),
        })?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default().trim().to_string();
        return Err(PushError::Refused { url, status, body });
    }
    Ok(())
}

/// Why a push did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot push to the Pushgateway at {url}: {reason} (is it running? docker compose up -d pushgateway)")]
    Unreachable { url: String, reason: String },
    #[error("the Pushgateway at {url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
}
