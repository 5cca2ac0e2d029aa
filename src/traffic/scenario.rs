//! Scenario files: the TOML model, parsing with `file:line:col` errors, validation, and the
//! small template language (`{var}` in paths, headers and bodies; values extracted from
//! JSON responses by dotted paths such as `products.*.id`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use crate::units::UnitError;

use crate::tomlfile::{Invalid, from_toml};
use crate::units::{HumanDuration, parse_duration};

/// Scenarios shipped in the binary, usable by name from anywhere.
pub const BUILTIN: &[(&str, &str)] = &[
    ("browse", include_str!("../../scenarios/browse.toml")),
    ("purchase", include_str!("../../scenarios/purchase.toml")),
    ("checkout", include_str!("../../scenarios/checkout.toml")),
    ("smoke", include_str!("../../scenarios/smoke.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(rename = "transaction")]
    pub transactions: Vec<Transaction>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub users: Option<usize>,
    pub rate: Option<String>,
    pub ramp_up: Option<HumanDuration>,
    pub duration: Option<HumanDuration>,
    pub iterations: Option<usize>,
    pub think_time: Option<ThinkTime>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default)]
    pub checks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Variables known from the start of each run, each one of its listed values at random:
    /// `pick = { product_id = [1, 4, 5] }`.
    #[serde(default)]
    pub pick: BTreeMap<String, Vec<toml::Value>>,
    #[serde(rename = "request")]
    pub requests: Vec<RequestSpec>,
}

impl Transaction {
    /// The variables a run starts with: one value of each `pick` list, chosen at random.
    pub fn picked(&self) -> Vars {
        let mut rng = rand::rng();
        self.pick
            .iter()
            .filter(|(_, choices)| !choices.is_empty())
            .map(|(name, choices)| {
                let choice = &choices[rng.random_range(..choices.len())];
                (name.clone(), render_body(choice, &Vars::new()))
            })
            .collect()
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub name: String,
    #[serde(default)]
    pub method: Method,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<toml::Value>,
    /// Statuses that count as success; default any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// Variables to take from the JSON response: name → dotted path.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    pub think_time: Option<ThinkTime>,
    pub poll: Option<Poll>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Method {
    #[default]
    GET,
    POST,
    PUT,
    PATCH,
    DELETE,
    HEAD,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
        }
    }
}

/// Repeat a request until a field of its JSON answer takes one of the given values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    pub field: String,
    pub until: Vec<String>,
    #[serde(default = "default_poll_every")]
    pub every: HumanDuration,
    #[serde(default = "default_poll_timeout")]
    pub timeout: HumanDuration,
}

fn default_poll_every() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

fn default_poll_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// A fixed pause (`500ms`) or a uniformly random one (`200ms..800ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkTime {
    pub min: Duration,
    pub max: Duration,
}

impl ThinkTime {
    pub const ZERO: ThinkTime = ThinkTime {
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    pub fn parse(raw: &str) -> Result<ThinkTime, UnitError> {
        match raw.split_once("..") {
            Some((a, b)) => {
                let (min, max) = (parse_duration(a)?, parse_duration(b)?);
                if min > max {
                    return Err(UnitError::RangeReversed { raw: raw.to_string() });
                }
                Ok(ThinkTime { min, max })
            }
            None => parse_duration(raw).map(|d| ThinkTime { min: d, max: d }),
        }
    }

    pub fn sample(&self) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let span = (self.max - self.min).as_micros() as u64;
        self.min + Duration::from_micros(rand::rng().random_range(0..=span))
    }
}

impl<'de> Deserialize<'de> for ThinkTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ThinkTime::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A scenario problem: a located file error.
pub type ScenarioError = crate::tomlfile::FileError;

/// Where a scenario comes from: a built-in name or a file path.
pub fn load(spec: &str) -> Result<Scenario, ScenarioError> {
    if let Some((name, text)) = BUILTIN.iter().find(|(name, _)| *name == spec) {
        return parse(text, &format!("scenarios/{name}.toml (built in)"));
    }
    let path = PathBuf::from(spec);
    let path = if path.exists() || path.extension().is_some() {
        path
    } else {
        Path::new("scenarios").join(format!("{spec}.toml"))
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ScenarioError {
        file: path.display().to_string(),
        line: None,
        column: None,
        message: format!(
            "cannot read the scenario: {e} (built-in scenarios: {})",
            BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates scenario text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = from_toml(text, file)?;
    validate(&scenario).map_err(|invalid| invalid.located(text, file))?;
    Ok(scenario)
}

/// Checks what serde cannot: names, weights, variables used before they are extracted.
/// Errors carry a snippet to locate in the text.
fn validate(s: &Scenario) -> Result<(), Invalid> {
    if s.transactions.is_empty() {
        return Err(Invalid::new(
            None,
            "a scenario needs at least one [[transaction]]".into(),
        ));
    }
    if let Some(rate) = &s.defaults.rate {
        crate::units::parse_rate(rate).map_err(|e| Invalid::new(Some(format!("rate = \"{rate}\"")), e.to_string()))?;
    }
    for check in &s.thresholds.checks {
        crate::traffic::threshold::Threshold::parse(check)
            .map_err(|e| Invalid::new(Some(format!("\"{check}\"")), e.to_string()))?;
    }
    for tx in &s.transactions {
        if tx.requests.is_empty() {
            return Err(Invalid::new(
                Some(format!("name = \"{}\"", tx.name)),
                format!("transaction {:?} has no [[transaction.request]]", tx.name),
            ));
        }
        if tx.weight == 0 {
            return Err(Invalid::new(
                Some(format!("name = \"{}\"", tx.name)),
                format!("transaction {:?}: weight must be at least 1", tx.name),
            ));
        }
        for (name, choices) in &tx.pick {
            if !is_var_name(name) || choices.is_empty() {
                return Err(Invalid::new(
                    Some(format!("{name} = [")),
                    format!(
                        "transaction {:?}: pick.{name} needs a name of letters, digits and _ and at least one value",
                        tx.name
                    ),
                ));
            }
        }
        let mut known: BTreeSet<&str> = tx.pick.keys().map(String::as_str).collect();
        for req in &tx.requests {
            let located = Some(format!("name = \"{}\"", req.name));
            if !req.path.starts_with('/') {
                return Err(Invalid::new(
                    Some(format!("path = \"{}\"", req.path)),
                    format!("request {:?}: path must start with '/'", req.name),
                ));
            }
            for (name, value) in &req.headers {
                if !crate::traffic::http_client::is_header_name(name) || value.contains(['\r', '\n', '\0']) {
                    let near = if name.is_empty() {
                        format!("name = \"{}\"", req.name)
                    } else {
                        name.clone()
                    };
                    return Err(Invalid::new(
                        Some(near),
                        format!(
                            "request {:?}: header {name:?} needs a name of letters, digits and !#$%&'*+-.^_`|~ and a value on one line",
                            req.name
                        ),
                    ));
                }
            }
            let mut used = variables(&req.path);
            req.headers.values().for_each(|v| used.extend(variables(v)));
            if let Some(body) = &req.body {
                used.extend(variables(&body.to_string()));
            }
            if let Some(missing) = used.iter().find(|v| !known.contains(v.as_str())) {
                return Err(Invalid::new(
                    located,
                    format!(
                        "request {:?} uses {{{missing}}} but no earlier request of transaction {:?} extracts it",
                        req.name, tx.name
                    ),
                ));
            }
            if req.poll.as_ref().is_some_and(|p| p.until.is_empty()) {
                return Err(Invalid::new(
                    located,
                    format!("request {:?}: poll.until needs at least one value", req.name),
                ));
            }
            known.extend(req.extract.keys().map(String::as_str));
        }
    }
    Ok(())
}

/// The `{name}` placeholders in a template.
pub fn variables(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if is_var_name(&after[..end]) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

fn is_var_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Variables of one running transaction.
pub type Vars = BTreeMap<String, Value>;

/// Fills `{name}` placeholders with variable values (strings unquoted).
pub fn render(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}').filter(|end| is_var_name(&after[..*end])) {
            Some(end) => {
                match vars.get(&after[..end]) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => out.push_str(&rest[start..start + end + 2]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Turns a TOML body into JSON, filling placeholders. A string that is exactly `"{name}"`
/// takes the variable's JSON value as it is (a number stays a number).
pub fn render_body(body: &toml::Value, vars: &Vars) -> Value {
    match body {
        toml::Value::String(s) => {
            let whole = s
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .filter(|n| is_var_name(n));
            match whole.and_then(|name| vars.get(name)) {
                Some(value) => value.clone(),
                None => Value::String(render(s, vars)),
            }
        }
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(|v| render_body(v, vars)).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), render_body(v, vars))).collect()),
    }
}

/// Follows a dotted path (`products.0.id`; `*` picks a random element) through JSON.
pub fn extract<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        current = match (current, part) {
            (Value::Array(items), "*") if !items.is_empty() => &items[rand::rng().random_range(0..items.len())],
            (Value::Array(items), index) => items.get(index.parse::<usize>().ok()?)?,
            (Value::Object(map), key) => map.get(key)?,
            _ => return None,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn huge_and_odd_durations_are_errors_not_panics() {
        for bad in [
            "99999999999999999999s",
            "1e400s",
            "366d",
            "9999999h",
            "-1s",
            "NaNs",
            "inf s",
            "",
            "s",
            "1.5.5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(parse_duration("365.0h").unwrap(), Duration::from_secs(365 * 3600));
        assert!(
            parse_duration("99999999999999999999s")
                .unwrap_err()
                .to_string()
                .contains("at most 365 days")
        );
    }

    #[test]
    fn builtin_scenarios_parse() {
        for (name, text) in BUILTIN {
            let s = parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn picked_variables_are_known_from_the_start_and_drawn_from_their_list() {
        let text = "name = \"x\"\n[[transaction]]\nname = \"t\"\npick = { id = [3, 5], who = [\"ann\"] }\n\
                    [[transaction.request]]\nname = \"r\"\npath = \"/p/{id}\"\nbody = { id = \"{id}\", who = \"{who}\" }\n";
        let s = parse(text, "x.toml").unwrap_or_else(|e| panic!("{e}"));
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            let vars = s.transactions[0].picked();
            assert_eq!(vars["who"], json!("ann"));
            seen.insert(vars["id"].as_i64().expect("a number stays a number"));
        }
        assert_eq!(seen, BTreeSet::from([3, 5]), "both choices drawn");

        let empty = "name = \"x\"\n[[transaction]]\nname = \"t\"\npick = { id = [] }\n\
                     [[transaction.request]]\nname = \"r\"\npath = \"/p/{id}\"\n";
        let err = parse(empty, "x.toml").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.to_string().contains("pick.id needs"), "{err}");
    }

    #[test]
    fn a_misspelt_field_is_reported_with_line_and_column() {
        let text = "name = \"x\"\n\n[[transaction]]\nname = \"t\"\nwieght = 2\n[[transaction.request]]\nname = \"r\"\npath = \"/\"\n";
        let err = parse(text, "scenarios/x.toml").unwrap_err();
        assert_eq!((err.line, err.column), (Some(5), Some(1)), "{err}");
        assert!(
            err.to_string()
                .starts_with("scenarios/x.toml:5:1: unknown field `wieght`, expected"),
            "{err}"
        );
        assert!(err.message.contains("weight"), "{err}");
    }

    #[test]
    fn bad_durations_and_syntax_are_located() {
        let err = parse("name = \"x\"\n[defaults]\nduration = \"10 parsecs\"\n", "f.toml").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("unknown unit"), "{err}");
        let err = parse("name = \"x\"\n[[transaction]\n", "f.toml").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn header_names_and_values_are_checked_before_any_request() {
        // A named header is located at its own line, an unnamed one at its request's name.
        for (header, line) in [
            ("\"bad name\" = \"1\"", 7),
            ("x-a = \"1\\r\\nx-injected: 1\"", 7),
            ("\"\" = \"1\"", 5),
        ] {
            let text = format!(
                "name = \"x\"\n[[transaction]]\nname = \"t\"\n[[transaction.request]]\nname = \"r\"\npath = \"/\"\nheaders = {{ {header} }}\n"
            );
            let err = parse(&text, "f.toml").unwrap_err();
            assert!(err.to_string().contains("a value on one line"), "{header}: {err}");
            assert_eq!(err.line, Some(line), "{header}: {err}");
        }
    }

    #[test]
    fn variables_must_be_extracted_before_use() {
        let text = "name = \"x\"\n[[transaction]]\nname = \"t\"\n[[transaction.request]]\nname = \"view\"\npath = \"/products/{id}\"\n";
        let err = parse(text, "f.toml").unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("{id}"), "{err}");
    }

    #[test]
    fn templates_render_and_bodies_keep_types() {
        let vars: Vars = [("id".to_string(), json!(7)), ("who".to_string(), json!("ann"))].into();
        assert_eq!(
            render("/products/{id}?by={who}&{not a var}", &vars),
            "/products/7?by=ann&{not a var}"
        );
        let body: toml::Value = toml::from_str("product_id = \"{id}\"\nnote = \"for {who}\"\nquantity = 1").unwrap();
        assert_eq!(
            render_body(&body, &vars),
            json!({ "product_id": 7, "note": "for ann", "quantity": 1 })
        );
    }

    #[test]
    fn extraction_follows_paths_and_picks_randomly_with_star() {
        let v = json!({ "products": [{ "id": 1 }, { "id": 2 }], "order_id": 9 });
        assert_eq!(extract(&v, "order_id"), Some(&json!(9)));
        assert_eq!(extract(&v, "products.1.id"), Some(&json!(2)));
        assert!(matches!(extract(&v, "products.*.id"), Some(x) if x == &json!(1) || x == &json!(2)));
        assert_eq!(extract(&v, "products.5.id"), None);
        assert_eq!(extract(&json!({ "products": [] }), "products.*.id"), None);
    }

    #[test]
    fn think_times_parse_fixed_and_ranges() {
        assert_eq!(
            ThinkTime::parse("250ms").unwrap(),
            ThinkTime {
                min: Duration::from_millis(250),
                max: Duration::from_millis(250)
            }
        );
        let range = ThinkTime::parse("1s..2s").unwrap();
        let sample = range.sample();
        assert!(sample >= Duration::from_secs(1) && sample <= Duration::from_secs(2));
        assert!(ThinkTime::parse("2s..1s").is_err());
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
