//! A minimal HTTP/1.1 client connection for plain mode: one request at a time on a
//! keep-alive connection, the request written from a reused buffer and the response parsed
//! in place with httparse (Content-Length, chunked, or until close). No per-request
//! allocation, no channel between a sender and a connection task.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http1::{Dechunker, Framing, framing, has_token, is_interim};
use crate::traffic::stats::ErrorKind;

pub type Failure = (ErrorKind, String);

pub struct RawConn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

impl RawConn {
    pub async fn connect(authority: &str) -> Result<RawConn, Failure> {
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| (ErrorKind::for_io(&e), format!("connect {authority}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(RawConn {
            stream,
            read: BytesMut::with_capacity(16 * 1024),
            write: Vec::with_capacity(512),
        })
    }

    /// Sends `GET path` with the given extra header lines; returns the status and whether the
    /// connection can be reused.
    pub async fn get(
        &mut self,
        path: &str,
        host: &str,
        extra_headers: &[(&str, &[u8])],
    ) -> Result<(u16, bool), Failure> {
        write_get(&mut self.write, path, host, extra_headers);
        self.exchange().await
    }

    /// The buffer the next request is written into before [`RawConn::exchange`].
    pub fn request(&mut self) -> &mut Vec<u8> {
        &mut self.write
    }

    /// Sends the request in [`RawConn::request`] and reads its response: the status and
    /// whether the connection can be reused.
    pub async fn exchange(&mut self) -> Result<(u16, bool), Failure> {
        self.stream
            .write_all(&self.write)
            .await
            .map_err(|e| io_failure(&e, "write"))?;
        let mut reader = ResponseReader::default();
        loop {
            if let Some(done) = reader.advance(&mut self.read)? {
                return Ok(done);
            }
            if self.read.capacity() - self.read.len() < 4096 {
                self.read.reserve(16 * 1024);
            }
            let n = self
                .stream
                .read_buf(&mut self.read)
                .await
                .map_err(|e| io_failure(&e, "read"))?;
            if n == 0 {
                return reader.at_end();
            }
        }
    }
}

/// A whole response whose body was kept.
pub struct Answer {
    pub status: u16,
    /// The connection can carry the next request.
    pub keep_alive: bool,
    pub body: Vec<u8>,
}

/// A failed exchange, and whether the server sent nothing at all on the connection (a
/// kept-alive connection it had closed: an idempotent request can go again on a new one).
pub type ExchangeFailure = (Failure, bool);

impl RawConn {
    /// Sends the request in [`RawConn::request`] (a `method` request) and reads the whole
    /// response, keeping its body up to `limit` bytes.
    pub async fn exchange_keeping(&mut self, method: &str, limit: usize) -> Result<Answer, ExchangeFailure> {
        if let Err(e) = self.stream.write_all(&self.write).await {
            return Err((io_failure(&e, "write"), true));
        }
        let mut reader = ResponseReader::keeping(method, limit);
        let mut heard = false;
        loop {
            if let Some((status, keep_alive)) = reader.advance(&mut self.read).map_err(|f| (f, false))? {
                let body = reader.take_body();
                return Ok(Answer {
                    status,
                    keep_alive,
                    body,
                });
            }
            if self.read.capacity() - self.read.len() < 4096 {
                self.read.reserve(16 * 1024);
            }
            match self.stream.read_buf(&mut self.read).await {
                Ok(0) => {
                    return reader
                        .at_end()
                        .map(|(status, _)| Answer {
                            status,
                            keep_alive: false,
                            body: reader.take_body(),
                        })
                        .map_err(|f| (f, !heard));
                }
                Ok(_) => heard = true,
                Err(e) => return Err((io_failure(&e, "read"), !heard)),
            }
        }
    }

    /// Whether a kept-alive connection is still fit for a request: the server has neither
    /// closed it nor said anything unasked since its last answer.
    pub fn is_quiet(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Writes the request head of `GET path` into `buf` (cleared first).
pub fn write_get(buf: &mut Vec<u8>, path: &str, host: &str, extra_headers: &[(&str, &[u8])]) {
    buf.clear();
    buf.extend_from_slice(b"GET ");
    buf.extend_from_slice(path.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    buf.extend_from_slice(host.as_bytes());
    for (name, value) in extra_headers {
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value);
    }
    buf.extend_from_slice(b"\r\n\r\n");
}

/// Reads one response from bytes as they arrive, whatever does the reading: the final head
/// (1xx interim answers skipped), then past the body by its framing (Content-Length, chunked,
/// or until the connection closes). The default reads the answer to a GET and keeps none of
/// its body; [`ResponseReader::keeping`] keeps it, up to a limit.
#[derive(Default)]
pub struct ResponseReader {
    body: Option<Body>,
    /// The request was a HEAD: the answer has no body, whatever its headers say.
    head: bool,
    kept: Option<Kept>,
}

/// A body kept as it is read, and the most it may hold.
struct Kept {
    bytes: Vec<u8>,
    limit: usize,
}

struct Body {
    status: u16,
    keep_alive: bool,
    rest: Rest,
}

enum Rest {
    Length(u64),
    Chunked(Dechunker),
    UntilClose,
}

impl ResponseReader {
    /// A reader of the answer to `method` that keeps its body (dechunked), failing a body
    /// longer than `limit` bytes.
    pub fn keeping(method: &str, limit: usize) -> ResponseReader {
        ResponseReader {
            body: None,
            head: method.eq_ignore_ascii_case("HEAD"),
            kept: Some(Kept {
                bytes: Vec::new(),
                limit,
            }),
        }
    }

    /// The body kept so far (empty unless made by [`ResponseReader::keeping`]).
    pub fn take_body(&mut self) -> Vec<u8> {
        self.kept
            .as_mut()
            .map(|k| std::mem::take(&mut k.bytes))
            .unwrap_or_default()
    }

    /// Consumes what it can of `read`; once the response is whole, its status and whether
    /// the connection can be reused.
    pub fn advance(&mut self, read: &mut BytesMut) -> Result<Option<(u16, bool)>, Failure> {
        let body = match &mut self.body {
            Some(body) => body,
            None => {
                let method = if self.head { "HEAD" } else { "GET" };
                let Some((status, head_len, framing, keep_alive)) = read_head(read, method)? else {
                    return Ok(None);
                };
                read.advance(head_len);
                let rest = match framing {
                    Framing::Empty => return Ok(Some((status, keep_alive))),
                    Framing::Length(n) => Rest::Length(n),
                    Framing::Chunked => Rest::Chunked(Dechunker::default()),
                    Framing::Close => Rest::UntilClose,
                };
                self.body.insert(Body {
                    status,
                    keep_alive,
                    rest,
                })
            }
        };
        let mut scratch = Vec::new();
        let (out, limit) = match &mut self.kept {
            Some(kept) => (&mut kept.bytes, Some(kept.limit)),
            None => (&mut scratch, None),
        };
        let mut over = false;
        let mut keep = |out: &mut Vec<u8>, bytes: &[u8]| {
            if let Some(limit) = limit {
                if bytes.len() > limit.saturating_sub(out.len()) {
                    over = true;
                } else {
                    out.extend_from_slice(bytes);
                }
            }
        };
        let done = match &mut body.rest {
            Rest::Length(n) => {
                let take = usize::try_from(*n).unwrap_or(usize::MAX).min(read.len());
                keep(out, &read[..take]);
                read.advance(take);
                *n -= take as u64;
                *n == 0
            }
            Rest::Chunked(dechunker) => {
                let used = dechunker
                    .feed(read, out, limit.unwrap_or(0))
                    .map_err(|e| (ErrorKind::BadResponse, e.to_string()))?;
                read.advance(used);
                over |= limit.is_some() && dechunker.dropped > 0;
                dechunker.is_done()
            }
            Rest::UntilClose => {
                keep(out, read);
                read.clear();
                false
            }
        };
        if over {
            return Err((
                ErrorKind::BadResponse,
                format!("response body longer than {} bytes", limit.unwrap_or(0)),
            ));
        }
        Ok(done.then_some((body.status, body.keep_alive)))
    }

    /// The connection ended: whole if the body ran until the close, otherwise a reset.
    pub fn at_end(&self) -> Result<(u16, bool), Failure> {
        match &self.body {
            None => Err((ErrorKind::Reset, "connection closed before a response".into())),
            Some(Body {
                status,
                rest: Rest::UntilClose,
                ..
            }) => Ok((*status, false)),
            Some(Body {
                rest: Rest::Length(_), ..
            }) => Err((ErrorKind::Reset, "connection closed mid-body".into())),
            Some(Body {
                rest: Rest::Chunked(_), ..
            }) => Err((ErrorKind::Reset, "connection closed mid-chunk".into())),
        }
    }
}

/// The final response's status, head length, framing and whether the connection stays open,
/// once the head is whole; 1xx interim answers before it are consumed.
fn read_head(read: &mut BytesMut, method: &str) -> Result<Option<(u16, usize, Framing, bool)>, Failure> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(read) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                if is_interim(status) {
                    read.advance(len);
                    continue;
                }
                let framing = framing(method, status, response.headers.iter().map(|h| (h.name, h.value)))
                    .map_err(|e| (ErrorKind::BadResponse, e.to_string()))?;
                let mut keep_alive = response.version == Some(1);
                for h in response.headers.iter() {
                    if h.name.eq_ignore_ascii_case("connection") {
                        keep_alive = !has_token(h.value, b"close") && (keep_alive || has_token(h.value, b"keep-alive"));
                    }
                }
                return Ok(Some((
                    status,
                    len,
                    framing,
                    keep_alive && !matches!(framing, Framing::Close),
                )));
            }
            Ok(httparse::Status::Partial) if read.len() > 1 << 20 => {
                return Err((ErrorKind::BadResponse, "response head larger than 1 MiB".into()));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err((ErrorKind::BadResponse, format!("malformed response: {e}"))),
        }
    }
}

fn io_failure(e: &std::io::Error, what: &str) -> Failure {
    (ErrorKind::for_io(e), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Serves each connection the canned responses, one per request head received.
    async fn server(responses: Vec<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            for response in responses {
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        break;
                    }
                    let mut chunk = [0u8; 1024];
                    let n = socket.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                // Split writes exercise partial reads.
                let (a, b) = response.split_at(response.len() / 2);
                socket.write_all(a).await.unwrap();
                socket.flush().await.unwrap();
                socket.write_all(b).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn length_chunked_and_close_framed_responses_are_read_whole() {
        let addr = server(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbye",
        ])
        .await;
        let mut conn = RawConn::connect(&addr).await.unwrap();
        let id: &[u8] = b"run-1";
        assert_eq!(
            conn.get("/a", &addr, &[("x-correlation-id", id)]).await.unwrap(),
            (200, true)
        );
        assert_eq!(conn.get("/b", &addr, &[]).await.unwrap(), (404, true));
        assert_eq!(conn.get("/c", &addr, &[]).await.unwrap(), (204, true));
        assert_eq!(conn.get("/d", &addr, &[]).await.unwrap(), (500, false));
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_bad_framing_is_a_bad_response() {
        let addr = server(vec![
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ])
        .await;
        let mut conn = RawConn::connect(&addr).await.unwrap();
        assert_eq!(conn.get("/a", &addr, &[]).await.unwrap(), (200, true));
        let err = conn.get("/b", &addr, &[]).await.unwrap_err();
        assert!(
            matches!(err.0, ErrorKind::BadResponse) && err.1.contains("RFC 9112"),
            "{err:?}"
        );
        // Regression: a chunk size of 2^64 - 1 wrapped `size + 2`.
        let addr = server(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
        ])
        .await;
        let mut conn = RawConn::connect(&addr).await.unwrap();
        let err = conn.get("/c", &addr, &[]).await.unwrap_err();
        assert!(matches!(err.0, ErrorKind::Reset), "{err:?}");
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_a_reset() {
        let addr = server(vec![]).await;
        let mut conn = RawConn::connect(&addr).await.unwrap();
        let err = conn.get("/", &addr, &[]).await.unwrap_err();
        assert!(matches!(err.0, ErrorKind::Reset), "{err:?}");
    }
}
