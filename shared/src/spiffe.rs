//! SPIFFE IDs, parsed and validated exactly per the SPIFFE ID specification
//! (ARCHITECTURE §7): `spiffe://<trust-domain>/<path>`.
//!
//! Parsing is strict on purpose: a tenant decision is made on this string, so
//! anything a lenient URI parser would "fix" (upper case, percent-encoding,
//! `..` segments, ports, userinfo) is an error that names the rule it broke.
//!
//! ```
//! use meshward_shared::spiffe::SpiffeId;
//! let id = SpiffeId::parse("spiffe://cluster.local/ns/bank-a/sa/api").unwrap();
//! assert_eq!(id.trust_domain(), "cluster.local");
//! assert_eq!(id.namespace(), Some("bank-a"));
//! assert_eq!(id.service_account(), Some("api"));
//! assert!(SpiffeId::parse("spiffe://Cluster.local/ns/a").is_err());
//! ```

use std::fmt;

/// The scheme prefix every SPIFFE ID starts with.
pub const SCHEME_PREFIX: &str = "spiffe://";
/// The spec's limit on a trust domain name, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// The longest SPIFFE ID the spec requires implementations to support, in bytes
/// (longer IDs are rejected rather than processed).
pub const MAX_ID_LEN: usize = 2048;

/// Why a string is not a SPIFFE ID: each variant is one rule of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiffeIdError {
    /// The string is empty.
    Empty,
    /// Longer than [`MAX_ID_LEN`] bytes.
    TooLong,
    /// The scheme is not exactly `spiffe` followed by `://`.
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    MissingTrustDomain,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`] bytes.
    TrustDomainTooLong,
    /// The authority holds userinfo (`user@host`), which the spec forbids.
    UserInfo,
    /// The authority holds a port (`host:8443`), which the spec forbids.
    Port,
    /// A percent-encoded octet (`%2e`), which the spec forbids everywhere.
    PercentEncoding,
    /// A query (`?…`), which the spec forbids.
    Query,
    /// A fragment (`#…`), which the spec forbids.
    Fragment,
    /// A trust domain character outside lowercase `[a-z0-9._-]`.
    TrustDomainChar,
    /// An empty path segment (`//`).
    EmptySegment,
    /// A `.` or `..` path segment.
    DotSegment,
    /// The path ends in `/`.
    TrailingSlash,
    /// A path character outside `[A-Za-z0-9._-]`.
    PathChar,
}

impl SpiffeIdError {
    /// A short, stable name of the rule that failed (for logs and metrics).
    pub fn rule(self) -> &'static str {
        match self {
            SpiffeIdError::Empty => "empty",
            SpiffeIdError::TooLong => "too_long",
            SpiffeIdError::WrongScheme => "wrong_scheme",
            SpiffeIdError::MissingTrustDomain => "missing_trust_domain",
            SpiffeIdError::TrustDomainTooLong => "trust_domain_too_long",
            SpiffeIdError::UserInfo => "userinfo",
            SpiffeIdError::Port => "port",
            SpiffeIdError::PercentEncoding => "percent_encoding",
            SpiffeIdError::Query => "query",
            SpiffeIdError::Fragment => "fragment",
            SpiffeIdError::TrustDomainChar => "trust_domain_char",
            SpiffeIdError::EmptySegment => "empty_segment",
            SpiffeIdError::DotSegment => "dot_segment",
            SpiffeIdError::TrailingSlash => "trailing_slash",
            SpiffeIdError::PathChar => "path_char",
        }
    }
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            SpiffeIdError::Empty => "SPIFFE ID is empty",
            SpiffeIdError::TooLong => "SPIFFE ID is longer than 2048 bytes",
            SpiffeIdError::WrongScheme => "scheme must be `spiffe://` (lowercase)",
            SpiffeIdError::MissingTrustDomain => "trust domain is missing",
            SpiffeIdError::TrustDomainTooLong => "trust domain is longer than 255 bytes",
            SpiffeIdError::UserInfo => "trust domain must not contain userinfo (`@`)",
            SpiffeIdError::Port => "trust domain must not contain a port (`:`)",
            SpiffeIdError::PercentEncoding => "percent-encoding (`%`) is not allowed",
            SpiffeIdError::Query => "a query (`?`) is not allowed",
            SpiffeIdError::Fragment => "a fragment (`#`) is not allowed",
            SpiffeIdError::TrustDomainChar => {
                "trust domain characters are limited to lowercase letters, digits, `.`, `-` and `_`"
            }
            SpiffeIdError::EmptySegment => "path must not contain empty segments",
            SpiffeIdError::DotSegment => "path must not contain `.` or `..` segments",
            SpiffeIdError::TrailingSlash => "path must not end with `/`",
            SpiffeIdError::PathChar => {
                "path characters are limited to letters, digits, `.`, `-` and `_`"
            }
        };
        write!(f, "{text} (rule: {})", self.rule())
    }
}

impl std::error::Error for SpiffeIdError {}

/// A valid SPIFFE ID. Holds the original string; the trust domain and path are
/// slices of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the path starts (== id.len() when there is no path).
    path_start: usize,
}

impl SpiffeId {
    /// Parses and validates `s` as a SPIFFE ID.
    pub fn parse(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let td_len = rest.find('/').unwrap_or(rest.len());
        let (td, path) = rest.split_at(td_len);
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(SpiffeId {
            id: s.to_string(),
            path_start: SCHEME_PREFIX.len() + td_len,
        })
    }

    /// The whole ID, `spiffe://td/path`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain name, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        self.id
            .get(SCHEME_PREFIX.len()..self.path_start)
            .unwrap_or_default()
    }

    /// The path, e.g. `/ns/bank-a/sa/api`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        self.id.get(self.path_start..).unwrap_or_default()
    }

    /// The ID without its scheme, `td/path`: the form Istio's
    /// AuthorizationPolicy `principals` are written in.
    pub fn without_scheme(&self) -> &str {
        self.id.get(SCHEME_PREFIX.len()..).unwrap_or_default()
    }

    /// The namespace of an Istio-style ID `/ns/<namespace>/sa/<service-account>`.
    pub fn namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account of an Istio-style ID.
    pub fn service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.path().strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Validates a trust domain name on its own (e.g. from configuration).
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    // The specific rules first, so the error names the real mistake.
    if td.contains('%') {
        return Err(SpiffeIdError::PercentEncoding);
    }
    if td.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    if td.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    if td.contains('?') {
        return Err(SpiffeIdError::Query);
    }
    if td.contains('#') {
        return Err(SpiffeIdError::Fragment);
    }
    if !td.bytes().all(is_trust_domain_byte) {
        return Err(SpiffeIdError::TrustDomainChar);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    Ok(())
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.contains('%') {
        return Err(SpiffeIdError::PercentEncoding);
    }
    if path.contains('?') {
        return Err(SpiffeIdError::Query);
    }
    if path.contains('#') {
        return Err(SpiffeIdError::Fragment);
    }
    // `path` starts with '/', so the first split item is the empty prefix.
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            return Err(if segments.peek().is_none() {
                SpiffeIdError::TrailingSlash
            } else {
                SpiffeIdError::EmptySegment
            });
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if !segment.bytes().all(is_path_byte) {
            return Err(SpiffeIdError::PathChar);
        }
    }
    Ok(())
}

fn is_trust_domain_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use SpiffeIdError::*;

    #[test]
    fn valid_ids_from_the_spec_parse() {
        let cases: &[(&str, &str, &str)] = &[
            // (label, id, expected path)
            ("trust domain only", "spiffe://example.org", ""),
            (
                "single segment",
                "spiffe://example.org/workload",
                "/workload",
            ),
            (
                "istio form",
                "spiffe://cluster.local/ns/bank-a/sa/api",
                "/ns/bank-a/sa/api",
            ),
            (
                "trust domain with all allowed chars",
                "spiffe://a-b_c.9/x",
                "/x",
            ),
            (
                "path is case-sensitive and may use upper case",
                "spiffe://td/Ns/API",
                "/Ns/API",
            ),
            (
                "path segment may contain dots if not only dots",
                "spiffe://td/a..b/.c/d.",
                "/a..b/.c/d.",
            ),
            (
                "path chars: letters digits . - _",
                "spiffe://td/aZ09.-_",
                "/aZ09.-_",
            ),
        ];
        for (label, id, path) in cases {
            let parsed = SpiffeId::parse(id).unwrap_or_else(|e| panic!("{label}: {id}: {e}"));
            assert_eq!(parsed.path(), *path, "{label}");
            assert_eq!(parsed.as_str(), *id, "{label}");
        }
    }

    #[test]
    fn invalid_ids_name_the_rule_they_break() {
        let long_td = format!("spiffe://{}/x", "a".repeat(256));
        let max_td = format!("spiffe://{}/x", "a".repeat(255));
        let long_id = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
        let cases: &[(&str, &str, SpiffeIdError)] = &[
            ("empty string", "", Empty),
            ("longer than 2048 bytes", &long_id, TooLong),
            ("scheme missing", "cluster.local/ns/a/sa/b", WrongScheme),
            (
                "scheme is not spiffe",
                "https://cluster.local/ns/a",
                WrongScheme,
            ),
            (
                "scheme is upper case",
                "SPIFFE://cluster.local/ns/a",
                WrongScheme,
            ),
            (
                "scheme without //",
                "spiffe:cluster.local/ns/a",
                WrongScheme,
            ),
            ("trust domain missing", "spiffe:///ns/a", MissingTrustDomain),
            (
                "trust domain missing, nothing else",
                "spiffe://",
                MissingTrustDomain,
            ),
            ("trust domain over 255 bytes", &long_td, TrustDomainTooLong),
            (
                "trust domain upper case",
                "spiffe://Cluster.local/ns/a",
                TrustDomainChar,
            ),
            (
                "trust domain with space",
                "spiffe://clu ster/ns/a",
                TrustDomainChar,
            ),
            (
                "trust domain non-ASCII",
                "spiffe://clüster/ns/a",
                TrustDomainChar,
            ),
            ("userinfo", "spiffe://user@cluster.local/ns/a", UserInfo),
            ("port", "spiffe://cluster.local:8443/ns/a", Port),
            (
                "percent-encoded trust domain",
                "spiffe://cluster%2elocal/ns/a",
                PercentEncoding,
            ),
            (
                "percent-encoded path",
                "spiffe://td/ns/a%2Fb",
                PercentEncoding,
            ),
            (
                "percent-encoded dot segment",
                "spiffe://td/ns/%2e%2e/x",
                PercentEncoding,
            ),
            ("query", "spiffe://td/ns/a?x=1", Query),
            ("query right after trust domain", "spiffe://td?x=1", Query),
            ("fragment", "spiffe://td/ns/a#frag", Fragment),
            ("empty segment", "spiffe://td/ns//a", EmptySegment),
            ("empty first segment", "spiffe://td//ns", EmptySegment),
            ("dot segment", "spiffe://td/ns/./a", DotSegment),
            ("dot-dot segment", "spiffe://td/ns/../a", DotSegment),
            ("trailing dot-dot", "spiffe://td/ns/..", DotSegment),
            ("trailing slash", "spiffe://td/ns/a/", TrailingSlash),
            ("root path /", "spiffe://td/", TrailingSlash),
            ("path char outside the set", "spiffe://td/ns/a+b", PathChar),
            ("path with space", "spiffe://td/ns/a b", PathChar),
            (
                "backslash in the authority",
                "spiffe://td\\ns/a",
                TrustDomainChar,
            ),
            (
                "path with backslash in segment",
                "spiffe://td/ns/a\\b",
                PathChar,
            ),
            ("path with colon", "spiffe://td/ns/a:b", PathChar),
            ("path non-ASCII", "spiffe://td/ns/bänk", PathChar),
        ];
        for (label, id, rule) in cases {
            assert_eq!(SpiffeId::parse(id), Err(*rule), "{label}: {id}");
        }
        assert!(
            SpiffeId::parse(&max_td).is_ok(),
            "255-byte trust domain is allowed"
        );
    }

    #[test]
    fn an_id_of_exactly_2048_bytes_is_supported() {
        let prefix = "spiffe://td/";
        let id = format!("{prefix}{}", "a".repeat(MAX_ID_LEN - prefix.len()));
        assert_eq!(id.len(), MAX_ID_LEN);
        assert!(SpiffeId::parse(&id).is_ok());
    }

    #[test]
    fn error_message_names_the_rule() {
        let err = SpiffeId::parse("spiffe://td/a/../b").unwrap_err();
        assert_eq!(err.rule(), "dot_segment");
        assert!(err.to_string().contains("rule: dot_segment"), "{err}");
    }

    #[test]
    fn istio_namespace_and_service_account_are_extracted() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/bank-b/sa/auth").unwrap();
        assert_eq!(id.namespace(), Some("bank-b"));
        assert_eq!(id.service_account(), Some("auth"));
        assert_eq!(id.without_scheme(), "cluster.local/ns/bank-b/sa/auth");
        for other in [
            "spiffe://td/ns/a",
            "spiffe://td/ns/a/sa/b/extra",
            "spiffe://td/workload",
            "spiffe://td",
            "spiffe://td/x/a/sa/b",
        ] {
            assert_eq!(SpiffeId::parse(other).unwrap().namespace(), None, "{other}");
        }
    }
}
