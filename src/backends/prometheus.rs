//! Prometheus: instant queries through prometheus-http-query, and a raw call for
//! `/api/v1/query_exemplars`, which that crate does not cover.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BackendError, get, http_client};

const BACKEND: &str = "Prometheus";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exemplar {
    pub series: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub labels: BTreeMap<String, String>,
    pub scrape_url: String,
    pub health: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub state: String,
    pub active_at_unix: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleStatus {
    pub group: String,
    pub name: String,
    pub kind: String,
    pub health: String,
}

pub struct PrometheusClient {
    base: String,
    client: prometheus_http_query::Client,
    http: reqwest::Client,
}

/// reqwest's `… for url (URL)` with the URL (and its encoded query) left out.
fn without_url(text: &str) -> String {
    match (text.find(" for url ("), text.rfind(')')) {
        (Some(start), Some(end)) if end > start => format!("{}{}", &text[..start], &text[end + 1..]),
        _ => text.to_string(),
    }
}

fn map_error(base: &str, e: prometheus_http_query::Error) -> BackendError {
    match e {
        prometheus_http_query::Error::Prometheus(p) => BackendError::Api {
            backend: BACKEND,
            url: base.to_string(),
            status: 400,
            body: p.to_string(),
        },
        other => {
            let text = other.to_string();
            let mut source = std::error::Error::source(&other);
            let mut chain = text.clone();
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&without_url(&cause.to_string()));
                source = cause.source();
            }
            if chain.contains("error sending request") || chain.contains("onnect") {
                BackendError::Unreachable {
                    backend: BACKEND,
                    url: base.to_string(),
                    reason: chain,
                }
            } else {
                BackendError::Decode {
                    backend: BACKEND,
                    url: base.to_string(),
                    reason: chain,
                }
            }
        }
    }
}

impl PrometheusClient {
    pub fn new(base: &str) -> Result<PrometheusClient, BackendError> {
        let base = base.trim_end_matches('/').to_string();
        let http = http_client();
        let client = prometheus_http_query::Client::from(http.clone(), &base).map_err(|e| BackendError::Decode {
            backend: BACKEND,
            url: base.clone(),
            reason: e.to_string(),
        })?;
        Ok(PrometheusClient { base, client, http })
    }

    /// An instant query; a vector result as labelled samples.
    pub async fn instant(&self, promql: &str) -> Result<Vec<Sample>, BackendError> {
        let result = self
            .client
            .query(promql)
            .get()
            .await
            .map_err(|e| map_error(&self.base, e))?;
        match result.data() {
            prometheus_http_query::response::Data::Vector(vector) => Ok(vector
                .iter()
                .map(|v| Sample {
                    labels: v.metric().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    value: v.sample().value(),
                })
                .collect()),
            prometheus_http_query::response::Data::Scalar(s) => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: s.value(),
            }]),
            prometheus_http_query::response::Data::Matrix(_) => Err(BackendError::Decode {
                backend: BACKEND,
                url: self.base.clone(),
                reason: format!("{promql} gave a range vector; expected an instant vector"),
            }),
        }
    }

    /// A range query: each series with its (unix seconds, value) points.
    pub async fn range(&self, promql: &str, start: i64, end: i64, step_s: f64) -> Result<Vec<Series>, BackendError> {
        let result = self
            .client
            .query_range(promql, start, end, step_s)
            .get()
            .await
            .map_err(|e| map_error(&self.base, e))?;
        match result.data() {
            prometheus_http_query::response::Data::Matrix(matrix) => Ok(matrix
                .iter()
                .map(|m| Series {
                    labels: m.metric().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    points: m.samples().iter().map(|s| (s.timestamp(), s.value())).collect(),
                })
                .collect()),
            _ => Err(BackendError::Decode {
                backend: BACKEND,
                url: self.base.clone(),
                reason: format!("{promql}: expected a range vector"),
            }),
        }
    }

    /// Active scrape targets and their health (`up`, `down`, `unknown`).
    pub async fn targets(&self) -> Result<Vec<Target>, BackendError> {
        let targets = self.client.targets(None).await.map_err(|e| map_error(&self.base, e))?;
        Ok(targets
            .active()
            .iter()
            .map(|t| Target {
                labels: t.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                scrape_url: t.scrape_url().to_string(),
                health: format!("{:?}", t.health()).to_lowercase(),
            })
            .collect())
    }

    /// Alerts pending or firing, with when they became active.
    pub async fn alerts(&self) -> Result<Vec<Alert>, BackendError> {
        let alerts = self.client.alerts().await.map_err(|e| map_error(&self.base, e))?;
        Ok(alerts
            .iter()
            .map(|a| Alert {
                labels: a.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                state: format!("{:?}", a.state()).to_lowercase(),
                active_at_unix: a.active_at().unix_timestamp() as f64 + f64::from(a.active_at().nanosecond()) / 1e9,
            })
            .collect())
    }

    /// Loaded rules: (group, rule name, `recording` or `alerting`, health).
    pub async fn rules(&self) -> Result<Vec<RuleStatus>, BackendError> {
        use prometheus_http_query::response::Rule;
        let groups = self.client.rules().get().await.map_err(|e| map_error(&self.base, e))?;
        let mut out = Vec::new();
        for group in &groups {
            for rule in group.rules() {
                let (name, kind, health) = match rule {
                    Rule::Recording(r) => (r.name().to_string(), "recording", format!("{:?}", r.health())),
                    Rule::Alerting(a) => (a.name().to_string(), "alerting", format!("{:?}", a.health())),
                };
                out.push(RuleStatus {
                    group: group.name().to_string(),
                    name,
                    kind: kind.to_string(),
                    // The API's own words for rule health: ok, err, unknown.
                    health: match health.as_str() {
                        "Good" => "ok",
                        "Bad" => "err",
                        _ => "unknown",
                    }
                    .to_string(),
                });
            }
        }
        Ok(out)
    }

    /// Exemplars of `query` between two unix times (seconds).
    pub async fn exemplars(&self, query: &str, start: f64, end: f64) -> Result<Vec<Exemplar>, BackendError> {
        let url = format!("{}/api/v1/query_exemplars", self.base);
        let params = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ];
        let (status, _ct, body) = get(&self.http, BACKEND, &url, &params).await?;
        let doc: Value = serde_json::from_str(&body).map_err(|e| BackendError::Decode {
            backend: BACKEND,
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if status != 200 || doc["status"] != "success" {
            let error = doc["error"].as_str().unwrap_or(body.trim()).to_string();
            return Err(BackendError::Api {
                backend: BACKEND,
                url,
                status,
                body: error,
            });
        }
        Ok(decode_exemplars(&doc))
    }
}

/// The exemplars of a `query_exemplars` answer whose status was success; fields that are
/// missing or of another type are left empty rather than trusted.
pub fn decode_exemplars(doc: &Value) -> Vec<Exemplar> {
    let labels = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect()
    };
    let mut out = Vec::new();
    for series in doc["data"].as_array().into_iter().flatten() {
        for e in series["exemplars"].as_array().into_iter().flatten() {
            out.push(Exemplar {
                series: labels(&series["seriesLabels"]),
                labels: labels(&e["labels"]),
                value: e["value"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0),
                timestamp: e["timestamp"].as_f64().unwrap_or(0.0),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_lose_their_url_and_its_encoded_query() {
        assert_eq!(
            without_url("error sending request for url (http://x:9/api/v1/query?query=a%7Bb%7D)"),
            "error sending request"
        );
        assert_eq!(without_url("tcp connect error"), "tcp connect error");
        assert_eq!(without_url(") for url (é"), ") for url (é");
    }
}
