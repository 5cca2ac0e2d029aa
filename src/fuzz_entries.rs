//! The entry points of the fuzz targets (`fuzz/`): each takes arbitrary bytes and runs one
//! parser of data we did not write, exactly as the tool runs it. They live here so that the
//! fuzz targets stay one line each and the test suite can replay the fuzz corpus (and every
//! crash ever found) on the stable toolchain, without building the fuzzer.

use crate::http1::{Dechunker, framing, is_interim};

/// An HTTP/1.1 response as the probe and the load engines read it: heads (1xx skipped),
/// framing, and a body fed in pieces of every size the first byte chooses.
pub fn http_response(data: &[u8]) {
    let Some((&piece, mut rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    // The load engines' reader, fed as a socket would: piece by piece until whole or failed,
    // then the end of the stream; as plain mode reads (the body dropped) and as the scenario
    // engine's client does (the body kept, up to a limit the second byte chooses; a HEAD when
    // it is odd).
    use crate::traffic::raw_http::ResponseReader;
    let limit = rest.first().map_or(0, |&b| usize::from(b) * 4);
    let method = if limit % 8 == 4 { "HEAD" } else { "GET" };
    for mut reader in [ResponseReader::default(), ResponseReader::keeping(method, limit)] {
        let mut read = bytes::BytesMut::new();
        for part in rest.chunks(piece) {
            read.extend_from_slice(part);
            match reader.advance(&mut read) {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => break,
            }
        }
        let _ = reader.at_end();
        assert!(reader.take_body().len() <= limit, "a kept body stays within its limit");
    }
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = response.parse(rest) else {
            return;
        };
        let status = response.code.unwrap_or(0);
        if is_interim(status) {
            rest = &rest[len..];
            continue;
        }
        let Ok(framing) = framing("GET", status, response.headers.iter().map(|h| (h.name, h.value))) else {
            return;
        };
        if framing == crate::http1::Framing::Chunked {
            let (mut dechunker, mut body, mut pending) = (Dechunker::default(), Vec::new(), Vec::new());
            for part in rest[len..].chunks(piece) {
                pending.extend_from_slice(part);
                match dechunker.feed(&pending, &mut body, 1 << 16) {
                    Ok(used) => {
                        assert!(used <= pending.len());
                        pending.drain(..used);
                    }
                    Err(_) => return,
                }
            }
            assert!(body.len() <= 1 << 16);
        }
        return;
    }
}

/// A scenario, a drill and a probe file, each parsed from the same text.
pub fn toml_files(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::traffic::scenario::parse(text, "fuzz.toml");
    let _ = crate::drill::file::parse(text, "fuzz.toml");
    let _ = crate::probe::spec::parse(text, "fuzz.toml", Some("http://127.0.0.1:1"));
}

/// Durations, rates, thresholds and think times, one per line.
pub fn units(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        let _ = crate::units::parse_duration(line);
        let _ = crate::units::parse_rate(line);
        let _ = crate::traffic::threshold::Threshold::parse(line);
        let _ = crate::traffic::scenario::ThinkTime::parse(line);
    }
}

/// A certificate's notAfter from DER.
pub fn certificate(data: &[u8]) {
    let _ = crate::probe::x509::not_after(data);
}

/// The answers of Jaeger, Loki and Prometheus, the log timestamps and lines the journey joins
/// them with, and the netlink messages the drill's packet delayer reads. The first byte picks
/// the decoder.
pub fn backend_answers(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            // The v1 JSON API's envelope and API v3's OTLP JSON.
            let v1 = crate::backends::jaeger::decode_traces(body).unwrap_or_default();
            let v3 = crate::backends::jaeger::decode_v3_traces(body).unwrap_or_default();
            for s in v1.iter().chain(&v3) {
                let _ = crate::backends::jaeger::short_trace_id(&s.trace_id);
                let _ = s.start_us.saturating_add(s.duration_us);
            }
        }
        1 => {
            if let Ok(lines) = crate::backends::loki::decode_query_range(body) {
                let fields: Vec<_> = lines.into_iter().filter_map(|l| l.fields).collect();
                for f in &fields {
                    if let Some(ts) = crate::correlate::pillars::field(f, "timestamp") {
                        let _ = crate::units::parse_rfc3339_nanos(ts);
                    }
                }
            }
        }
        2 => {
            if let Ok(doc) = serde_json::from_slice(body) {
                let _ = crate::backends::prometheus::decode_exemplars(&doc);
            }
        }
        3 => {
            if let Ok(ts) = std::str::from_utf8(body) {
                let _ = crate::units::parse_rfc3339_nanos(ts);
            }
        }
        _ => {
            // What the kernel sends the drill's packet delayer.
            let _ = crate::drill::netqueue::parse(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every input in `fuzz/corpus/TARGET` and `fuzz/regressions/TARGET` (each crash the
    /// fuzzers ever found) runs through its target without a panic.
    #[test]
    fn the_fuzz_corpus_and_every_crash_found_replay_without_a_panic() {
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 5] = [
            ("http_response", super::http_response),
            ("toml_files", super::toml_files),
            ("units", super::units),
            ("certificate", super::certificate),
            ("backend_answers", super::backend_answers),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        for (name, target) in targets {
            let mut replayed = 0;
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let data = std::fs::read(entry.path()).unwrap();
                    target(&data);
                    replayed += 1;
                }
            }
            assert!(replayed > 0, "no corpus for fuzz target {name}");
        }
    }
}
