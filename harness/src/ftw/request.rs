//! The bytes go-ftw v2.3.0 writes on the wire for a stage's input (`ftwhttp/request.go`,
//! `BuildRequest`), so what reaches the proxy is what CRS's own test runs send.
//!
//! - `encoded_request` is sent as decoded, nothing else applies.
//! - `headers` (a YAML map) are written sorted by name, as go-ftw sorts them after loading;
//!   `ordered_headers` keep their order. Names keep the case written.
//! - `data` is first evaluated as a Go template; only the forms CRS uses are supported
//!   (`{{ "1" | repeat 64200 }}`), anything else is an error rather than a wrong body.
//! - With autocomplete (the default): a body without `Content-Type` gets
//!   `application/x-www-form-urlencoded`; such a body that contains neither `%` nor `+` is
//!   URL-encoded pair by pair (`url.QueryEscape`); `Connection: close` and `Content-Length` are
//!   added when missing (the length also for POST/PUT/PATCH/DELETE without a body).
//! - A `multipart/form-data;` body has every `\n` turned into `\r\n`, autocomplete or not.

use super::schema::Input;
use base64::Engine as _;

/// The raw request of a stage.
pub fn build(input: &Input, cookies: &[(String, String)]) -> Result<Vec<u8>, String> {
    if let Some(encoded) = input.encoded_request.as_deref().filter(|e| !e.is_empty()) {
        if input.data.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err("'data' and 'encoded_request' must not be set simultaneously".into());
        }
        return decode_base64(encoded).map_err(|e| format!("encoded_request is not base64: {e}"));
    }
    let method = input.method.as_deref().unwrap_or("GET");
    let uri = input.uri.as_deref().unwrap_or("/");
    let version = input.version.as_deref().unwrap_or("HTTP/1.1");
    let mut headers = stage_headers(input);
    if !cookies.is_empty() && !has(&headers, "Cookie") {
        let jar: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
        headers.push(("Cookie".into(), jar.join("; ")));
    }
    let mut data = body(input)?;
    let autocomplete = autocomplete(input);

    if !data.is_empty() && autocomplete {
        if !has(&headers, "Content-Type") {
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
        data = encode_form(&headers, data);
    }
    if headers.iter().any(|(n, v)| {
        canonical_eq(n, "Content-Type") && v.to_lowercase().contains("multipart/form-data;")
    }) {
        data = crlf(&data);
    }
    if autocomplete {
        if !has(&headers, "Connection") {
            headers.push(("Connection".into(), "close".into()));
        }
        if !has(&headers, "Content-Length") && (!data.is_empty() || method_has_body(method)) {
            headers.push(("Content-Length".into(), data.len().to_string()));
        }
    }

    let mut raw = format!("{method} {uri} {version}\r\n").into_bytes();
    for (name, value) in &headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&data);
    Ok(raw)
}

/// Go's `base64.StdEncoding.DecodeString`, which skips `\r` and `\n` (YAML folds long values).
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    base64::engine::general_purpose::STANDARD.decode(compact.trim())
}

/// `autocomplete_headers`, else the inverse of `stop_magic`, else true.
pub fn autocomplete(input: &Input) -> bool {
    match (input.autocomplete_headers, input.stop_magic) {
        (Some(on), _) => on,
        (None, Some(stop)) => !stop,
        (None, None) => true,
    }
}

/// The headers in go-ftw's sending order.
pub fn stage_headers(input: &Input) -> Vec<(String, String)> {
    if let Some(ordered) = &input.ordered_headers {
        return ordered
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
    }
    let mut headers = input.headers.clone().unwrap_or_default();
    // go-ftw (test/types.go, postProcessHeaders) sorts the map's names bytewise; a stable
    // sort keeps repeated names in the order written.
    headers.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    headers
}

/// The body before autocompletion: `data` (a Go template) or `encoded_data`.
pub fn body(input: &Input) -> Result<Vec<u8>, String> {
    if let Some(data) = &input.data {
        return go_template(data).map(String::into_bytes);
    }
    if let Some(encoded) = &input.encoded_data {
        return decode_base64(encoded).map_err(|e| format!("encoded_data is not base64: {e}"));
    }
    Ok(Vec::new())
}

/// go-ftw's `methodsWithBodyRegex`, `^POST|PUT|PATCH|DELETE$`: an unanchored alternation, so
/// any method starting with POST, containing PUT or PATCH, or ending with DELETE.
fn method_has_body(method: &str) -> bool {
    method.starts_with("POST")
        || method.contains("PUT")
        || method.contains("PATCH")
        || method.ends_with("DELETE")
}

/// Go's `textproto.CanonicalMIMEHeaderKey` comparison: ASCII case-insensitive for valid names.
fn canonical_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| canonical_eq(n, name))
}

/// go-ftw's `encodeDataParameters`: only for a `Content-Type` exactly (case-insensitively)
/// `application/x-www-form-urlencoded`, and only when `url.QueryUnescape` would leave the data
/// unchanged — that is, when it holds neither `%` nor `+`.
fn encode_form(headers: &[(String, String)], data: Vec<u8>) -> Vec<u8> {
    let form = headers.iter().any(|(n, v)| {
        canonical_eq(n, "Content-Type")
            && v.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form || data.contains(&b'%') || data.contains(&b'+') {
        return data;
    }
    let mut out = Vec::with_capacity(data.len());
    for (i, token) in data.split(|b| *b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        match token.iter().position(|b| *b == b'=') {
            Some(eq) => {
                query_escape(&token[..eq], &mut out);
                out.push(b'=');
                query_escape(&token[eq + 1..], &mut out);
            }
            None => query_escape(token, &mut out),
        }
    }
    out
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, space as `+`, the rest `%XX`.
fn query_escape(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

/// Every `\n` becomes `\r\n` (go-ftw does not skip those already preceded by `\r`).
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Evaluates the Go `text/template` forms CRS's tests use: literal text and actions
/// `{{ "s" }}`, `{{ "s" | repeat N }}` and `{{ repeat N "s" }}` (sprig's `repeat`), with the
/// `{{-` / `-}}` whitespace trimming markers.
pub fn go_template(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let mut literal = &rest[..start];
        let after = &rest[start + 2..];
        let (trim_left, after) = match after.strip_prefix("- ") {
            Some(a) => (true, a),
            None => (false, after),
        };
        if trim_left {
            literal = literal.trim_end();
        }
        out.push_str(literal);
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed template action in data: {{{{{after}"))?;
        let mut action = &after[..end];
        let mut next = &after[end + 2..];
        if let Some(a) = action.strip_suffix(" -") {
            action = a;
            next = next.trim_start();
        }
        out.push_str(&template_action(action.trim())?);
        rest = next;
    }
    out.push_str(rest);
    Ok(out)
}

fn template_action(action: &str) -> Result<String, String> {
    let unsupported = || format!("unsupported Go template action in data: {{{{ {action} }}}}");
    let tokens = template_tokens(action).ok_or_else(unsupported)?;
    let text = |t: &Token| match t {
        Token::Str(s) => Some(s.clone()),
        _ => None,
    };
    let count = |t: &Token| match t {
        Token::Num(n) => Some(*n),
        _ => None,
    };
    let repeat = |s: String, n: usize| -> Result<String, String> {
        // Bounded: a test body larger than this is a typo, not a test.
        if s.len().saturating_mul(n) > 64 << 20 {
            return Err(format!("template repeat of {n} is too large"));
        }
        Ok(s.repeat(n))
    };
    match tokens.as_slice() {
        [s] => text(s).ok_or_else(unsupported),
        [s, Token::Pipe, Token::Ident(f), n] if f == "repeat" => repeat(
            text(s).ok_or_else(unsupported)?,
            count(n).ok_or_else(unsupported)?,
        ),
        [Token::Ident(f), n, s] if f == "repeat" => repeat(
            text(s).ok_or_else(unsupported)?,
            count(n).ok_or_else(unsupported)?,
        ),
        _ => Err(unsupported()),
    }
}

#[derive(Debug)]
enum Token {
    Str(String),
    Num(usize),
    Ident(String),
    Pipe,
}

fn template_tokens(action: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = action.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '|' => {
                chars.next();
                tokens.push(Token::Pipe);
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()?.1 {
                        '"' => break,
                        '\\' => match chars.next()?.1 {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            other => s.push(other),
                        },
                        other => s.push(other),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '0'..='9' => {
                let end = action[i..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(action.len(), |e| i + e);
                tokens.push(Token::Num(action[i..end].parse().ok()?));
                while chars.peek().is_some_and(|(j, _)| *j < end) {
                    chars.next();
                }
            }
            c if c.is_ascii_alphabetic() => {
                let end = action[i..]
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .map_or(action.len(), |e| i + e);
                tokens.push(Token::Ident(action[i..end].to_string()));
                while chars.peek().is_some_and(|(j, _)| *j < end) {
                    chars.next();
                }
            }
            _ => return None,
        }
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::super::schema::HeaderTuple;
    use super::*;

    fn input(yaml: &str) -> Input {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn text(raw: Vec<u8>) -> String {
        String::from_utf8(raw).unwrap()
    }

    #[test]
    fn a_form_post_is_completed_and_url_encoded_like_go_ftw() {
        let raw = build(
            &input("method: POST\nuri: /post\nheaders: {Host: localhost, User-Agent: t}\ndata: \"a=<b c>&d\""),
            &[],
        )
        .unwrap();
        assert_eq!(
            text(raw),
            "POST /post HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\
             Content-Length: 13\r\n\r\na=%3Cb+c%3E&d"
        );
    }

    #[test]
    fn data_holding_a_percent_or_plus_is_sent_as_written() {
        let raw = build(&input("method: POST\ndata: \"a=%3C+b\""), &[]).unwrap();
        assert!(text(raw).ends_with("\r\n\r\na=%3C+b"));
    }

    #[test]
    fn another_content_type_is_not_url_encoded() {
        let raw = build(
            &input(
                "method: POST\nheaders: {Content-Type: application/json}\ndata: '{\"a\": \"<b>\"}'",
            ),
            &[],
        )
        .unwrap();
        assert!(text(raw).ends_with("\r\n\r\n{\"a\": \"<b>\"}"));
    }

    #[test]
    fn map_headers_are_sent_sorted_by_name_and_ordered_headers_as_listed() {
        let raw = build(
            &input("headers: {b: 2, A: 1, C: 3}\nautocomplete_headers: false"),
            &[],
        )
        .unwrap();
        assert_eq!(text(raw), "GET / HTTP/1.1\r\nA: 1\r\nC: 3\r\nb: 2\r\n\r\n");
        let mut i = input("autocomplete_headers: false");
        i.ordered_headers = Some(vec![
            HeaderTuple {
                name: "Z".into(),
                value: "1".into(),
            },
            HeaderTuple {
                name: "A".into(),
                value: "2".into(),
            },
        ]);
        assert_eq!(
            text(build(&i, &[]).unwrap()),
            "GET / HTTP/1.1\r\nZ: 1\r\nA: 2\r\n\r\n"
        );
    }

    #[test]
    fn without_autocomplete_the_request_is_exactly_as_written() {
        let raw = build(
            &input("method: POST\nversion: HTTP/1.0\nheaders: {Content-Length: 0}\ndata: \"hi=test\\r\\n\"\nautocomplete_headers: false"),
            &[],
        )
        .unwrap();
        assert_eq!(
            text(raw),
            "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\nhi=test\r\n"
        );
        // stop_magic is the deprecated inverse.
        assert!(!autocomplete(&input("stop_magic: true")));
        assert!(autocomplete(&input("stop_magic: false")));
    }

    #[test]
    fn body_methods_get_a_zero_content_length() {
        for (method, expected) in [
            ("POST", true),
            ("PUT", true),
            ("XPATCHY", true),
            ("UNDELETE", true),
            ("GET", false),
        ] {
            let raw = text(build(&input(&format!("method: {method}")), &[]).unwrap());
            assert_eq!(raw.contains("Content-Length: 0\r\n"), expected, "{method}");
        }
    }

    #[test]
    fn multipart_bodies_get_crlf_line_ends_even_without_autocomplete() {
        let raw = build(
            &input("method: POST\nheaders: {Content-Type: 'multipart/form-data; boundary=x'}\ndata: \"--x\\nA: b\\r\\n--x--\"\nautocomplete_headers: false"),
            &[],
        )
        .unwrap();
        assert!(text(raw).ends_with("\r\n\r\n--x\r\nA: b\r\r\n--x--"));
    }

    #[test]
    fn an_encoded_request_is_sent_byte_for_byte() {
        let raw = build(
            &input("encoded_request: R0VUIC8geCBIVFRQLzEuMQ0KSG9zdDogYQ0KDQr/"),
            &[],
        )
        .unwrap();
        assert_eq!(raw, b"GET / x HTTP/1.1\r\nHost: a\r\n\r\n\xff".to_vec());
        assert!(build(&input("encoded_request: R0VU\ndata: x"), &[]).is_err());
        assert!(build(&input("encoded_request: '!!'"), &[]).is_err());
    }

    #[test]
    fn encoded_data_is_the_body() {
        let raw = build(
            &input("method: POST\nencoded_data: AP8=\nautocomplete_headers: false"),
            &[],
        )
        .unwrap();
        assert!(raw.ends_with(b"\r\n\r\n\x00\xff"));
    }

    #[test]
    fn saved_cookies_are_sent_unless_the_stage_has_a_cookie() {
        let cookies = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ];
        let raw = text(build(&input("autocomplete_headers: false"), &cookies).unwrap());
        assert!(raw.contains("Cookie: a=1; b=2\r\n"));
        let raw = text(
            build(
                &input("headers: {Cookie: x=y}\nautocomplete_headers: false"),
                &cookies,
            )
            .unwrap(),
        );
        assert!(raw.contains("Cookie: x=y\r\n") && !raw.contains("a=1"));
    }

    #[test]
    fn go_templates_of_the_kind_crs_uses_are_evaluated() {
        assert_eq!(go_template("a{{ \"1\" | repeat 3 }}b").unwrap(), "a111b");
        assert_eq!(go_template("{{ repeat 2 \"xy\" }}").unwrap(), "xyxy");
        assert_eq!(go_template("a \n{{- \"z\" -}} \n b").unwrap(), "azb");
        assert_eq!(go_template("no actions").unwrap(), "no actions");
        assert!(go_template("{{ .Payload }}").is_err());
        assert!(go_template("{{ \"a\" | upper }}").is_err());
        assert!(go_template("{{ unclosed").is_err());
    }
}
