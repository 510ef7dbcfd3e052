//! The backend of CRS's test setup: albedo (<https://github.com/coreruleset/albedo>, v0.3.0 in
//! CRS v4.28.0's `tests/docker-compose.yml`), a Go `net/http` server. The response tests
//! (RESPONSE-95x) POST a reflection spec to `/reflect` and the WAF inspects what comes back.
//!
//! Endpoints (albedo's `server/server.go`, Go 1.22 `ServeMux` patterns):
//! - `POST /reflect` (and `/reflect/…`): the body is a JSON spec — `status` (default 200; outside
//!   100–599 → 400 `Invalid status code: N`), `headers` (name → value), `body`, or
//!   `encodedBody` (base64) when `body` is empty, `logMessage` (albedo's own log only). Go's
//!   JSON decoding: field names match case-insensitively, unknown fields are ignored, a value of
//!   the wrong type or invalid JSON → 400 `Invalid JSON in request body`.
//! - `POST /configure_reflection`: makes each listed `{method, url}` answer with the spec;
//!   `PUT /reset` forgets them; `/capabilities` lists the endpoints; `/inspect` and everything
//!   else: 200 with no body.
//!
//! What Go's server adds: a path that is not clean (`/a/../b`, `//x`) is redirected (301) to the
//! clean one; response headers are written sorted by name, then `Date`, `Content-Length` (for a
//! body of at most 2048 bytes, Go's chunking threshold) and a sniffed `Content-Type` when the
//! handler set none (`http.DetectContentType`; the signatures implemented are listed at
//! [`detect_content_type`]); header fields with invalid names or values are dropped.

use std::collections::HashMap;

/// A response from the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// In the order Go writes them, names in Go's canonical case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// albedo's reflection spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub status: i64,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub encoded_body: String,
    pub log_message: String,
}

/// One albedo server: its configured reflection endpoints persist across requests.
#[derive(Debug, Default)]
pub struct Albedo {
    /// `(method, request URI)` → spec, from `/configure_reflection`.
    configured: HashMap<(String, String), Spec>,
    /// A go-ftw stage's `input.response`: while set, every request gets it.
    stage_response: Option<Spec>,
    /// The `Date` header value to send.
    pub date: String,
}

impl Albedo {
    pub fn new(date: impl Into<String>) -> Self {
        Albedo {
            configured: HashMap::new(),
            stage_response: None,
            date: date.into(),
        }
    }

    /// Answers every request with `spec` until called again (`None`: albedo's endpoints).
    pub fn set_stage_response(&mut self, spec: Option<Spec>) {
        self.stage_response = spec;
    }

    /// Answers one request: with the stage's response when one is set (no body for a
    /// HEAD), else by albedo's endpoints ([`Albedo::handle`]).
    pub fn answer(&mut self, method: &str, target: &str, body: &[u8]) -> Reply {
        match &self.stage_response {
            Some(spec) => {
                let mut reply = self.reflect(spec);
                if method == "HEAD" {
                    reply.body.clear();
                }
                reply
            }
            None => self.handle(method, target, body),
        }
    }

    /// Answers one request; `target` is the request URI as received (path and query).
    pub fn handle(&mut self, method: &str, target: &str, body: &[u8]) -> Reply {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let clean = clean_path(path);
        if clean != path {
            let location = match query {
                Some(q) => format!("{clean}?{q}"),
                None => clean,
            };
            return self.redirect(method, &location);
        }
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        let reply = if method == "POST" && under("/reflect") {
            match parse_spec(body) {
                Ok(spec) => self.reflect(&spec),
                Err(()) => self.finish(400, Vec::new(), b"Invalid JSON in request body".to_vec()),
            }
        } else if under("/capabilities") {
            let paths = [
                "/*",
                "/capabilities",
                "/reflect",
                "/configure_reflection",
                "/reset",
                "/inspect",
            ];
            let endpoints: Vec<String> = paths
                .iter()
                .map(|p| format!("{{\"path\":\"{p}\"}}"))
                .collect();
            self.finish(
                200,
                vec![("Content-Type".into(), "application/json".into())],
                format!("{{\"endpoints\":[{}]}}", endpoints.join(",")).into_bytes(),
            )
        } else if method == "POST" && under("/configure_reflection") {
            match configure_spec(body) {
                Ok((spec, endpoints)) => {
                    for key in endpoints {
                        self.configured.insert(key, spec.clone());
                    }
                    self.finish(200, Vec::new(), Vec::new())
                }
                Err(()) => self.finish(400, Vec::new(), b"Invalid JSON in request body".to_vec()),
            }
        } else if method == "PUT" && under("/reset") {
            self.configured.clear();
            self.finish(200, Vec::new(), Vec::new())
        } else if let Some(spec) = self
            .configured
            .get(&(method.to_string(), target.to_string()))
            .cloned()
        {
            self.reflect(&spec)
        } else {
            self.finish(200, Vec::new(), Vec::new())
        };
        if method == "HEAD" {
            return Reply {
                body: Vec::new(),
                ..reply
            };
        }
        reply
    }

    /// The response a spec describes (albedo's `doReflect`).
    pub fn reflect(&self, spec: &Spec) -> Reply {
        let headers: Vec<(String, String)> = spec
            .headers
            .iter()
            .map(|(n, v)| (canonical_key(n), v.clone()))
            .collect();
        if (spec.status > 0 && spec.status < 100) || spec.status >= 600 {
            let body = format!("Invalid status code: {}", spec.status).into_bytes();
            return self.finish(400, headers, body);
        }
        let status = if spec.status == 0 {
            200
        } else {
            u16::try_from(spec.status).unwrap_or(200)
        };
        let body = if !spec.body.is_empty() {
            spec.body.clone()
        } else if spec.encoded_body.is_empty() {
            Vec::new()
        } else {
            match super::request::decode_base64(&spec.encoded_body) {
                Ok(bytes) => bytes,
                // The status line is already written when albedo finds out.
                Err(_) => b"invalid base64 encoding of response body".to_vec(),
            }
        };
        self.finish(status, headers, body)
    }

    fn redirect(&self, method: &str, location: &str) -> Reply {
        let mut headers = vec![("Location".to_string(), location.to_string())];
        let mut body = Vec::new();
        if method == "GET" || method == "HEAD" {
            headers.push((
                "Content-Type".to_string(),
                "text/html; charset=utf-8".to_string(),
            ));
            if method == "GET" {
                body = format!(
                    "<a href=\"{}\">Moved Permanently</a>.\n\n",
                    html_escape(location)
                )
                .into_bytes();
            }
        }
        self.finish(301, headers, body)
    }

    /// What Go's server writes around a handler's headers and body.
    fn finish(&self, status: u16, mut headers: Vec<(String, String)>, body: Vec<u8>) -> Reply {
        headers.retain(|(n, v)| valid_field_name(n) && valid_field_value(v));
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        let body_allowed = !(100..200).contains(&status) && status != 204 && status != 304;
        let has = |h: &[(String, String)], name: &str| h.iter().any(|(n, _)| n == name);
        let mut extra = vec![("Date".to_string(), self.date.clone())];
        if body_allowed && !has(&headers, "Content-Length") && body.len() <= 2048 {
            extra.push(("Content-Length".into(), body.len().to_string()));
        }
        if body_allowed && !body.is_empty() && !has(&headers, "Content-Type") {
            extra.push(("Content-Type".into(), detect_content_type(&body).into()));
        }
        headers.extend(extra);
        Reply {
            status,
            headers,
            body: if body_allowed { body } else { Vec::new() },
        }
    }
}

/// A spec from the test file's `input.response`.
impl From<&super::schema::ResponseSpec> for Spec {
    fn from(r: &super::schema::ResponseSpec) -> Self {
        Spec {
            status: i64::from(r.status.unwrap_or(0)),
            headers: r.headers.clone().unwrap_or_default(),
            body: r.body.clone().unwrap_or_default().into_bytes(),
            encoded_body: r.encoded_body.clone().unwrap_or_default(),
            log_message: r.log_message.clone().unwrap_or_default(),
        }
    }
}

/// Go's `encoding/json` into albedo's `reflectionSpec`.
fn parse_spec(body: &[u8]) -> Result<Spec, ()> {
    let text = String::from_utf8_lossy(body);
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| ())?;
    spec_from(&value)
}

fn spec_from(value: &serde_json::Value) -> Result<Spec, ()> {
    let mut spec = Spec::default();
    let object = match value {
        serde_json::Value::Null => return Ok(spec),
        serde_json::Value::Object(o) => o,
        _ => return Err(()),
    };
    for (key, field) in object {
        if field.is_null() {
            continue;
        }
        match key.to_ascii_lowercase().as_str() {
            "status" => {
                let n = field.as_number().ok_or(())?;
                // Go parses the literal as an int: no fraction, no exponent.
                spec.status = n
                    .as_i64()
                    .filter(|_| !n.to_string().contains(['.', 'e', 'E']))
                    .ok_or(())?;
            }
            "headers" => {
                let map = field.as_object().ok_or(())?;
                spec.headers.clear();
                for (name, v) in map {
                    if v.is_null() {
                        spec.headers.push((name.clone(), String::new()));
                    } else {
                        spec.headers
                            .push((name.clone(), v.as_str().ok_or(())?.to_string()));
                    }
                }
            }
            "body" => spec.body = field.as_str().ok_or(())?.as_bytes().to_vec(),
            "encodedbody" => spec.encoded_body = field.as_str().ok_or(())?.to_string(),
            "logmessage" => spec.log_message = field.as_str().ok_or(())?.to_string(),
            _ => {}
        }
    }
    Ok(spec)
}

type Endpoints = Vec<(String, String)>;

fn configure_spec(body: &[u8]) -> Result<(Spec, Endpoints), ()> {
    let text = String::from_utf8_lossy(body);
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|_| ())?;
    let spec = spec_from(&value)?;
    let mut endpoints = Vec::new();
    if let Some(list) = value
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("endpoints")))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
    {
        for endpoint in list.as_array().ok_or(())? {
            let object = endpoint.as_object().ok_or(())?;
            let get = |name: &str| -> Result<String, ()> {
                match object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                    None => Ok(String::new()),
                    Some((_, serde_json::Value::Null)) => Ok(String::new()),
                    Some((_, v)) => v.as_str().map(str::to_string).ok_or(()),
                }
            };
            endpoints.push((get("method")?, get("url")?));
        }
    }
    Ok((spec, endpoints))
}

/// Go's `ServeMux` path cleaning: `path.Clean`, rooted, keeping a trailing slash.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".into();
    }
    let rooted = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for segment in rooted.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if rooted.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` → `Content-Type`; a name with a
/// byte outside token characters is left as it is.
pub fn canonical_key(name: &str) -> String {
    if !valid_field_name(name) || name.contains(' ') {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_field_value(value: &str) -> bool {
    value.bytes().all(|b| b >= 0x20 && b != 0x7f || b == b'\t')
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Go's `http.DetectContentType` (the WHATWG sniffing algorithm) for what a test body can be:
/// HTML tags, `<?xml`, PDF, PostScript, byte-order marks, GIF, PNG, JPEG, BMP, WebP, gzip, zip,
/// RAR, WebAssembly, then text (no control bytes but whitespace) or binary.
pub fn detect_content_type(body: &[u8]) -> &'static str {
    let data = &body[..body.len().min(512)];
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .unwrap_or(data.len());
    let rest = &data[start..];
    const HTML: &[&[u8]] = &[
        b"<!DOCTYPE HTML",
        b"<HTML",
        b"<HEAD",
        b"<SCRIPT",
        b"<IFRAME",
        b"<H1",
        b"<DIV",
        b"<FONT",
        b"<TABLE",
        b"<A",
        b"<STYLE",
        b"<TITLE",
        b"<B",
        b"<BODY",
        b"<BR",
        b"<P",
        b"<!--",
    ];
    for sig in HTML {
        if rest.len() > sig.len()
            && rest[..sig.len()].eq_ignore_ascii_case(sig)
            && matches!(rest[sig.len()], b' ' | b'>')
        {
            return "text/html; charset=utf-8";
        }
    }
    if rest.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    let exact: &[(&[u8], &'static str)] = &[
        (b"%PDF-", "application/pdf"),
        (b"%!PS-Adobe-", "application/postscript"),
        (b"\xfe\xff", "text/plain; charset=utf-16be"),
        (b"\xff\xfe", "text/plain; charset=utf-16le"),
        (b"\xef\xbb\xbf", "text/plain; charset=utf-8"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"\x89PNG\x0d\x0a\x1a\x0a", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"BM", "image/bmp"),
        (b"\x1f\x8b\x08", "application/x-gzip"),
        (b"PK\x03\x04", "application/zip"),
        (b"Rar!\x1a\x07\x00", "application/x-rar-compressed"),
        (b"Rar!\x1a\x07\x01\x00", "application/x-rar-compressed"),
        (b"\x00asm", "application/wasm"),
    ];
    for (sig, mime) in exact {
        if data.starts_with(sig) {
            return mime;
        }
    }
    if data.len() >= 14 && data.starts_with(b"RIFF") && &data[8..14] == b"WEBPVP" {
        return "image/webp";
    }
    let binary = data.iter().any(|&b| {
        b <= 0x08 || b == 0x0b || (0x0e..=0x1a).contains(&b) || (0x1c..=0x1f).contains(&b)
    });
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn albedo() -> Albedo {
        Albedo::new("Thu, 01 Jan 2026 00:00:00 GMT")
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn reflect_answers_with_the_spec_status_headers_and_body() {
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"status": 302, "headers": {"location": "/x", "x-b": "1"}, "body": "<html><body>hi</body></html>"}"#,
        );
        assert_eq!(reply.status, 302);
        assert_eq!(reply.body, b"<html><body>hi</body></html>");
        let names: Vec<&str> = reply.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Location", "X-B", "Date", "Content-Length", "Content-Type"]
        );
        assert_eq!(
            header(&reply, "Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header(&reply, "Content-Length"), Some("28"));
    }

    #[test]
    fn a_plain_text_body_is_sniffed_as_text_plain() {
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"body": "ViewStateException: Invalid viewstate"}"#,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(
            header(&reply, "Content-Type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn encoded_body_is_used_only_when_body_is_empty() {
        let reply = albedo().handle("POST", "/reflect/", br#"{"encodedBody": "AAEC"}"#);
        assert_eq!(reply.body, b"\x00\x01\x02");
        assert_eq!(
            header(&reply, "Content-Type"),
            Some("application/octet-stream")
        );
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"body": "a", "encodedBody": "Yg=="}"#,
        );
        assert_eq!(reply.body, b"a");
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"encodedBody": "%%%", "status": 201}"#,
        );
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body, b"invalid base64 encoding of response body");
    }

    #[test]
    fn go_json_rules_apply_to_the_spec() {
        // Case-insensitive names, unknown fields ignored.
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"BODY": "x", "Status": 203, "other": [1]}"#,
        );
        assert_eq!((reply.status, reply.body.as_slice()), (203, &b"x"[..]));
        for bad in [
            &b"not json"[..],
            b"",
            b"[1]",
            br#"{"status": "200"}"#,
            br#"{"status": 200.5}"#,
            br#"{"headers": {"a": 1}}"#,
        ] {
            let reply = albedo().handle("POST", "/reflect", bad);
            assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(bad));
            assert_eq!(reply.body, b"Invalid JSON in request body");
        }
        assert_eq!(albedo().handle("POST", "/reflect", b"null").status, 200);
    }

    #[test]
    fn an_out_of_range_status_is_answered_400() {
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"status": 99, "headers": {"X-A": "1"}}"#,
        );
        assert_eq!(reply.status, 400);
        assert_eq!(reply.body, b"Invalid status code: 99");
        assert_eq!(header(&reply, "X-A"), Some("1"));
        assert_eq!(
            albedo()
                .handle("POST", "/reflect", br#"{"status": 600}"#)
                .status,
            400
        );
    }

    #[test]
    fn invalid_reflected_headers_are_dropped() {
        let reply = albedo().handle(
            "POST",
            "/reflect",
            br#"{"headers": {"Bad Name": "1", "X-Ok": "a\u0000b", "X-Fine": "v"}}"#,
        );
        let names: Vec<&str> = reply.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-Fine", "Date", "Content-Length"]);
    }

    #[test]
    fn every_other_request_gets_an_empty_200() {
        for (method, target) in [
            ("GET", "/get"),
            ("POST", "/post"),
            ("GET", "/reflect"),
            ("GET", "/inspect/x"),
        ] {
            let reply = albedo().handle(method, target, b"a=b");
            assert_eq!(reply.status, 200, "{method} {target}");
            assert!(reply.body.is_empty());
            assert_eq!(header(&reply, "Content-Length"), Some("0"));
            assert_eq!(header(&reply, "Content-Type"), None);
        }
    }

    #[test]
    fn configured_endpoints_reflect_until_reset() {
        let mut a = albedo();
        let reply = a.handle(
            "POST",
            "/configure_reflection",
            br#"{"status": 418, "body": "teapot", "endpoints": [{"method": "GET", "url": "/tea?x=1"}]}"#,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(a.handle("GET", "/tea?x=1", b"").status, 418);
        assert_eq!(a.handle("GET", "/tea", b"").status, 200);
        a.handle("PUT", "/reset", b"");
        assert_eq!(a.handle("GET", "/tea?x=1", b"").status, 200);
    }

    #[test]
    fn unclean_paths_are_redirected_like_go_serve_mux() {
        let reply = albedo().handle("GET", "/get/../etc//passwd?x=1", b"");
        assert_eq!(reply.status, 301);
        assert_eq!(header(&reply, "Location"), Some("/etc/passwd?x=1"));
        assert_eq!(
            reply.body,
            b"<a href=\"/etc/passwd?x=1\">Moved Permanently</a>.\n\n"
        );
        assert_eq!(albedo().handle("POST", "/a/./b/", b"").status, 301);
        assert_eq!(clean_path("/a/b/"), "/a/b/");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("/%2e%2e/a"), "/%2e%2e/a");
    }

    #[test]
    fn head_responses_have_no_body() {
        let reply = albedo().handle("HEAD", "/x/../y", b"");
        assert_eq!(reply.status, 301);
        assert!(reply.body.is_empty());
    }

    #[test]
    fn content_sniffing_matches_go_for_the_usual_bodies() {
        for (body, mime) in [
            (&b"  <!DOCTYPE html><p>x"[..], "text/html; charset=utf-8"),
            (b"<p>x</p>", "text/html; charset=utf-8"),
            (b"<pre>x", "text/plain; charset=utf-8"),
            (b"<?xml version=\"1.0\"?><a/>", "text/xml; charset=utf-8"),
            (b"{\"a\": 1}", "text/plain; charset=utf-8"),
            (b"%PDF-1.4", "application/pdf"),
            (b"\x89PNG\r\n\x1a\nxxxx", "image/png"),
            (b"a\x00b", "application/octet-stream"),
        ] {
            assert_eq!(
                detect_content_type(body),
                mime,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn header_names_are_canonicalised_like_go() {
        assert_eq!(canonical_key("content-TYPE"), "Content-Type");
        assert_eq!(canonical_key("x-xss-protection"), "X-Xss-Protection");
        assert_eq!(canonical_key("bad name"), "bad name");
    }
}
