//! Links from a report to the stack's own UIs for one request: its trace in Jaeger and its
//! log lines in Grafana's Explore (the Loki data source the stack provisions, uid `loki`).

use reqwest::Url;

/// Jaeger's search for traces of the api whose spans carry `correlation_id`, within
/// [`from_ms`, `to_ms`] (widened by a minute each side for clock skew).
pub fn jaeger_search(jaeger: &str, correlation_id: &str, from_ms: i64, to_ms: i64) -> String {
    let tags = serde_json::json!({ "correlation_id": correlation_id }).to_string();
    let (start, end) = ((from_ms - 60_000) * 1000, (to_ms + 60_000) * 1000);
    Url::parse_with_params(
        &format!("{}/search", jaeger.trim_end_matches('/')),
        [
            ("service", "recordstore-api".to_string()),
            ("tags", tags),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", "20".to_string()),
        ],
    )
    .map(String::from)
    .unwrap_or_default()
}

/// Grafana Explore on the Loki data source with `logql`, over [`from_ms`, `to_ms`] (widened
/// by a minute each side).
pub fn grafana_logs(grafana: &str, logql: &str, from_ms: i64, to_ms: i64) -> String {
    let panes = serde_json::json!({
        "a": {
            "datasource": "loki",
            "queries": [{ "refId": "A", "expr": logql, "datasource": { "type": "loki", "uid": "loki" } }],
            "range": { "from": (from_ms - 60_000).to_string(), "to": (to_ms + 60_000).to_string() },
        }
    })
    .to_string();
    Url::parse_with_params(
        &format!("{}/explore", grafana.trim_end_matches('/')),
        [("schemaVersion", "1"), ("orgId", "1"), ("panes", panes.as_str())],
    )
    .map(String::from)
    .unwrap_or_default()
}

/// The LogQL that finds a correlation id's lines in the stack's Loki.
pub fn logql_for(correlation_id: &str) -> String {
    let id = super::loki::logql_string(correlation_id);
    format!("{{service=~\"recordstore.*\"}} |= {id} | json | correlation_id = {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &str) -> Vec<(String, String)> {
        Url::parse(url).unwrap().query_pairs().into_owned().collect()
    }

    #[test]
    fn the_jaeger_link_searches_the_api_by_correlation_id_around_the_request() {
        let url = jaeger_search("http://jaeger:16686/", "drill-1-7", 1_000_000, 1_001_000);
        assert!(url.starts_with("http://jaeger:16686/search?"), "{url}");
        let q = query(&url);
        assert!(q.contains(&("service".into(), "recordstore-api".into())), "{q:?}");
        assert!(
            q.contains(&("tags".into(), r#"{"correlation_id":"drill-1-7"}"#.into())),
            "{q:?}"
        );
        assert!(q.contains(&("start".into(), "940000000".into())), "{q:?}");
        assert!(q.contains(&("end".into(), "1061000000".into())), "{q:?}");
    }

    #[test]
    fn the_grafana_link_opens_explore_on_loki_with_the_query_escaped() {
        let logql = logql_for("a\"b");
        let url = grafana_logs("http://grafana:3000", &logql, 5_000_000, 5_001_000);
        let q = query(&url);
        let panes = &q.iter().find(|(k, _)| k == "panes").unwrap().1;
        let panes: serde_json::Value = serde_json::from_str(panes).unwrap();
        assert_eq!(panes["a"]["datasource"], "loki");
        assert_eq!(panes["a"]["queries"][0]["expr"], logql);
        assert_eq!(panes["a"]["range"]["from"], "4940000");
        assert!(logql.contains(r#"|= "a\"b""#), "{logql}");
    }
}
