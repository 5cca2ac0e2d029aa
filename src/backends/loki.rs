//! Loki's `query_range` API: the log lines carrying one correlation id. LogQL is built with
//! the id escaped; timestamps are nanosecond strings; Loki's errors are `text/plain`
//! bodies (400 for a bad query, 504 for a timeout) and are shown as they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BackendError, get_json, http_client};

const BACKEND: &str = "Loki";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub timestamp_ns: u128,
    pub labels: BTreeMap<String, String>,
    pub line: String,
    /// The line parsed as JSON, when it is (the app's lines are).
    pub fields: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

pub struct LokiClient {
    base: String,
    http: reqwest::Client,
    /// The stream selector the log shipper labels the app's lines with.
    selector: String,
}

/// A LogQL string literal: `"` and `\` escaped.
pub fn logql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    stream: BTreeMap<String, String>,
    values: Vec<(String, String)>,
}

impl LokiClient {
    pub fn new(base: &str) -> LokiClient {
        LokiClient {
            base: base.trim_end_matches('/').to_string(),
            http: http_client(),
            selector: r#"{service=~"recordstore.*"}"#.into(),
        }
    }

    pub fn with_selector(mut self, selector: &str) -> LokiClient {
        self.selector = selector.to_string();
        self
    }

    /// `GET /ready`: Loki answers 200 `ready` once it accepts pushes and queries.
    pub async fn ready(&self) -> Result<(), BackendError> {
        let url = format!("{}/ready", self.base);
        let (status, _content_type, body) = super::get(&self.http, BACKEND, &url, &[]).await?;
        if status == 200 {
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

    /// The LogQL query for lines whose `correlation_id` field is `id`.
    pub fn query_for(&self, id: &str) -> String {
        format!(
            "{} |= {} | json | correlation_id = {}",
            self.selector,
            logql_string(id),
            logql_string(id)
        )
    }

    /// Lines carrying `correlation_id` between `start_ns` and `end_ns`, oldest first.
    pub async fn lines_with_correlation_id(
        &self,
        id: &str,
        start_ns: u128,
        end_ns: u128,
        limit: usize,
        direction: Direction,
    ) -> Result<Vec<LogLine>, BackendError> {
        let url = format!("{}/loki/api/v1/query_range", self.base);
        let query = [
            ("query", self.query_for(id)),
            ("start", start_ns.to_string()),
            ("end", end_ns.to_string()),
            ("limit", limit.to_string()),
            (
                "direction",
                if direction == Direction::Forward {
                    "forward"
                } else {
                    "backward"
                }
                .to_string(),
            ),
        ];
        let envelope: Envelope = get_json(&self.http, BACKEND, &url, &query).await?;
        let mut lines = lines_of(envelope).map_err(|e| BackendError::Decode {
            backend: BACKEND,
            url,
            reason: e.to_string(),
        })?;
        lines.sort_by_key(|l| l.timestamp_ns);
        if direction == Direction::Backward {
            lines.reverse();
        }
        Ok(lines)
    }
}

/// The log lines of a `query_range` answer, as the client reads them, without the network.
pub fn decode_query_range(body: &[u8]) -> Result<Vec<LogLine>, AnswerError> {
    lines_of(serde_json::from_slice(body)?)
}

/// A `query_range` answer that is not one: bad JSON, no data, not streams, a bad timestamp.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("status {0:?} without data")]
    NoData(String),
    #[error("resultType {0:?}, expected streams")]
    NotStreams(String),
    #[error("timestamp {0:?} is not nanoseconds")]
    Timestamp(String),
}

fn lines_of(envelope: Envelope) -> Result<Vec<LogLine>, AnswerError> {
    let data = match (envelope.status.as_str(), envelope.data) {
        ("success", Some(data)) => data,
        (status, _) => return Err(AnswerError::NoData(status.to_string())),
    };
    if data.result_type != "streams" {
        return Err(AnswerError::NotStreams(data.result_type));
    }
    let mut lines = Vec::new();
    for stream in data.result {
        for (ts, line) in stream.values {
            let timestamp_ns = ts.parse().map_err(|_| AnswerError::Timestamp(ts.clone()))?;
            let fields = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v.as_object().cloned());
            lines.push(LogLine {
                timestamp_ns,
                labels: stream.stream.clone(),
                line,
                fields,
            });
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_escaped_in_logql() {
        assert_eq!(logql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        let q = LokiClient::new("http://x").query_for("run-1");
        assert_eq!(
            q,
            r#"{service=~"recordstore.*"} |= "run-1" | json | correlation_id = "run-1""#
        );
    }
}
