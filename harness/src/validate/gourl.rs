//! Go's `net/url` parsing, as far as the Kubernetes CEL URL library needs it.
//!
//! The WasmPlugin CRD checks `url` with `isURL(self)` and `url(self).getScheme()`.
//! In the API server (k8s.io/apiserver/pkg/cel/library/urls.go) `isURL` is
//! "`url.ParseRequestURI` returns no error", and `url()` additionally parses the
//! string with `url.Parse`. Whether a string is a URL is therefore Go's answer,
//! not RFC 3986's or the `url` crate's (which accepts and rejects different
//! strings), so this module follows Go's algorithm: scheme, `?` split, authority
//! (userinfo, host, port), and the `%`-escape rules of each component.

/// What the CEL rules read from a parsed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoUrl {
    /// Lower-cased, as Go stores it; empty for a scheme-less request path.
    pub scheme: String,
}

/// Go's `url.ParseRequestURI`: CEL's `isURL(s)` is `parse_request_uri(s).is_ok()`.
pub fn parse_request_uri(raw: &str) -> Result<GoUrl, String> {
    parse(raw, true)
}

/// Go's `url.Parse`: the fragment is cut off (and its escapes checked) first.
pub fn parse_url(raw: &str) -> Result<GoUrl, String> {
    let (u, fragment) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let url = parse(u, false)?;
    if let Some(f) = fragment {
        unescape(f, Mode::Fragment)?;
    }
    Ok(url)
}

/// CEL's `url(s)`: Go converts with `ParseRequestURI` and then `Parse`; both must succeed.
pub fn cel_url(raw: &str) -> Result<GoUrl, String> {
    parse_request_uri(raw)?;
    parse_url(raw)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

fn parse(raw: &str, via_request: bool) -> Result<GoUrl, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    if raw.is_empty() && via_request {
        return Err("empty url".into());
    }
    if raw == "*" {
        return Ok(GoUrl {
            scheme: String::new(),
        });
    }
    let (scheme, mut rest) = get_scheme(raw)?;
    let scheme = scheme.to_ascii_lowercase();

    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some((before, _query)) = rest.split_once('?') {
        // Go keeps the raw query without checking its escapes.
        rest = before;
    }

    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // An opaque URL such as `mailto:x` (or `oci:registry/x`): nothing more to check.
            return Ok(GoUrl { scheme });
        }
        if via_request {
            return Err("invalid URI for request".into());
        }
        // A relative reference: a colon in the first segment would read as a scheme.
        let first = rest.split('/').next().unwrap_or(rest);
        if first.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }

    if (!scheme.is_empty() || !via_request && !rest.starts_with("///")) && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        parse_authority(authority)?;
        rest = path;
    }
    unescape(rest, Mode::Path)?;
    Ok(GoUrl { scheme })
}

fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    return Ok(("", raw));
                }
            }
            b':' => {
                if i == 0 {
                    return Err("missing protocol scheme".into());
                }
                return Ok((&raw[..i], &raw[i + 1..]));
            }
            // Any other byte means there is no scheme at all.
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn parse_authority(authority: &str) -> Result<(), String> {
    match authority.rfind('@') {
        None => parse_host(authority),
        Some(i) => {
            parse_host(&authority[i + 1..])?;
            let userinfo = &authority[..i];
            if !valid_userinfo(userinfo) {
                return Err("net/url: invalid userinfo".into());
            }
            match userinfo.split_once(':') {
                None => unescape(userinfo, Mode::UserPassword),
                Some((user, password)) => {
                    unescape(user, Mode::UserPassword)?;
                    unescape(password, Mode::UserPassword)
                }
            }
        }
    }
}

fn valid_userinfo(s: &str) -> bool {
    s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '.'
                    | '_'
                    | ':'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '%'
                    | '@'
            )
    })
}

fn parse_host(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        // An IP literal (RFC 3986) with an optional zone (RFC 6874).
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let colon_port = &host[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
        if let Some(zone) = host[..i].find("%25") {
            unescape(&host[..zone], Mode::Host)?;
            unescape(&host[zone..i], Mode::Zone)?;
            return unescape(&host[i..], Mode::Host);
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    }
    unescape(host, Mode::Host)
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn unhex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Go's `unescape`, for its errors only: a `%` needs two hex digits, hosts may
/// only `%`-encode non-ASCII bytes (and `%25`), and hosts reject ASCII bytes
/// that would need escaping.
fn unescape(s: &str, mode: Mode) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len() || !is_hex(b[i + 1]) || !is_hex(b[i + 2]) {
                    let end = (i + 3).min(b.len());
                    return Err(format!("invalid URL escape {:?}", lossy(&b[i..end])));
                }
                let escape = &b[i..i + 3];
                if mode == Mode::Host && unhex(b[i + 1]) < 8 && escape != b"%25" {
                    return Err(format!("invalid URL escape {:?}", lossy(escape)));
                }
                if mode == Mode::Zone {
                    let v = (unhex(b[i + 1]) << 4) | unhex(b[i + 2]);
                    if escape != b"%25" && v != b' ' && should_escape_host(v) {
                        return Err(format!("invalid URL escape {:?}", lossy(escape)));
                    }
                }
                i += 3;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape_host(c) {
                    return Err(format!(
                        "invalid character {:?} in host name",
                        lossy(&b[i..i + 1])
                    ));
                }
                i += 1;
            }
        }
    }
    Ok(())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Go's `shouldEscape(c, encodeHost)` (the same set for zones).
fn should_escape_host(c: u8) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    !matches!(
        c,
        b'!' | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'['
            | b']'
            | b'<'
            | b'>'
            | b'"'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uris_as_go_parses_them() {
        // (input, ParseRequestURI succeeds, scheme)
        let rows: &[(&str, bool, &str)] = &[
            ("oci://ghcr.io/meshward/meshward-waf:0.1.0", true, "oci"),
            ("file:///opt/filters/openid.wasm", true, "file"),
            ("http://test", true, "http"),
            ("HTTPS://Example.com/x.wasm", true, "https"),
            ("fake://example.com", true, "fake"),
            ("/opt/filters/a.wasm", true, ""),
            ("test", false, ""),
            ("ghcr.io/meshward/waf:1", false, ""),
            ("", false, ""),
            ("#%blah$#@", false, ""),
            ("http://#%blah$#@", false, ""),
            ("http://exa mple.com", false, ""),
            ("http://host:80x/", false, ""),
            ("http://[::1]:8080/x", true, "http"),
            ("http://[::1/x", false, ""),
            ("http://h/%zz", false, ""),
            ("http://u%41@h/", true, "http"),
            ("http://h/?q=%zz", true, "http"),
            (":foo", false, ""),
            ("mailto:someone", true, "mailto"),
            ("http://a\u{7f}b", false, ""),
        ];
        for (input, ok, scheme) in rows {
            let got = parse_request_uri(input);
            assert_eq!(got.is_ok(), *ok, "{input:?}: {got:?}");
            if let Ok(u) = got {
                assert_eq!(u.scheme, *scheme, "{input:?}");
            }
        }
    }

    #[test]
    fn cel_url_also_needs_go_parse_to_accept_the_fragment() {
        assert!(parse_request_uri("http://h/?q#%zz").is_ok());
        assert!(cel_url("http://h/?q#%zz").is_err());
        assert!(cel_url("http://h/x#frag").is_ok());
    }
}
