//! The three pillars of one subject as one timeline: client rows (a journey's steps), the
//! server's spans as a tree, and the log lines under the span they were written in.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::pillars::Telemetry;
use recordstore::telemetry::CapturedSpan;

/// A row the client saw (a journey step): the span it sent, when, and its text.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub span_id: String,
    pub name: String,
    pub at_unix_nanos: u128,
    pub text: String,
}

/// The subject's spans in start order, each span's depth (client rows 0, a span one below
/// its parent, a span whose parent is unknown 1) and each id's display name.
pub struct SpanTree<'a> {
    pub spans: Vec<&'a CapturedSpan>,
    pub depth_of: HashMap<String, usize>,
    pub name_of: HashMap<String, String>,
}

pub fn span_tree<'a>(client: &[ClientRow], t: &'a Telemetry) -> SpanTree<'a> {
    let mut depth_of: HashMap<String, usize> = client.iter().map(|c| (c.span_id.clone(), 0)).collect();
    let mut name_of: HashMap<String, String> = client
        .iter()
        .map(|c| (c.span_id.clone(), format!("client {}", c.name)))
        .collect();
    let mut spans: Vec<_> = t.spans.iter().collect();
    spans.sort_by_key(|s| s.start_unix_nanos);
    // Parents start before their children, so one pass in start order finds every depth.
    for s in &spans {
        let depth = s
            .parent_span_id
            .as_ref()
            .and_then(|p| depth_of.get(p))
            .map(|d| d + 1)
            .unwrap_or(1);
        depth_of.insert(s.span_id.clone(), depth);
        name_of.insert(s.span_id.clone(), s.name.clone());
    }
    SpanTree {
        spans,
        depth_of,
        name_of,
    }
}

/// Client rows, server spans (as a tree) and log lines, interleaved in time order.
pub fn timeline(client: &[ClientRow], t: &Telemetry) -> String {
    struct Entry {
        at: u128,
        depth: usize,
        /// The span this row is (spans only), and the span it hangs off.
        id: Option<String>,
        parent: Option<String>,
        text: String,
    }
    let SpanTree {
        spans,
        depth_of,
        name_of,
    } = span_tree(client, t);
    let mut entries: Vec<Entry> = client
        .iter()
        .map(|c| Entry {
            at: c.at_unix_nanos,
            depth: 0,
            id: Some(c.span_id.clone()),
            parent: None,
            text: c.text.clone(),
        })
        .collect();
    for s in &spans {
        let status = if s.status == "error" { " ERROR" } else { "" };
        entries.push(Entry {
            at: s.start_unix_nanos,
            depth: depth_of[&s.span_id],
            id: Some(s.span_id.clone()),
            parent: s.parent_span_id.clone(),
            text: format!(
                "{:<18} {:<24} {:.2} ms{status}",
                s.service,
                s.name,
                s.duration().as_secs_f64() * 1000.0
            ),
        });
    }
    for l in &t.logs {
        let at = l
            .get("timestamp")
            .and_then(|v| v.as_str())
            .and_then(crate::units::parse_rfc3339_nanos)
            .unwrap_or(0);
        let span = l.get("span_id").and_then(|v| v.as_str()).map(str::to_string);
        let depth = span
            .as_ref()
            .and_then(|id| depth_of.get(id))
            .map(|d| d + 1)
            .unwrap_or(1);
        entries.push(Entry {
            at,
            depth,
            id: None,
            parent: span,
            text: format!(
                "log {:<5} {:<18} {}",
                l.get("level").and_then(|v| v.as_str()).unwrap_or(""),
                l.get("service").and_then(|v| v.as_str()).unwrap_or(""),
                l.get("message").and_then(|v| v.as_str()).unwrap_or("")
            ),
        });
    }
    entries.sort_by_key(|e| e.at);
    let first = entries.first().map(|e| e.at).unwrap_or(0);
    let mut out = String::from("\ntimeline (client steps, spans, log lines):\n");
    // A span whose parent was last shown before the latest client row (the worker's span
    // after the client's polls) would read as that row's child: name its parent, once.
    let mut since_client: HashSet<String> = HashSet::new();
    for e in entries {
        if e.depth == 0 {
            since_client.clear();
        }
        let parent_note = match (&e.parent, e.id.is_some()) {
            (Some(parent), true) if !since_client.contains(parent) => {
                since_client.insert(parent.clone());
                name_of
                    .get(parent)
                    .map(|name| format!("  ← child of {name}"))
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        if let Some(id) = &e.id {
            since_client.insert(id.clone());
        }
        let _ = writeln!(
            out,
            "{:>+9.1} ms {}{}{parent_note}",
            (e.at.saturating_sub(first)) as f64 / 1e6,
            "  ".repeat(e.depth),
            e.text
        );
    }
    out.push('\n');
    out
}
