//! The scenario executor's HTTP/1.1 client: plain `http://` targets, kept-alive
//! connections of our own (`raw_http`) in a few pools, one task per request and no
//! connection task beside it. A request is written from a reused buffer and its response
//! read in place, its body kept (up to [`BODY_LIMIT`]) for checks and extraction.

use std::sync::Mutex;
use std::time::Duration;

use crate::traffic::raw_http::{Answer, RawConn};
use crate::traffic::stats::ErrorKind;

/// What went wrong with a request.
pub type Failure = (ErrorKind, String);

/// The longest response body kept: a larger one is a bad response, not memory without end.
pub const BODY_LIMIT: usize = 64 << 20;

/// Where the requests go: `http://host[:port][/prefix]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`, for connecting.
    pub authority: String,
    /// The `Host` header: the authority as the URL wrote it.
    pub host_header: String,
    /// The base URL's path without its trailing `/` (often empty); each request's path
    /// follows it.
    pub prefix: String,
    /// The base URL, for messages.
    pub base: String,
}

impl Target {
    pub fn parse(base: &str) -> Result<Target, String> {
        let uri: hyper::Uri = base.parse().map_err(|e| format!("{base}: not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "{base}: the load engine speaks plain http://, not {other}:// (put a TLS-terminating proxy in front, or target the service's http port)"
                ));
            }
            None => return Err(format!("{base}: no scheme; write it as http://{base}")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{base}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        if uri.query().is_some() {
            return Err(format!(
                "{base}: a base URL takes no query; put it in the request's path"
            ));
        }
        Ok(Target {
            authority: format!("{host}:{port}"),
            host_header: uri.authority().map_or_else(|| host.to_string(), |a| a.to_string()),
            prefix: uri.path().trim_end_matches('/').to_string(),
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// The full URL of `path`, for messages.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One request: its method, path (after the target's prefix), headers and body.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// A JSON body, sent with `Content-Type: application/json`.
    pub json: Option<&'a [u8]>,
}

/// Kept-alive connections to one target, in `lanes` pools (each behind its own lock, so
/// requests on different threads seldom meet on one), each keeping at most `idle_per_lane`;
/// after them, any spare pools, each keeping at most `idle_per_spare`.
pub struct HttpClient {
    target: Target,
    lanes: Vec<Mutex<Vec<RawConn>>>,
    idle_per_lane: usize,
    /// The first spare pool's index (`lanes.len()` without any).
    spares_from: usize,
    idle_per_spare: usize,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(target: Target, lanes: usize, idle_per_lane: usize, timeout: Duration) -> HttpClient {
        HttpClient {
            target,
            lanes: (0..lanes.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            idle_per_lane: idle_per_lane.max(1),
            spares_from: lanes.max(1),
            idle_per_spare: idle_per_lane.max(1),
            timeout,
        }
    }

    /// Adds `spares` pools after the others, each keeping at most `idle` connections: a
    /// sender that takes bursts of work on a pool of its own keeps enough for its bursts.
    pub fn with_spare_lanes(mut self, spares: usize, idle: usize) -> HttpClient {
        self.spares_from = self.lanes.len();
        self.lanes.extend((0..spares).map(|_| Mutex::new(Vec::new())));
        self.idle_per_spare = idle.max(1);
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many pools the connections are kept in, spares with them.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Closes the kept-alive connections of `lane`'s pool: a runtime that is about to end
    /// drops the connections it registered, so no later request meets one it cannot drive.
    pub fn forget_idle(&self, lane: usize) {
        self.lanes[lane % self.lanes.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Sends `request` on a kept-alive connection of `lane`'s pool (or a new one) and reads
    /// its whole answer, all within the timeout. An idempotent request whose kept-alive
    /// connection turns out closed (nothing came back) goes once more on a new connection.
    pub async fn send(&self, lane: usize, request: &Request<'_>) -> Result<Answer, Failure> {
        check_request(request)?;
        let exchange = async {
            let reused = self.idle(lane);
            let retry = reused.is_some() && is_idempotent(request.method);
            let conn = match reused {
                Some(conn) => conn,
                None => RawConn::connect(&self.target.authority).await?,
            };
            match self.exchange(lane, conn, request).await {
                Err((_, true)) if retry => {
                    let conn = RawConn::connect(&self.target.authority).await?;
                    self.exchange(lane, conn, request).await.map_err(|(f, _)| f)
                }
                other => other.map_err(|(f, _)| f),
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err((ErrorKind::Timeout, format!("no whole answer within {:?}", self.timeout))),
        }
    }

    async fn exchange(&self, lane: usize, mut conn: RawConn, request: &Request<'_>) -> Result<Answer, (Failure, bool)> {
        write_request(conn.request(), &self.target, request);
        let answer = conn.exchange_keeping(request.method, BODY_LIMIT).await?;
        if answer.keep_alive {
            self.put_back(lane, conn);
        }
        Ok(answer)
    }

    /// A kept-alive connection of the lane's pool that the server has not closed meanwhile.
    fn idle(&self, lane: usize) -> Option<RawConn> {
        let mut pool = self.lanes[lane % self.lanes.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some(mut conn) = pool.pop() {
            if conn.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, lane: usize, conn: RawConn) {
        let mut pool = self.lanes[lane % self.lanes.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let keep = match lane % self.lanes.len() >= self.spares_from {
            true => self.idle_per_spare,
            false => self.idle_per_lane,
        };
        if pool.len() < keep {
            pool.push(conn);
        }
    }
}

fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS")
}

/// A header name is a token and no value breaks its line: what the scenario's templates
/// rendered is checked before it is written.
fn check_request(request: &Request<'_>) -> Result<(), Failure> {
    let bad = |what: String| Err((ErrorKind::Other, what));
    if request.method.is_empty() || !request.method.bytes().all(is_token) {
        return bad(format!("{:?} is not an HTTP method", request.method));
    }
    for (name, value) in request.headers {
        if !is_header_name(name) {
            return bad(format!("{name:?} is not a header name"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return bad(format!(
                "the value of header {name} holds a line break or NUL: {value:?}"
            ));
        }
    }
    Ok(())
}

/// A header name HTTP allows: a non-empty token.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Writes `request` for `target` into `buf` (cleared first). The path's bytes that may not
/// stand in a request line (spaces, controls, non-ASCII, quotes, braces…) are
/// percent-encoded, as a URL parser would.
pub fn write_request(buf: &mut Vec<u8>, target: &Target, request: &Request<'_>) {
    buf.clear();
    buf.extend_from_slice(request.method.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(target.prefix.as_bytes());
    // A path is written after a `/`; an empty one is the prefix itself, or `/`.
    let bare_prefix = request.path.is_empty() && !target.prefix.is_empty();
    if !request.path.starts_with('/') && !bare_prefix {
        buf.push(b'/');
    }
    for &b in request.path.as_bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            buf.push(b);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            buf.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    // The scenario's own Host, Accept and Content-Type replace ours; the body's framing is
    // always ours (a Content-Length or Transfer-Encoding it set would contradict it).
    let has = |header: &str| request.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(header));
    buf.extend_from_slice(b" HTTP/1.1");
    if !has("host") {
        buf.extend_from_slice(b"\r\nHost: ");
        buf.extend_from_slice(target.host_header.as_bytes());
    }
    if !has("accept") {
        buf.extend_from_slice(b"\r\nAccept: */*");
    }
    for (name, value) in request.headers {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
    }
    match request.json {
        Some(body) => {
            if !has("content-type") {
                buf.extend_from_slice(b"\r\nContent-Type: application/json");
            }
            buf.extend_from_slice(b"\r\nContent-Length: ");
            buf.extend_from_slice(body.len().to_string().as_bytes());
            buf.extend_from_slice(b"\r\n\r\n");
            buf.extend_from_slice(body);
        }
        None if matches!(request.method, "POST" | "PUT" | "PATCH") => {
            buf.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        }
        None => buf.extend_from_slice(b"\r\n\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one request (head and Content-Length body) from `socket`; `None` at its end.
    async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if buf.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                    buf.drain(..end + 4 + length);
                    return Some(head + &body);
                }
            }
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A server that answers each connection's requests with `answers` in turn (then closes
    /// it) and sends every request it read, whole, to the returned channel.
    async fn server(answers: Vec<&'static [u8]>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (seen, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (answers, seen) = (answers.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for answer in answers {
                        let Some(request) = read_request(&mut socket, &mut buf).await else {
                            return;
                        };
                        let _ = seen.send(request);
                        // Split writes: the reader sees partial answers.
                        let (a, b) = answer.split_at(answer.len() / 2);
                        socket.write_all(a).await.unwrap();
                        socket.flush().await.unwrap();
                        socket.write_all(b).await.unwrap();
                    }
                });
            }
        });
        (addr, rx)
    }

    fn client(addr: &str, timeout: Duration) -> HttpClient {
        HttpClient::new(Target::parse(&format!("http://{addr}/api/")).unwrap(), 2, 4, timeout)
    }

    fn get(path: &str) -> Request<'_> {
        Request {
            method: "GET",
            path,
            headers: &[],
            json: None,
        }
    }

    #[test]
    fn targets_are_plain_http_with_a_host_and_perhaps_a_prefix() {
        let t = Target::parse("http://localhost:8080/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host_header.as_str(), t.prefix.as_str()),
            ("localhost:8080", "localhost:8080", "")
        );
        let t = Target::parse("http://127.0.0.1/api/v1/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host_header.as_str(), t.prefix.as_str()),
            ("127.0.0.1:80", "127.0.0.1", "/api/v1")
        );
        assert_eq!(t.url("/orders/1"), "http://127.0.0.1/api/v1/orders/1");
        for (bad, says) in [
            ("https://example.test", "plain http://"),
            ("127.0.0.1:8080", "no scheme"),
            ("http://", "not a URL"),
            ("http://h/?q=1", "no query"),
            ("", "not a URL"),
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn requests_are_written_with_their_headers_body_and_an_encoded_path() {
        let target = Target::parse("http://h:1/api").unwrap();
        let mut buf = Vec::new();
        let headers = [("x-correlation-id", "run-1"), ("X-Extra", "a b")];
        write_request(
            &mut buf,
            &target,
            &Request {
                method: "POST",
                path: "/search?q=blue note é",
                headers: &headers,
                json: Some(br#"{"a":1}"#),
            },
        );
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "POST /api/search?q=blue%20note%20%C3%A9 HTTP/1.1\r\nHost: h:1\r\nAccept: */*\r\nx-correlation-id: run-1\r\nX-Extra: a b\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
        );
        write_request(
            &mut buf,
            &target,
            &Request {
                method: "POST",
                path: "x",
                headers: &[],
                json: None,
            },
        );
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "POST /api/x HTTP/1.1\r\nHost: h:1\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n"
        );
        // The scenario's own Host, Accept and Content-Type stand alone; its framing headers
        // give way to the body's own.
        let own = [
            ("host", "other:2"),
            ("Accept", "application/json"),
            ("content-type", "application/merge-patch+json"),
            ("Content-Length", "999"),
            ("transfer-encoding", "chunked"),
        ];
        write_request(
            &mut buf,
            &target,
            &Request {
                method: "PATCH",
                path: "/o/1",
                headers: &own,
                json: Some(b"{}"),
            },
        );
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "PATCH /api/o/1 HTTP/1.1\r\nhost: other:2\r\nAccept: application/json\r\ncontent-type: application/merge-patch+json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let root = Target::parse("http://h:1").unwrap();
        write_request(&mut buf, &root, &get(""));
        assert!(buf.starts_with(b"GET / HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn bad_header_names_and_values_are_refused_before_anything_is_sent() {
        let c = client("127.0.0.1:9", Duration::from_secs(5));
        for headers in [[("x-a", "1\r\nx-injected: 1")], [("bad name", "1")], [("", "1")]] {
            let request = Request {
                method: "GET",
                path: "/",
                headers: &headers,
                json: None,
            };
            let err = c.send(0, &request).await.err().unwrap();
            assert_eq!(err.0, ErrorKind::Other, "{err:?}");
        }
    }

    #[tokio::test]
    async fn bodies_are_kept_whatever_their_framing_on_one_kept_alive_connection() {
        let (addr, mut seen) = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\": 42}\n",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nuntil close",
        ])
        .await;
        let c = client(&addr, Duration::from_secs(10));
        let a = c.send(0, &get("/one")).await.unwrap();
        assert_eq!(
            (a.status, a.keep_alive, a.body.as_slice()),
            (200, true, &b"{\"id\": 42}\n"[..])
        );
        let b = c
            .send(
                0,
                &Request {
                    method: "POST",
                    path: "/two",
                    headers: &[],
                    json: Some(b"{}"),
                },
            )
            .await
            .unwrap();
        assert_eq!((b.status, b.body.as_slice()), (201, &b"abcdefg"[..]));
        let c3 = c.send(0, &get("/three")).await.unwrap();
        assert_eq!((c3.status, c3.body.len()), (204, 0));
        let head = c
            .send(
                0,
                &Request {
                    method: "HEAD",
                    path: "/four",
                    headers: &[],
                    json: None,
                },
            )
            .await
            .unwrap();
        assert_eq!((head.status, head.body.len()), (200, 0), "a HEAD answer has no body");
        let e = c.send(0, &get("/five")).await.unwrap();
        assert_eq!(
            (e.status, e.keep_alive, e.body.as_slice()),
            (503, false, &b"until close"[..])
        );
        let mut paths = Vec::new();
        while let Ok(request) = seen.try_recv() {
            paths.push(request.lines().next().unwrap().to_string());
        }
        assert_eq!(
            paths,
            [
                "GET /api/one HTTP/1.1",
                "POST /api/two HTTP/1.1",
                "GET /api/three HTTP/1.1",
                "HEAD /api/four HTTP/1.1",
                "GET /api/five HTTP/1.1"
            ],
            "all five on one connection, in order"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_bad_response() {
        let (addr, _seen) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"]).await;
        let mut conn = RawConn::connect(&addr).await.unwrap();
        write_request(
            conn.request(),
            &Target::parse(&format!("http://{addr}")).unwrap(),
            &get("/"),
        );
        let ((kind, message), _) = conn.exchange_keeping("GET", 4).await.err().unwrap();
        assert_eq!(kind, ErrorKind::BadResponse);
        assert!(message.contains("longer than 4 bytes"), "{message}");
    }

    /// The server closes each connection after one answer without saying so: the next GET
    /// finds its kept-alive connection closed and goes again on a new one; a POST is not sent
    /// twice, and says what happened.
    #[tokio::test]
    async fn a_kept_alive_connection_the_server_closed_is_not_trusted_twice() {
        let (addr, mut seen) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]).await;
        let c = client(&addr, Duration::from_secs(10));
        for i in 0..5 {
            let path = format!("/get/{i}");
            assert_eq!(c.send(0, &get(&path)).await.unwrap().status, 200, "GET {i}");
        }
        let mut posts_ok = 0;
        let mut posts_failed = 0;
        for _ in 0..5 {
            match c
                .send(
                    0,
                    &Request {
                        method: "POST",
                        path: "/post",
                        headers: &[],
                        json: Some(b"{}"),
                    },
                )
                .await
            {
                Ok(answer) => {
                    assert_eq!(answer.status, 200);
                    posts_ok += 1;
                }
                Err((kind, message)) => {
                    assert_eq!(kind, ErrorKind::Reset, "{message}");
                    posts_failed += 1;
                }
            }
        }
        let mut posts_seen = 0;
        while let Ok(request) = seen.try_recv() {
            posts_seen += usize::from(request.starts_with("POST"));
        }
        assert_eq!(
            posts_seen, posts_ok,
            "each POST reached the server at most once, and only those answered"
        );
        assert_eq!(posts_ok + posts_failed, 5);
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_and_a_closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let c = client(&addr, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = c.send(0, &get("/")).await.err().unwrap();
        assert_eq!(err.0, ErrorKind::Timeout, "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(listener);
        let err = c.send(0, &get("/")).await.err().unwrap();
        assert_eq!(err.0, ErrorKind::Refused, "{err:?}");
    }
}
