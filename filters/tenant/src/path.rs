//! Request paths: a canonical form to match on, and path patterns
//! (exact, `prefix*`, `*suffix`, `*`, and templates with `{*}` / `{**}`).
//!
//! Matching on the raw `:path` would let `/healthz/../accounts` pass as a
//! public path. The canonical form drops the query, decodes percent-encoded
//! unreserved characters, merges slashes and resolves dot segments. A path
//! whose meaning depends on the upstream (an encoded `/` or `\`, a backslash,
//! `..;`, `..` above the root, a bad escape) has no canonical form: it then
//! never satisfies an ALLOW condition on paths and always satisfies a DENY one.

use std::fmt;

/// The canonical form of a raw `:path`, or `None` when it is ambiguous.
pub fn canonical(raw: &str) -> Option<String> {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let raw = raw.get(..end)?;
    if !raw.starts_with('/') || raw.contains('\\') || !raw.is_ascii() {
        return None;
    }
    let decoded = decode_unreserved(raw)?;
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash = decoded.ends_with('/') && decoded.len() > 1;
    for segment in decoded.split('/') {
        // Path parameters (`..;x`) are dot segments to some servers.
        let bare = segment.split(';').next().unwrap_or(segment);
        match bare {
            "" if segment.is_empty() => {}
            "." if segment == "." => {}
            ".." if segment == ".." => {
                out.pop()?;
            }
            "." | ".." => return None,
            _ => out.push(segment),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for segment in &out {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Some(path)
}

/// Decodes `%XX` for unreserved characters; keeps other escapes as upper-case
/// `%XX`; `None` for an encoded `/`, `\` or `%`, or a malformed escape.
/// `raw` is ASCII (checked by the caller).
fn decode_unreserved(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_string());
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
        let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
        let value = u8::try_from(hi * 16 + lo).ok()?;
        match value {
            b'/' | b'\\' | b'%' => return None,
            v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(v))
            }
            v => {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
        }
        i += 3;
    }
    Some(out)
}

/// Why a path pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPatternError(pub &'static str);

impl fmt::Display for PathPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Template(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{*}` or `{name}`: exactly one non-empty segment.
    One,
    /// `{**}`: the rest of the path, one or more segments; last only.
    Rest,
}

impl PathPattern {
    pub fn parse(s: &str) -> Result<PathPattern, PathPatternError> {
        if s.is_empty() {
            return Err(PathPatternError("pattern is empty"));
        }
        if s == "*" {
            return Ok(PathPattern::Any);
        }
        if s.contains(['?', '#']) {
            return Err(PathPatternError(
                "a path pattern must not contain `?` or `#`",
            ));
        }
        if s.contains('{') || s.contains('}') {
            return Self::template(s);
        }
        let stars = s.matches('*').count();
        let pattern = match stars {
            0 => PathPattern::Exact(s.to_string()),
            1 if s.ends_with('*') => PathPattern::Prefix(s.trim_end_matches('*').to_string()),
            1 if s.starts_with('*') => {
                return Ok(PathPattern::Suffix(s.trim_start_matches('*').to_string()))
            }
            _ => {
                return Err(PathPatternError(
                    "`*` is allowed only as the whole pattern, its first or its last character",
                ))
            }
        };
        let literal = match &pattern {
            PathPattern::Exact(l) | PathPattern::Prefix(l) => l,
            _ => return Ok(pattern),
        };
        if !literal.starts_with('/') {
            return Err(PathPatternError("a path pattern must start with `/`"));
        }
        if canonical(literal).as_deref() != Some(literal.as_str())
            && !(matches!(pattern, PathPattern::Prefix(_)) && literal.ends_with('/'))
        {
            return Err(PathPatternError(
                "a path pattern must be canonical (no `//`, dot segments or encoded characters)",
            ));
        }
        Ok(pattern)
    }

    fn template(s: &str) -> Result<PathPattern, PathPatternError> {
        let body = s
            .strip_prefix('/')
            .ok_or(PathPatternError("a path template must start with `/`"))?;
        let mut segments = Vec::new();
        let parts: Vec<&str> = body.split('/').collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let segment = if part == "{**}" {
                if i + 1 != count {
                    return Err(PathPatternError("`{**}` must be the last segment"));
                }
                Segment::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name != "*"
                    && (name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                {
                    return Err(PathPatternError(
                        "a template variable is `{*}`, `{**}` or `{name}` with [A-Za-z0-9_]",
                    ));
                }
                Segment::One
            } else if part.contains(['{', '}', '*']) {
                return Err(PathPatternError(
                    "a template operator must be a whole segment (`/{*}/`, not `/a{*}/`)",
                ));
            } else if part.is_empty() || part == "." || part == ".." || part.contains('%') {
                return Err(PathPatternError(
                    "a template segment must not be empty, a dot segment or percent-encoded",
                ));
            } else {
                Segment::Literal(part.to_string())
            };
            segments.push(segment);
        }
        Ok(PathPattern::Template(segments))
    }

    /// Matches a canonical path.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(e) => path == e,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
            PathPattern::Suffix(p) => path.ends_with(p.as_str()),
            PathPattern::Template(segments) => {
                let Some(body) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = body.split('/');
                for segment in segments {
                    match segment {
                        Segment::Rest => return parts.next().is_some(),
                        Segment::One => match parts.next() {
                            Some(p) if !p.is_empty() => {}
                            _ => return false,
                        },
                        Segment::Literal(l) => match parts.next() {
                            Some(p) if p == l => {}
                            _ => return false,
                        },
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_resolves_what_upstreams_would() {
        let rows: &[(&str, Option<&str>)] = &[
            ("/", Some("/")),
            ("/accounts/1", Some("/accounts/1")),
            ("/accounts/1?x=/healthz", Some("/accounts/1")),
            ("/healthz/../accounts", Some("/accounts")),
            ("/a/./b", Some("/a/b")),
            ("//a///b", Some("/a/b")),
            ("/a/b/", Some("/a/b/")),
            ("/%61ccounts", Some("/accounts")),
            ("/healthz/%2e%2e/accounts", Some("/accounts")),
            ("/a%20b", Some("/a%20b")),
            ("/a%2fb", None),
            ("/a%5Cb", None),
            ("/a%25", None),
            ("/a%zz", None),
            ("/a%2", None),
            ("/a\\b", None),
            ("/healthz/..;/accounts", None),
            ("/..", None),
            ("accounts", None),
            ("*", None),
        ];
        for (raw, want) in rows {
            assert_eq!(canonical(raw).as_deref(), *want, "{raw}");
        }
    }

    #[test]
    fn patterns_match_exact_prefix_suffix_and_any() {
        let rows: &[(&str, &str, bool)] = &[
            ("/healthz", "/healthz", true),
            ("/healthz", "/healthz/x", false),
            ("/rates/*", "/rates/eur", true),
            ("/rates/*", "/rates", false),
            ("/rates*", "/rates", true),
            ("*.json", "/a/b.json", true),
            ("*", "/anything", true),
        ];
        for (p, path, want) in rows {
            assert_eq!(
                PathPattern::parse(p).unwrap().matches(path),
                *want,
                "{p} vs {path}"
            );
        }
    }

    #[test]
    fn templates_match_whole_segments() {
        let rows: &[(&str, &str, bool)] = &[
            ("/accounts/{id}/balance", "/accounts/42/balance", true),
            ("/accounts/{id}/balance", "/accounts/42/x/balance", false),
            ("/accounts/{id}/balance", "/accounts//balance", false),
            ("/accounts/{*}", "/accounts/42", true),
            ("/accounts/{*}", "/accounts/42/more", false),
            ("/accounts/{**}", "/accounts/42/more", true),
            ("/accounts/{**}", "/accounts/", true),
            ("/accounts/{**}", "/accounts", false),
            ("/v1/{*}/rates/{**}", "/v1/x/rates/eur/usd", true),
        ];
        for (p, path, want) in rows {
            assert_eq!(
                PathPattern::parse(p).unwrap().matches(path),
                *want,
                "{p} vs {path}"
            );
        }
    }

    #[test]
    fn malformed_path_patterns_are_rejected() {
        for bad in [
            "",
            "healthz",
            "/a*b",
            "*a*",
            "/a/../b",
            "//a",
            "/a?x",
            "/a/{**}/b",
            "/a{*}",
            "/a/{x-y}",
            "/a/{",
            "/a//{*}",
            "/a/%2e",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
