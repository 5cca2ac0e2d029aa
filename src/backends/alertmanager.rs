//! Alertmanager's API v2: whether it is ready (`/-/ready`) and the alerts it holds
//! (`/api/v2/alerts`), each with its name and state (active, suppressed, unprocessed).

use serde_json::Value;

use super::{BackendError, get, http_client};

const BACKEND: &str = "Alertmanager";

/// An alert as Alertmanager holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmAlert {
    pub name: String,
    /// `active`, `suppressed` (silenced or inhibited) or `unprocessed`.
    pub state: String,
}

pub struct AlertmanagerClient {
    base: String,
    http: reqwest::Client,
}

impl AlertmanagerClient {
    pub fn new(base: &str) -> AlertmanagerClient {
        AlertmanagerClient {
            base: base.trim_end_matches('/').to_string(),
            http: http_client(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `Ok` when `/-/ready` answers 2xx.
    pub async fn ready(&self) -> Result<(), BackendError> {
        let url = format!("{}/-/ready", self.base);
        let (status, _, body) = get(&self.http, BACKEND, &url, &[]).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(BackendError::Api {
                backend: BACKEND,
                url,
                status,
                body: body.trim().to_string(),
            })
        }
    }

    /// The alerts Alertmanager holds now.
    pub async fn alerts(&self) -> Result<Vec<AmAlert>, BackendError> {
        let url = format!("{}/api/v2/alerts", self.base);
        let (status, _, body) = get(&self.http, BACKEND, &url, &[]).await?;
        if status != 200 {
            return Err(BackendError::Api {
                backend: BACKEND,
                url,
                status,
                body: body.trim().to_string(),
            });
        }
        let doc: Value = serde_json::from_str(&body).map_err(|e| BackendError::Decode {
            backend: BACKEND,
            url,
            reason: e.to_string(),
        })?;
        Ok(decode_alerts(&doc))
    }
}

/// The alerts of an `/api/v2/alerts` answer; entries without a name are skipped.
pub fn decode_alerts(doc: &Value) -> Vec<AmAlert> {
    doc.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some(AmAlert {
                name: a["labels"]["alertname"].as_str()?.to_string(),
                state: a["status"]["state"].as_str().unwrap_or("unknown").to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_decode_with_their_state_and_odd_entries_are_skipped() {
        let doc = serde_json::json!([
            {"labels": {"alertname": "DatabaseDown", "severity": "page"}, "status": {"state": "active"}},
            {"labels": {"alertname": "ApiDown"}, "status": {"state": "suppressed", "inhibitedBy": ["x"]}},
            {"labels": {}, "status": {"state": "active"}},
            {"labels": {"alertname": 3}},
            "not an alert"
        ]);
        let alerts = decode_alerts(&doc);
        assert_eq!(
            alerts,
            [
                AmAlert {
                    name: "DatabaseDown".into(),
                    state: "active".into()
                },
                AmAlert {
                    name: "ApiDown".into(),
                    state: "suppressed".into()
                }
            ]
        );
        assert!(decode_alerts(&serde_json::json!({"not": "a list"})).is_empty());
    }
}
