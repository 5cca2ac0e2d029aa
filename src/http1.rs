//! HTTP/1.1 message framing shared by the probe and the load engine's raw client: the
//! chunked transfer coding decoded incrementally (each byte looked at once, sizes checked),
//! and the framing rules of RFC 9112 §6.3 for a response head. Everything here reads bytes a
//! server sent: untrusted, so every answer is a value or an error, never a panic.

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// An answer whose body cannot be delimited: the peer broke RFC 9112.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("bad Content-Length {0:?}")]
    BadContentLength(String),
    #[error("two different Content-Length headers")]
    TwoContentLengths,
    #[error("protocol error: both Content-Length and Transfer-Encoding: chunked (RFC 9112 §6.3)")]
    LengthAndChunked,
    #[error("malformed chunk size {0:?}")]
    BadChunkSize(String),
    #[error("chunk data not followed by CRLF")]
    ChunkWithoutCrlf,
    #[error("a chunk line longer than {} bytes", MAX_LINE)]
    LongChunkLine,
}

/// The framing of a response with `status` to a request with `method`, from its headers
/// (name, value). A `Content-Length` beside `Transfer-Encoding: chunked`, or two different
/// lengths, is a protocol error: a message that could be read two ways is not read at all.
pub fn framing<'a>(
    method: &str,
    status: u16,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Framing, FramingError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| FramingError::BadContentLength(String::from_utf8_lossy(value).to_string()))?;
            if length.is_some_and(|l| l != n) {
                return Err(FramingError::TwoContentLengths);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = has_token(value, b"chunked");
        }
    }
    if method.eq_ignore_ascii_case("HEAD") || matches!(status, 100..=199 | 204 | 304) {
        return Ok(Framing::Empty);
    }
    match (length, chunked) {
        (Some(_), true) => Err(FramingError::LengthAndChunked),
        (_, true) => Ok(Framing::Chunked),
        (Some(n), false) => Ok(Framing::Length(n)),
        (None, false) => Ok(Framing::Close),
    }
}

/// An interim (1xx) response that a final one follows; 101 switches protocols and is final.
pub fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// The longest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// Decodes a chunked body as its bytes arrive. Feed it what came since the last call; it
/// says how much it used (the rest, a partial line, comes again with more bytes) and appends
/// the body to `out` up to a limit, counting what it had to leave out.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: State,
    /// Body bytes beyond the limit, decoded and dropped.
    pub dropped: u64,
}

impl Dechunker {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`; returns how many bytes it used.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, FramingError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Size => {
                    let Some(line) = line(rest)? else { return Ok(at) };
                    let text = std::str::from_utf8(&rest[..line])
                        .map_err(|_| FramingError::BadChunkSize(String::from_utf8_lossy(&rest[..line]).to_string()))?;
                    let hex = text.split(';').next().unwrap_or_default().trim();
                    if hex.is_empty() || hex.len() > 16 {
                        return Err(FramingError::BadChunkSize(text.to_string()));
                    }
                    let size =
                        u64::from_str_radix(hex, 16).map_err(|_| FramingError::BadChunkSize(text.to_string()))?;
                    at += line + 2;
                    self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    let room = limit.saturating_sub(out.len()).min(take);
                    out.extend_from_slice(&rest[..room]);
                    self.dropped += (take - room) as u64;
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(FramingError::ChunkWithoutCrlf);
                    }
                    at += 2;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let Some(line) = line(rest)? else { return Ok(at) };
                    at += line + 2;
                    if line == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }
}

/// The length of the CRLF-terminated line at the start of `input`, if it is all there.
fn line(input: &[u8]) -> Result<Option<usize>, FramingError> {
    match input.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some(end)),
        None if input.len() > MAX_LINE => Err(FramingError::LongChunkLine),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(raw: &[u8], piece: usize, limit: usize) -> Result<(Vec<u8>, bool, u64), FramingError> {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for part in raw.chunks(piece.max(1)) {
            pending.extend_from_slice(part);
            let used = d.feed(&pending, &mut out, limit)?;
            pending.drain(..used);
        }
        Ok((out, d.is_done(), d.dropped))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_pieces() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n";
        for piece in 1..raw.len() {
            let (body, done, dropped) = decode_in_pieces(raw, piece, 1 << 20).unwrap();
            assert_eq!(
                (body.as_slice(), done, dropped),
                (&b"hello world"[..], true, 0),
                "piece {piece}"
            );
        }
        let (body, done, _) = decode_in_pieces(b"5\r\nhel", 3, 100).unwrap();
        assert_eq!((body.as_slice(), done), (&b"hel"[..], false));
    }

    #[test]
    fn hostile_chunk_sizes_are_errors_not_panics() {
        // Regression: `size + 2` wrapped for ffffffffffffffff.
        let (body, done, _) = decode_in_pieces(b"ffffffffffffffff\r\nabc", 4, 100).unwrap();
        assert_eq!((body.as_slice(), done), (&b"abc"[..], false));
        for bad in [
            &b"1ffffffffffffffff\r\n"[..],
            b"zz\r\n",
            b"\r\n",
            b"5\r\nhelloXX",
            b"-1\r\n",
        ] {
            assert!(
                decode_in_pieces(bad, 64, 100).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            decode_in_pieces(&[b'a'; 5000], 5000, 100).is_err(),
            "an endless size line"
        );
    }

    #[test]
    fn a_body_over_the_limit_is_kept_up_to_it_and_the_rest_counted() {
        let (body, done, dropped) = decode_in_pieces(b"a\r\n0123456789\r\n0\r\n\r\n", 7, 4).unwrap();
        assert_eq!((body.as_slice(), done, dropped), (&b"0123"[..], true, 6));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = |pairs: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static [u8])> {
            pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
        };
        assert_eq!(
            framing("GET", 200, h(&[("Content-Length", "5")])),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing("GET", 200, h(&[("Transfer-Encoding", "gzip, chunked")])),
            Ok(Framing::Chunked)
        );
        assert!(
            framing(
                "GET",
                200,
                h(&[("Transfer-Encoding", "chunked"), ("Content-Length", "5")])
            )
            .unwrap_err()
            .to_string()
            .contains("RFC 9112")
        );
        assert!(framing("GET", 200, h(&[("Content-Length", "5"), ("Content-Length", "6")])).is_err());
        assert!(framing("GET", 200, h(&[("Content-Length", "-5")])).is_err());
        assert_eq!(framing("HEAD", 200, h(&[("Content-Length", "5")])), Ok(Framing::Empty));
        assert_eq!(framing("GET", 204, h(&[])), Ok(Framing::Empty));
        assert_eq!(framing("GET", 200, h(&[])), Ok(Framing::Close));
        assert!(is_interim(103) && is_interim(100) && !is_interim(101) && !is_interim(200));
    }
}
