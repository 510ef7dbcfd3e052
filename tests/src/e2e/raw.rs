//! Raw bytes on a plaintext TCP connection, the way go-ftw sends CRS's test requests:
//! whatever the test wrote, malformed or not, then one HTTP/1 response read by its own
//! framing (the connection may stay open, or hold a second, pipelined request).

use super::client::{parse_response, HttpResponse};
use anyhow::Context as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What one raw exchange came to.
#[derive(Debug)]
pub struct RawExchange {
    /// The client's end of the connection, as Envoy's access log names the peer.
    pub local: SocketAddr,
    /// The first final response (interim 1xx responses are skipped), or why there was none.
    pub response: Result<HttpResponse, String>,
    /// Every byte read from the connection.
    pub received: Vec<u8>,
}

/// Connects to `addr`, writes `raw`, and reads one response, waiting at most `timeout`
/// for it (a request Envoy waits on — a body shorter than its `Content-Length` — ends
/// in an error, as go-ftw's read timeout does).
pub fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> anyhow::Result<RawExchange> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    let local = tcp.local_addr()?;
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(timeout))?;
    // Envoy may answer (and close) before it read everything, e.g. a 400 for the request
    // line: what it answered is the result, not the failed write.
    let write_error = tcp.write_all(raw).err();
    let head = raw.split(|b| *b == b' ').next() == Some(b"HEAD".as_slice());

    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let response = loop {
        if let Some(end) = complete_response(&buf, head, false) {
            break parse_final(&buf[..end]);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!(
                "read timeout after {timeout:?} ({} bytes received)",
                buf.len()
            ));
        }
        tcp.set_read_timeout(Some(left))?;
        match tcp.read(&mut chunk) {
            Ok(0) => {
                break match complete_response(&buf, head, true) {
                    Some(end) => parse_final(&buf[..end]),
                    None if buf.is_empty() => Err(format!(
                        "connection closed without a response{}",
                        write_error
                            .as_ref()
                            .map(|e| format!(" (write: {e})"))
                            .unwrap_or_default()
                    )),
                    None => Err(format!(
                        "connection closed in the middle of a response: {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(512)])
                    )),
                };
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                break match complete_response(&buf, head, true) {
                    Some(end) => parse_final(&buf[..end]),
                    None => Err(format!("connection error: {e}")),
                };
            }
        }
    };
    let _ = tcp.shutdown(Shutdown::Both);
    Ok(RawExchange {
        local,
        response,
        received: buf,
    })
}

fn parse_final(bytes: &[u8]) -> Result<HttpResponse, String> {
    let start = skip_interim(bytes).unwrap_or(0);
    parse_response(&bytes[start..]).map_err(|e| format!("{e:#}"))
}

/// Where the first final response starts, after any `1xx` interim responses; `None`
/// until that is known.
fn skip_interim(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        if status_of(rest).is_some_and(|s| (100..200).contains(&s)) {
            at += end + 4;
        } else {
            return Some(at);
        }
    }
}

fn status_of(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// The length of the interim responses and the first final response in `buf`, once all
/// of it arrived; `closed`: the peer closed, which ends a body without framing.
pub(crate) fn complete_response(buf: &[u8], head: bool, closed: bool) -> Option<usize> {
    let start = skip_interim(buf)?;
    let rest = &buf[start..];
    let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let status = status_of(rest)?;
    let text = String::from_utf8_lossy(&rest[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    if head || status == 204 || status == 304 {
        return Some(start + head_end);
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return chunked_len(&rest[head_end..]).map(|n| start + head_end + n);
    }
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return (rest.len() >= head_end + len).then_some(start + head_end + len);
    }
    closed.then_some(buf.len())
}

/// The length of a complete chunked body (through the last chunk's trailers), if complete.
fn chunked_len(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = body[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[at..at + eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at += eol + 2;
        if size == 0 {
            // Trailers up to an empty line.
            loop {
                let eol = body[at..].windows(2).position(|w| w == b"\r\n")?;
                at += eol + 2;
                if eol == 0 {
                    return Some(at);
                }
            }
        }
        if body.len() < at + size + 2 {
            return None;
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_by_its_framing_after_interim_ones() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab";
        assert_eq!(complete_response(r, false, false), None);
        let mut full = r.to_vec();
        full.push(b'c');
        assert_eq!(complete_response(&full, false, false), Some(full.len()));
        assert_eq!(parse_final(&full).unwrap().status, 200);

        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT";
        assert_eq!(
            complete_response(chunked, false, false),
            Some(chunked.len() - 4)
        );
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
        assert_eq!(complete_response(head, true, false), Some(head.len()));
        let unframed = b"HTTP/1.1 200 OK\r\n\r\nuntil close";
        assert_eq!(complete_response(unframed, false, false), None);
        assert_eq!(
            complete_response(unframed, false, true),
            Some(unframed.len())
        );
    }
}
