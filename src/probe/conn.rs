//! The connection-level probe engine: each phase timed where it happens (resolve, connect,
//! TLS handshake, processing = request written → first response byte, transfer = first byte
//! → end of body), as blackbox_exporter reports them; HTTP/1.1 by hand (httparse), redirects
//! followed hop by hop with the phases summed over hops, TLS through rustls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spec::{HttpSpec, ProbeSpec, TcpSpec};

/// Why a probe got no verdict on its answer, by the phase that failed; its message becomes
/// the result's `failure`.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// What to probe was not usable: a bad URL, scheme, redirect, TLS name or address.
    #[error("{0}")]
    Target(String),
    #[error("{0}")]
    Dns(String),
    /// The connection could not be made or the request not sent.
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Tls(String),
    /// No answer, or one cut off, too large or not HTTP.
    #[error("{0}")]
    Answer(String),
    /// An answer whose body cannot be delimited.
    #[error(transparent)]
    Framing(#[from] crate::http1::FramingError),
}

/// Runs one probe of either kind.
pub async fn run(spec: &ProbeSpec) -> ProbeResult {
    match spec {
        ProbeSpec::Http(spec) => http(spec).await,
        ProbeSpec::Tcp(spec) => tcp(spec).await,
    }
}

/// Seconds spent in each phase, summed over redirects.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Phases {
    pub resolve: f64,
    pub connect: f64,
    pub tls: f64,
    pub processing: f64,
    pub transfer: f64,
}

/// One probe's outcome, with what blackbox_exporter would report for it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProbeResult {
    pub name: String,
    pub target: String,
    /// http or tcp.
    pub kind: String,
    pub success: bool,
    /// Why it failed, in words.
    pub failure: Option<String>,
    pub duration_s: f64,
    pub phases: Phases,
    /// The final status code; 0 when no response came.
    pub status_code: u16,
    pub redirects: u32,
    /// The final hop was TLS.
    pub tls: bool,
    /// Earliest notAfter among the certificates the server presented, Unix seconds.
    pub cert_expiry_unix: Option<i64>,
    pub content_length: Option<i64>,
    pub body_length: usize,
    /// The body was longer than the 8 MiB the probe keeps; it was judged on that much.
    pub body_truncated: bool,
    pub http_version: Option<f64>,
    pub failed_due_to_regex: bool,
    /// The address connected to.
    pub ip: Option<String>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const MAX_REDIRECTS: u32 = 10;
const MAX_BODY: usize = 8 << 20;
const MAX_HEAD: usize = 1 << 20;

pub async fn http(spec: &HttpSpec) -> ProbeResult {
    let mut result = ProbeResult {
        name: spec.name.clone(),
        target: spec.url.clone(),
        kind: "http".into(),
        ..ProbeResult::default()
    };
    let started = Instant::now();
    let mut body = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    let outcome = tokio::time::timeout(spec.timeout, hops(spec, &mut result, &mut body, &mut headers)).await;
    result.duration_s = started.elapsed().as_secs_f64();
    let failure = match outcome {
        Err(_) => Some(format!("no complete answer within {:?}", spec.timeout)),
        Ok(Err(e)) => Some(e.to_string()),
        Ok(Ok(())) => judge(spec, &mut result, &body, &headers),
    };
    result.success = failure.is_none();
    result.failure = failure;
    result
}

/// The verdict on a complete answer: status, regular expressions, latency.
fn judge(spec: &HttpSpec, result: &mut ProbeResult, body: &[u8], headers: &[(String, String)]) -> Option<String> {
    let status_ok = if spec.expect_status.is_empty() {
        (200..300).contains(&result.status_code)
    } else {
        spec.expect_status.contains(&result.status_code)
    };
    if !status_ok {
        return Some(format!(
            "status {} (expected {})",
            result.status_code,
            if spec.expect_status.is_empty() {
                "2xx".to_string()
            } else {
                format!("{:?}", spec.expect_status)
            }
        ));
    }
    let text = String::from_utf8_lossy(body);
    let cut = if result.body_truncated {
        format!(" (the body was truncated at {MAX_BODY} bytes)")
    } else {
        String::new()
    };
    for re in &spec.body_regex {
        if !re.is_match(&text) {
            result.failed_due_to_regex = true;
            return Some(format!("body does not match /{re}/{cut}"));
        }
    }
    for re in &spec.body_not_regex {
        if re.is_match(&text) {
            result.failed_due_to_regex = true;
            return Some(format!("body matches /{re}/, which it must not{cut}"));
        }
    }
    for (name, re) in &spec.header_regex {
        let value = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        if !value.is_some_and(|v| re.is_match(v)) {
            result.failed_due_to_regex = true;
            return Some(format!("header {name} is {value:?}, which does not match /{re}/"));
        }
    }
    if let Some(max) = spec.max_latency
        && result.duration_s > max.as_secs_f64()
    {
        return Some(format!(
            "took {:.0} ms, more than the {:.0} ms allowed",
            result.duration_s * 1000.0,
            max.as_secs_f64() * 1000.0
        ));
    }
    None
}

async fn hops(
    spec: &HttpSpec,
    result: &mut ProbeResult,
    body: &mut Vec<u8>,
    headers: &mut Vec<(String, String)>,
) -> Result<(), ProbeError> {
    let mut url =
        reqwest::Url::parse(&spec.url).map_err(|e| ProbeError::Target(format!("bad URL {}: {e}", spec.url)))?;
    let origin = url.origin();
    loop {
        // As curl does: credentials go to the origin the user named, never to another one
        // a redirect points at.
        let sent: Vec<(String, String)> = spec
            .headers
            .iter()
            .filter(|(name, _)| url.origin() == origin || !is_credential(name))
            .cloned()
            .collect();
        let (status, location) = hop(spec, &sent, &url, result, body, headers).await?;
        result.status_code = status;
        let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
        match (redirect && spec.follow_redirects, location) {
            (true, Some(location)) => {
                if result.redirects >= MAX_REDIRECTS {
                    return Err(ProbeError::Answer(format!("more than {MAX_REDIRECTS} redirects")));
                }
                result.redirects += 1;
                url = url
                    .join(&location)
                    .map_err(|e| ProbeError::Answer(format!("bad redirect Location {location:?}: {e}")))?;
            }
            _ => return Ok(()),
        }
    }
}

fn is_credential(header: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|c| header.eq_ignore_ascii_case(c))
}

async fn resolve(host: &str, port: u16, result: &mut ProbeResult) -> Result<SocketAddr, ProbeError> {
    let started = Instant::now();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ProbeError::Dns(format!("cannot resolve {host}: {e}")))?
        .collect();
    result.phases.resolve += started.elapsed().as_secs_f64();
    // IPv4 first, as the stack's blackbox modules prefer it.
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ProbeError::Dns(format!("{host} resolves to no address")))?;
    result.ip = Some(addr.ip().to_string());
    Ok(addr)
}

async fn connect(addr: SocketAddr, result: &mut ProbeResult) -> Result<TcpStream, ProbeError> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError::Connect(format!("cannot connect to {addr}: {e}")))?;
    result.phases.connect += started.elapsed().as_secs_f64();
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One request/response; returns the status and the Location header.
async fn hop(
    spec: &HttpSpec,
    request_headers: &[(String, String)],
    url: &reqwest::Url,
    result: &mut ProbeResult,
    body: &mut Vec<u8>,
    headers: &mut Vec<(String, String)>,
) -> Result<(u16, Option<String>), ProbeError> {
    let (mut stream, host) = open(spec, url, result).await?;
    stream
        .write_all(request_head(spec, url, &host, request_headers).as_bytes())
        .await
        .map_err(|e| ProbeError::Connect(format!("cannot send the request: {e}")))?;
    let written = Instant::now();
    let head = read_head(&mut stream, &spec.method).await?;
    result.phases.processing += (head.first_byte - written).as_secs_f64();
    let header = |name: &str| {
        head.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    body.clear();
    let truncated = read_body(&mut stream, head.framing, head.rest, body).await?;
    result.phases.transfer += head.first_byte.elapsed().as_secs_f64();
    result.body_truncated = truncated;
    result.body_length = body.len();
    result.content_length = header("content-length").and_then(|v| v.parse::<i64>().ok());
    result.http_version = Some(if head.version == 0 { 1.0 } else { 1.1 });
    let location = header("location");
    *headers = head.headers;
    Ok((head.status, location))
}

/// The connection to `url`'s host: resolved, connected and, for https, through TLS (the
/// certificate's expiry noted); each phase timed into `result`. Returns it and the host.
async fn open(
    spec: &HttpSpec,
    url: &reqwest::Url,
    result: &mut ProbeResult,
) -> Result<(Box<dyn Io>, String), ProbeError> {
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(ProbeError::Target(format!(
                "unsupported scheme {other:?} (http, https; tcp:// for TCP probes)"
            )));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| ProbeError::Target(format!("{url} has no host")))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = resolve(host.trim_start_matches('[').trim_end_matches(']'), port, result).await?;
    let tcp = connect(addr, result).await?;
    result.tls = tls;
    if !tls {
        return Ok((Box::new(tcp), host));
    }
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(client_config(spec.insecure)?);
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| ProbeError::Target(format!("bad TLS server name {host}: {e}")))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::Tls(format!("TLS handshake with {host}:{port} failed: {e}")))?;
    result.phases.tls += started.elapsed().as_secs_f64();
    let (_, session) = stream.get_ref();
    if let Some(certs) = session.peer_certificates() {
        result.cert_expiry_unix = certs.iter().filter_map(|c| super::x509::not_after(c.as_ref())).min();
    }
    Ok((Box::new(stream), host))
}

/// The request line and headers of one hop (`Connection: close`: one request per connection).
fn request_head(spec: &HttpSpec, url: &reqwest::Url, host: &str, request_headers: &[(String, String)]) -> String {
    let mut path = url.path().to_string();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut request = format!(
        "{} {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: recordctl-probe/{}\r\nAccept: */*\r\nConnection: close\r\n",
        spec.method,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in request_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// A response's head, past any 1xx interim answers.
struct Head {
    status: u16,
    version: u8,
    headers: Vec<(String, String)>,
    framing: crate::http1::Framing,
    /// Bytes read past the head: the body's start.
    rest: Vec<u8>,
    first_byte: Instant,
}

/// Reads until a final response's head is complete; untrusted, bounded by [`MAX_HEAD`].
async fn read_head(stream: &mut Box<dyn Io>, method: &str) -> Result<Head, ProbeError> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| ProbeError::Answer(format!("no answer: {e}")))?;
    if n == 0 {
        return Err(ProbeError::Answer(
            "the server closed the connection without answering".into(),
        ));
    }
    let first_byte = Instant::now();
    buf.extend_from_slice(&chunk[..n]);
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut slots);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                if crate::http1::is_interim(status) {
                    buf.drain(..len);
                    continue;
                }
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).to_string()))
                    .collect();
                let framing =
                    crate::http1::framing(method, status, response.headers.iter().map(|h| (h.name, h.value)))?;
                let version = response.version.unwrap_or(1);
                buf.drain(..len);
                return Ok(Head {
                    status,
                    version,
                    headers,
                    framing,
                    rest: buf,
                    first_byte,
                });
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(ProbeError::Answer(format!(
                    "response head larger than {MAX_HEAD} bytes"
                )));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(ProbeError::Answer(format!("not an HTTP answer: {e}"))),
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeError::Answer(format!("answer cut off: {e}")))?;
        if n == 0 {
            return Err(ProbeError::Answer("answer cut off in the headers".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads the body as `framing` delimits it, starting with the bytes already read, keeping at
/// most [`MAX_BODY`] of it (in time proportional to its size); `true` when it was cut there.
async fn read_body(
    stream: &mut Box<dyn Io>,
    framing: crate::http1::Framing,
    mut pending: Vec<u8>,
    body: &mut Vec<u8>,
) -> Result<bool, ProbeError> {
    use crate::http1::Framing;
    let mut chunk = [0u8; 8192];
    let mut dechunker = crate::http1::Dechunker::default();
    let mut seen: u64 = 0;
    loop {
        let done = match framing {
            Framing::Empty => return Ok(false),
            Framing::Chunked => {
                let used = dechunker.feed(&pending, body, MAX_BODY)?;
                pending.drain(..used);
                dechunker.is_done()
            }
            Framing::Length(_) | Framing::Close => {
                let want = match framing {
                    Framing::Length(len) => usize::try_from(len.saturating_sub(seen)).unwrap_or(usize::MAX),
                    _ => usize::MAX,
                };
                let take = want.min(pending.len());
                let room = MAX_BODY.saturating_sub(body.len()).min(take);
                body.extend_from_slice(&pending[..room]);
                seen += take as u64;
                pending.clear();
                matches!(framing, Framing::Length(len) if seen >= len)
            }
        };
        if done {
            return Ok(seen > body.len() as u64 || dechunker.dropped > 0);
        }
        if body.len() >= MAX_BODY {
            // Enough to judge: what is past the limit is not read at all.
            return Ok(true);
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeError::Answer(format!("body cut off: {e}")))?;
        if n == 0 {
            return match framing {
                Framing::Close => Ok(false),
                _ => Err(ProbeError::Answer("body cut off before its end".into())),
            };
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn client_config(insecure: bool) -> Result<Arc<rustls::ClientConfig>, ProbeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `--insecure`: any certificate is accepted (its expiry is still reported), as
/// blackbox_exporter's `insecure_skip_verify`. Handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub async fn tcp(spec: &TcpSpec) -> ProbeResult {
    let mut result = ProbeResult {
        name: spec.name.clone(),
        target: format!("tcp://{}", spec.address),
        kind: "tcp".into(),
        ..ProbeResult::default()
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(spec.timeout, tcp_steps(spec, &mut result)).await;
    result.duration_s = started.elapsed().as_secs_f64();
    result.failure = match outcome {
        Err(_) => Some(format!("no complete answer within {:?}", spec.timeout)),
        Ok(Err(e)) => Some(e.to_string()),
        Ok(Ok(())) => None,
    };
    result.success = result.failure.is_none();
    result
}

async fn tcp_steps(spec: &TcpSpec, result: &mut ProbeResult) -> Result<(), ProbeError> {
    let (host, port) = spec
        .address
        .rsplit_once(':')
        .ok_or_else(|| ProbeError::Target(format!("{}: expected host:port", spec.address)))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ProbeError::Target(format!("{}: bad port", spec.address)))?;
    let addr = resolve(host.trim_start_matches('[').trim_end_matches(']'), port, result).await?;
    let mut stream = connect(addr, result).await?;
    if let Some(send) = &spec.send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| ProbeError::Connect(format!("cannot send: {e}")))?;
    }
    if let Some(expect) = &spec.expect {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| ProbeError::Answer(format!("read failed: {e}")))?;
            if n == 0 {
                result.failed_due_to_regex = true;
                return Err(ProbeError::Answer(format!(
                    "connection closed before /{expect}/ matched (got {:?})",
                    String::from_utf8_lossy(&seen)
                )));
            }
            seen.extend_from_slice(&chunk[..n]);
            if expect.is_match(&String::from_utf8_lossy(&seen)) {
                return Ok(());
            }
        }
    }
    Ok(())
}
