//! What to probe: from flags (one URL) or a probes file (`probes.toml`), validated up front.

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::exit::UsageError;
use crate::tomlfile::{FileError, from_toml, located};
use crate::units::HumanDuration;

/// The sample probes for the store, built in (`probes.toml` in the repository).
pub const SAMPLE: &str = include_str!("../../probes.toml");

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub name: String,
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// Empty: any 2xx.
    pub expect_status: Vec<u16>,
    pub max_latency: Option<Duration>,
    pub body_regex: Vec<Regex>,
    pub body_not_regex: Vec<Regex>,
    pub header_regex: Vec<(String, Regex)>,
    pub follow_redirects: bool,
    pub insecure: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TcpSpec {
    pub name: String,
    pub address: String,
    pub send: Option<String>,
    pub expect: Option<Regex>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum ProbeSpec {
    Http(HttpSpec),
    Tcp(TcpSpec),
}

impl ProbeSpec {
    pub fn name(&self) -> &str {
        match self {
            ProbeSpec::Http(h) => &h.name,
            ProbeSpec::Tcp(t) => &t.name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "probe")]
    probes: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    /// http(s)://… or a path (`/health/ready`) resolved against the target.
    url: Option<String>,
    /// host:port for a TCP probe.
    tcp: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    expect_status: Vec<u16>,
    max_latency: Option<HumanDuration>,
    #[serde(default)]
    body_regex: Vec<String>,
    #[serde(default)]
    body_not_regex: Vec<String>,
    #[serde(default)]
    header_regex: std::collections::BTreeMap<String, String>,
    #[serde(default = "yes")]
    follow_redirects: bool,
    #[serde(default)]
    insecure: bool,
    timeout: Option<HumanDuration>,
    send: Option<String>,
    expect: Option<String>,
}

fn yes() -> bool {
    true
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a probes file; relative URLs are joined to `target`.
pub fn parse(text: &str, file: &str, target: Option<&str>) -> Result<Vec<ProbeSpec>, FileError> {
    let locate = |needle: Option<&str>, message: String| located(text, file, needle, message);
    let parsed: File = from_toml(text, file)?;
    let mut specs = Vec::new();
    for entry in parsed.probes {
        let needle = format!("name = \"{}\"", entry.name);
        let at = |message: String| locate(Some(&needle), message);
        let timeout = entry.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT);
        let compile = |patterns: &[String]| -> Result<Vec<Regex>, FileError> {
            patterns
                .iter()
                .map(|p| Regex::new(p).map_err(|e| at(format!("probe {:?}: bad regular expression: {e}", entry.name))))
                .collect()
        };
        match (&entry.url, &entry.tcp) {
            (Some(url), None) => {
                let url = resolve_url(url, target).map_err(|e| at(format!("probe {:?}: {e}", entry.name)))?;
                let header_regex = entry
                    .header_regex
                    .iter()
                    .map(|(name, p)| {
                        Regex::new(p).map(|re| (name.clone(), re)).map_err(|e| {
                            at(format!(
                                "probe {:?}: bad regular expression for {name}: {e}",
                                entry.name
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                specs.push(ProbeSpec::Http(HttpSpec {
                    name: entry.name.clone(),
                    url,
                    method: entry.method.clone().unwrap_or_else(|| "GET".into()).to_uppercase(),
                    headers: entry.headers.clone().into_iter().collect(),
                    expect_status: entry.expect_status.clone(),
                    max_latency: entry.max_latency.map(|d| d.0),
                    body_regex: compile(&entry.body_regex)?,
                    body_not_regex: compile(&entry.body_not_regex)?,
                    header_regex,
                    follow_redirects: entry.follow_redirects,
                    insecure: entry.insecure,
                    timeout,
                }));
            }
            (None, Some(address)) => {
                let expect = entry
                    .expect
                    .as_ref()
                    .map(|p| compile(std::slice::from_ref(p)))
                    .transpose()?;
                specs.push(ProbeSpec::Tcp(TcpSpec {
                    name: entry.name.clone(),
                    address: address.clone(),
                    send: entry.send.clone(),
                    expect: expect.and_then(|mut v| v.pop()),
                    timeout,
                }));
            }
            _ => {
                return Err(at(format!(
                    "probe {:?} needs exactly one of `url` or `tcp`",
                    entry.name
                )));
            }
        }
    }
    if specs.is_empty() {
        return Err(locate(None, "no [[probe]] in the file".into()));
    }
    Ok(specs)
}

/// Joins a path to the target; absolute URLs pass through.
pub fn resolve_url(url: &str, target: Option<&str>) -> Result<String, UsageError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return reqwest::Url::parse(url)
            .map(|_| url.to_string())
            .map_err(|e| UsageError(format!("bad URL {url}: {e}")));
    }
    if !url.starts_with('/') {
        return Err(UsageError(format!(
            "{url:?} is neither an http(s) URL nor a path starting with /"
        )));
    }
    let target = target.ok_or_else(|| UsageError(format!("{url} is a path: give --target to resolve it against")))?;
    Ok(format!("{}{url}", target.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_parses_against_a_target_and_needs_one() {
        let specs = parse(SAMPLE, "probes.toml", Some("http://127.0.0.1:8000")).unwrap();
        assert!(specs.len() >= 3);
        let ProbeSpec::Http(ready) = &specs[1] else { panic!() };
        assert_eq!(ready.url, "http://127.0.0.1:8000/health/ready");
        let err = parse(SAMPLE, "probes.toml", None).unwrap_err();
        assert!(err.message.contains("--target"), "{err}");
    }

    #[test]
    fn mistakes_are_located() {
        let err = parse(
            "[[probe]]\nname = \"x\"\nurl = \"/a\"\nbody_regex = [\"(\"]\n",
            "p.toml",
            Some("http://h"),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("bad regular expression"), "{err}");
        let err = parse("[[probe]]\nname = \"x\"\n", "p.toml", None).unwrap_err();
        assert!(err.message.contains("exactly one of"), "{err}");
        let err = parse(
            "[[probe]]\nname = \"x\"\nurl = \"/a\"\nmax_latency = \"fast\"\n",
            "p.toml",
            None,
        )
        .unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
    }
}
