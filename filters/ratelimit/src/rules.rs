//! Rules: which requests a rule applies to, and which key it counts them under.
//!
//! A rule applies when every condition of its `match` holds and every part of
//! its `key` can be computed for the request. A request that lacks a key part
//! (no such header, a path the template does not match, no verified identity
//! for a tenant or principal key) is not counted by that rule — as Envoy skips
//! a rate limit descriptor whose action produces no entry. Configure a
//! fallback rule (e.g. keyed by source IP) for such requests.

use crate::gcra::Limit;
use serde::Deserialize;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// The facts about a request that rules look at, asked for lazily: matching
/// stops at the first condition that fails, so a shell that reads each fact
/// from the host on first use makes only the host calls a decision needs.
pub trait Facts {
    /// `meshward.tenant` from filter state, written by the tenant filter.
    fn tenant(&self) -> Option<&str>;
    /// `meshward.principal` (a verified SPIFFE ID) from filter state.
    fn principal(&self) -> Option<&str>;
    fn method(&self) -> &str;
    /// `:path`, possibly with a query string.
    fn path(&self) -> &str;
    fn source_ip(&self) -> Option<IpAddr>;
    /// A request header by lower-case name (only names the configuration
    /// uses are ever asked for).
    fn header(&self, name: &str) -> Option<&str>;

    /// A caller is authenticated when the tenant filter verified its principal.
    fn authenticated(&self) -> bool {
        self.principal().is_some_and(|p| !p.is_empty())
    }
}

/// The path without its query string or fragment.
pub fn path_only(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// Request facts as plain values (tests, tools). Header names are lower
/// case; only the headers the configuration names need to be present.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `meshward.tenant` from filter state, written by the tenant filter.
    pub tenant: Option<&'a str>,
    /// `meshward.principal` (a verified SPIFFE ID) from filter state.
    pub principal: Option<&'a str>,
    pub method: &'a str,
    /// `:path`, possibly with a query string (ignored by matching).
    pub path: &'a str,
    pub source_ip: Option<IpAddr>,
    pub headers: &'a [(String, String)],
}

impl Facts for Request<'_> {
    fn tenant(&self) -> Option<&str> {
        self.tenant
    }

    fn principal(&self) -> Option<&str> {
        self.principal
    }

    fn method(&self) -> &str {
        self.method
    }

    fn path(&self) -> &str {
        self.path
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which callers a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Identity {
    /// Every caller.
    #[default]
    Any,
    /// Callers with a verified principal.
    Authenticated,
    /// Callers without one (typically keyed by source IP).
    Unauthenticated,
}

/// A principal pattern as in Istio: exact, `prefix*`, `*suffix` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

impl PrincipalPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s == "*" {
            return Ok(PrincipalPattern::Any);
        }
        let stars = s.matches('*').count();
        if stars == 0 {
            return Ok(PrincipalPattern::Exact(s.to_string()));
        }
        if stars == 1 {
            if let Some(p) = s.strip_suffix('*') {
                return Ok(PrincipalPattern::Prefix(p.to_string()));
            }
            if let Some(p) = s.strip_prefix('*') {
                return Ok(PrincipalPattern::Suffix(p.to_string()));
            }
        }
        Err(format!(
            "`*` may only start or end a pattern, once (got `{s}`)"
        ))
    }

    pub fn matches(&self, principal: &str) -> bool {
        match self {
            PrincipalPattern::Exact(p) => principal == p,
            PrincipalPattern::Prefix(p) => principal.starts_with(p.as_str()),
            PrincipalPattern::Suffix(p) => principal.ends_with(p.as_str()),
            PrincipalPattern::Any => true,
        }
    }
}

/// An IP network: `10.0.0.0/8`, `fd00::/8`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("not an IP address: `{ip}`"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let n: u8 = p
                    .parse()
                    .map_err(|_| format!("not a prefix length: `{p}`"))?;
                if n > max {
                    return Err(format!("prefix length {n} is more than {max}"));
                }
                n
            }
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let shift = width.saturating_sub(u32::from(prefix));
    if shift >= width {
        return true;
    }
    (a >> shift) == (b >> shift)
}

/// A header condition: present, or present with exactly this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: Option<String>,
}

/// The conditions of a rule; each empty list is no condition, a list
/// matches when any of its entries does, and all conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub identity: Identity,
    pub tenants: Vec<String>,
    pub principals: Vec<PrincipalPattern>,
    /// Upper case.
    pub methods: Vec<String>,
    pub path_prefixes: Vec<String>,
    pub headers: Vec<HeaderMatch>,
    pub source_cidrs: Vec<Cidr>,
}

impl Match {
    pub fn matches(&self, req: &impl Facts) -> bool {
        let identity_ok = match self.identity {
            Identity::Any => true,
            Identity::Authenticated => req.authenticated(),
            Identity::Unauthenticated => !req.authenticated(),
        };
        identity_ok
            && (self.tenants.is_empty()
                || req
                    .tenant()
                    .is_some_and(|t| self.tenants.iter().any(|x| x == t)))
            && (self.principals.is_empty()
                || req
                    .principal()
                    .is_some_and(|p| self.principals.iter().any(|x| x.matches(p))))
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(req.method())))
            && (self.path_prefixes.is_empty() || {
                let path = path_only(req.path());
                self.path_prefixes
                    .iter()
                    .any(|p| path.starts_with(p.as_str()))
            })
            && self.headers.iter().all(|h| match req.header(&h.name) {
                None => false,
                Some(v) => h.value.as_deref().is_none_or(|want| want == v),
            })
            && (self.source_cidrs.is_empty()
                || req
                    .source_ip()
                    .is_some_and(|ip| self.source_cidrs.iter().any(|c| c.contains(ip))))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
    /// `*`: any one segment, not part of the key.
    Any,
    /// `**` (last only): the rest of the path, not part of the key.
    Rest,
}

/// A path template: `/accounts/{account}/transfers`. `{name}` captures one
/// segment into the key, `*` matches one segment, a final `**` the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!("must start with `/` (got `{s}`)"));
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let n = i + 1;
            let last = i + 1 == parts.len();
            let seg = if *part == "**" {
                if !last {
                    return Err(format!("segment {n} (`**`) must be the last one"));
                }
                Segment::Rest
            } else if *part == "*" {
                Segment::Any
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(format!(
                        "segment {n} (`{part}`): a variable name is [A-Za-z0-9_-]+"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("segment {n} (`{part}`): duplicate variable"));
                }
                names.push(name);
                Segment::Capture(name.to_string())
            } else if part.is_empty() || part.contains(['{', '}', '*']) {
                return Err(format!(
                    "segment {n} (`{part}`): a segment is a literal, `{{name}}`, `*` or a final `**`"
                ));
            } else {
                Segment::Literal(part.to_string())
            };
            segments.push(seg);
        }
        Ok(PathTemplate {
            source: s.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Calls `capture(name, value)` for each variable and returns true when
    /// `path` (without query) matches the template.
    pub fn match_path<'p>(&self, path: &'p str, mut capture: impl FnMut(&str, &'p str)) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = if rest.is_empty() {
            None
        } else {
            Some(rest.split('/'))
        };
        for seg in &self.segments {
            if *seg == Segment::Rest {
                return true;
            }
            let Some(part) = parts.as_mut().and_then(|p| p.next()) else {
                return false;
            };
            match seg {
                Segment::Literal(l) => {
                    if l != part {
                        return false;
                    }
                }
                Segment::Capture(name) => {
                    if part.is_empty() {
                        return false;
                    }
                    capture(name, part);
                }
                Segment::Any => {
                    if part.is_empty() {
                        return false;
                    }
                }
                Segment::Rest => return true,
            }
        }
        parts.is_none_or(|mut p| p.next().is_none())
    }
}

/// What a rule counts requests by; all-false is one bucket for the rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpec {
    pub tenant: bool,
    pub principal: bool,
    pub source_ip: bool,
    /// Lower case.
    pub header: Option<String>,
    pub path_template: Option<PathTemplate>,
}

/// One rule of the configuration.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub matches: Match,
    pub key: KeySpec,
    pub limit: Limit,
    pub dry_run: bool,
    /// Also ask the rate limit service (after the local limit admitted).
    pub global: bool,
}

impl Rule {
    /// The identity of the request's bucket under this rule, or `None` when
    /// the rule does not apply. Equal requests give equal fingerprints in
    /// every worker VM (same module, same hasher).
    pub fn fingerprint(&self, req: &impl Facts) -> Option<u64> {
        if !self.matches.matches(req) {
            return None;
        }
        let mut h = KeyHasher::new();
        h.part(b'r', &self.name);
        self.visit_key(req, |tag, _, value| h.part(tag, value))
            .then(|| h.finish())
    }

    /// The rate limit service descriptor for this rule: `("rule", name)`
    /// followed by one entry per key part (Envoy's conventions where it has
    /// one: `remote_address`, the header name, the template's variables).
    pub fn descriptor(&self, req: &impl Facts) -> Option<Vec<(String, String)>> {
        let mut entries = vec![("rule".to_string(), self.name.clone())];
        self.visit_key(req, |_, key, value| {
            entries.push((key.to_string(), value.to_string()))
        })
        .then_some(entries)
    }

    /// Calls `f(tag, descriptor key, value)` for each key part; false when
    /// a part is missing.
    fn visit_key(&self, req: &impl Facts, mut f: impl FnMut(u8, &str, &str)) -> bool {
        let k = &self.key;
        if k.tenant {
            match req.tenant() {
                Some(t) if !t.is_empty() => f(b't', "tenant", t),
                _ => return false,
            }
        }
        if k.principal {
            match req.principal() {
                Some(p) if !p.is_empty() => f(b'p', "principal", p),
                _ => return false,
            }
        }
        if k.source_ip {
            match req.source_ip() {
                Some(ip) => f(b'i', "remote_address", &ip.to_canonical().to_string()),
                None => return false,
            }
        }
        if let Some(name) = &k.header {
            match req.header(name) {
                Some(v) => f(b'h', name, v),
                None => return false,
            }
        }
        if let Some(t) = &k.path_template {
            let mut any = false;
            let ok = t.match_path(path_only(req.path()), |name, value| {
                any = true;
                f(b'v', name, value)
            });
            if !ok {
                return false;
            }
            if !any {
                f(b'v', "path", t.as_str());
            }
        }
        true
    }
}

/// SipHash (std's `DefaultHasher`, fixed keys) over tagged, length-delimited
/// parts, so `("ab","c")` and `("a","bc")` differ. SipHash rather than FNV:
/// a caller must not be able to craft a header value whose key collides with
/// another caller's (a 64-bit second preimage).
pub(crate) struct KeyHasher(std::collections::hash_map::DefaultHasher);

impl KeyHasher {
    pub(crate) fn new() -> Self {
        KeyHasher(std::collections::hash_map::DefaultHasher::new())
    }

    pub(crate) fn part(&mut self, tag: u8, value: &str) {
        self.0.write_u8(tag);
        value.hash(&mut self.0);
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.0.write_usize(value.len());
        self.0.write(value);
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn req<'a>(headers: &'a [(String, String)]) -> Request<'a> {
        Request {
            tenant: Some("bank-a"),
            principal: Some("spiffe://bank.example/ns/bank-a/sa/api"),
            method: "GET",
            path: "/accounts/42/transfers?x=1",
            source_ip: "10.1.2.3".parse().ok(),
            headers,
        }
    }

    fn rule(json: serde_json::Value) -> Rule {
        let mut c = Config::parse(
            serde_json::json!({ "rules": [json] })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        c.rules.remove(0)
    }

    fn with(m: serde_json::Value) -> Rule {
        rule(
            serde_json::json!({"name": "r", "match": m, "limit": {"requests": 1, "per": "second"}}),
        )
    }

    #[test]
    fn match_conditions_table() {
        let hs = vec![("x-channel".to_string(), "api".to_string())];
        let anon = Request {
            tenant: None,
            principal: None,
            ..req(&hs)
        };
        // (label, match, authenticated request matches, anonymous request matches)
        let rows = [
            (
                "no conditions match everything",
                serde_json::json!({}),
                true,
                true,
            ),
            (
                "identity authenticated",
                serde_json::json!({"identity": "authenticated"}),
                true,
                false,
            ),
            (
                "identity unauthenticated",
                serde_json::json!({"identity": "unauthenticated"}),
                false,
                true,
            ),
            (
                "tenant listed",
                serde_json::json!({"tenants": ["bank-b", "bank-a"]}),
                true,
                false,
            ),
            (
                "tenant not listed",
                serde_json::json!({"tenants": ["bank-b"]}),
                false,
                false,
            ),
            (
                "principal prefix",
                serde_json::json!({"principals": ["spiffe://bank.example/ns/bank-a/*"]}),
                true,
                false,
            ),
            (
                "principal suffix",
                serde_json::json!({"principals": ["*/sa/api"]}),
                true,
                false,
            ),
            (
                "principal exact other",
                serde_json::json!({"principals": ["spiffe://bank.example/ns/bank-a/sa/x"]}),
                false,
                false,
            ),
            (
                "method any case",
                serde_json::json!({"methods": ["get"]}),
                true,
                true,
            ),
            (
                "method other",
                serde_json::json!({"methods": ["POST"]}),
                false,
                false,
            ),
            (
                "path prefix ignores query",
                serde_json::json!({"pathPrefixes": ["/accounts/42/transfers"]}),
                true,
                true,
            ),
            (
                "path prefix other",
                serde_json::json!({"pathPrefixes": ["/payments"]}),
                false,
                false,
            ),
            (
                "header present",
                serde_json::json!({"headers": [{"name": "X-Channel"}]}),
                true,
                true,
            ),
            (
                "header value",
                serde_json::json!({"headers": [{"name": "x-channel", "value": "api"}]}),
                true,
                true,
            ),
            (
                "header other value",
                serde_json::json!({"headers": [{"name": "x-channel", "value": "web"}]}),
                false,
                false,
            ),
            (
                "header absent",
                serde_json::json!({"headers": [{"name": "x-other"}]}),
                false,
                false,
            ),
            (
                "source in CIDR",
                serde_json::json!({"sourceCidrs": ["10.0.0.0/8"]}),
                true,
                true,
            ),
            (
                "source outside CIDR",
                serde_json::json!({"sourceCidrs": ["192.168.0.0/16", "fd00::/8"]}),
                false,
                false,
            ),
            (
                "all conditions together",
                serde_json::json!({"identity": "authenticated", "tenants": ["bank-a"], "methods": ["GET"], "sourceCidrs": ["10.1.2.3"]}),
                true,
                false,
            ),
        ];
        for (label, m, want_auth, want_anon) in rows {
            let r = with(m);
            assert_eq!(
                r.matches.matches(&req(&hs)),
                want_auth,
                "{label} (authenticated)"
            );
            assert_eq!(r.matches.matches(&anon), want_anon, "{label} (anonymous)");
        }
    }

    #[test]
    fn cidr_matches_v4_mapped_v6_sources_and_zero_prefix() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(!Cidr::parse("fd00::/8")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn path_templates_table() {
        // (template, path, matches, captures)
        type Row<'a> = (&'a str, &'a str, bool, &'a [(&'a str, &'a str)]);
        let rows: [Row; 9] = [
            (
                "/accounts/{id}/transfers",
                "/accounts/42/transfers",
                true,
                &[("id", "42")],
            ),
            ("/accounts/{id}/transfers", "/accounts/42", false, &[]),
            (
                "/accounts/{id}/transfers",
                "/accounts/42/transfers/x",
                false,
                &[],
            ),
            ("/accounts/{id}", "/accounts//", false, &[]),
            ("/accounts/*/x", "/accounts/1/x", true, &[]),
            (
                "/accounts/{id}/**",
                "/accounts/1/a/b/c",
                true,
                &[("id", "1")],
            ),
            ("/accounts/{id}/**", "/accounts/1", true, &[("id", "1")]),
            ("/", "/", true, &[]),
            ("/{a}/{b}", "/x/y", true, &[("a", "x"), ("b", "y")]),
        ];
        for (t, path, want, caps) in rows {
            let t = PathTemplate::parse(t).unwrap();
            let mut got = Vec::new();
            let m = t.match_path(path, |k, v| got.push((k.to_string(), v.to_string())));
            assert_eq!(m, want, "{} on {path}", t.as_str());
            if want {
                let caps: Vec<(String, String)> = caps
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect();
                assert_eq!(got, caps, "{} on {path}", t.as_str());
            }
        }
        for bad in [
            "accounts",
            "/a/**/b",
            "/a/{}",
            "/a/{x}/{x}",
            "/a//b",
            "/a/b*",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn keys_separate_callers_and_join_same_caller() {
        let hs = vec![("x-api-key".to_string(), "k1".to_string())];
        let hs2 = vec![("x-api-key".to_string(), "k2".to_string())];
        let r = rule(
            serde_json::json!({"name": "per-key", "key": {"tenant": true, "header": "x-api-key"},
            "limit": {"requests": 1, "per": "second"}}),
        );
        let a = r.fingerprint(&req(&hs)).unwrap();
        assert_eq!(
            Some(a),
            r.fingerprint(&Request {
                source_ip: None,
                ..req(&hs)
            })
        );
        assert_ne!(Some(a), r.fingerprint(&req(&hs2)));
        assert_ne!(
            Some(a),
            r.fingerprint(&Request {
                tenant: Some("bank-b"),
                ..req(&hs)
            })
        );
        // Same key values under another rule name are another bucket.
        let r2 = rule(
            serde_json::json!({"name": "other", "key": {"tenant": true, "header": "x-api-key"},
            "limit": {"requests": 1, "per": "second"}}),
        );
        assert_ne!(Some(a), r2.fingerprint(&req(&hs)));
    }

    #[test]
    fn a_missing_key_part_means_the_rule_does_not_apply() {
        let none: Vec<(String, String)> = vec![];
        let anon = Request {
            tenant: None,
            principal: None,
            ..req(&none)
        };
        let by_header = rule(
            serde_json::json!({"name": "h", "key": {"header": "x-api-key"}, "limit": {"requests": 1, "per": "second"}}),
        );
        assert_eq!(by_header.fingerprint(&req(&none)), None);
        let by_tenant = rule(
            serde_json::json!({"name": "t", "key": {"tenant": true}, "limit": {"requests": 1, "per": "second"}}),
        );
        assert_eq!(by_tenant.fingerprint(&anon), None);
        assert!(by_tenant.fingerprint(&req(&none)).is_some());
        let by_ip = rule(
            serde_json::json!({"name": "i", "key": {"sourceIp": true}, "limit": {"requests": 1, "per": "second"}}),
        );
        assert_eq!(
            by_ip.fingerprint(&Request {
                source_ip: None,
                ..anon
            }),
            None
        );
        let by_path = rule(
            serde_json::json!({"name": "p", "key": {"pathTemplate": "/payments/{id}"}, "limit": {"requests": 1, "per": "second"}}),
        );
        assert_eq!(by_path.fingerprint(&req(&none)), None);
    }

    #[test]
    fn descriptor_lists_rule_then_key_parts() {
        let hs = vec![("x-api-key".to_string(), "k1".to_string())];
        let r = rule(serde_json::json!({"name": "per-caller",
            "key": {"tenant": true, "principal": true, "sourceIp": true, "header": "x-api-key", "pathTemplate": "/accounts/{account}/**"},
            "limit": {"requests": 1, "per": "second"}}));
        let d = r.descriptor(&req(&hs)).unwrap();
        let d: Vec<(&str, &str)> = d.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            d,
            vec![
                ("rule", "per-caller"),
                ("tenant", "bank-a"),
                ("principal", "spiffe://bank.example/ns/bank-a/sa/api"),
                ("remote_address", "10.1.2.3"),
                ("x-api-key", "k1"),
                ("account", "42"),
            ]
        );
        let r = rule(
            serde_json::json!({"name": "route", "key": {"pathTemplate": "/accounts/*/transfers"},
            "limit": {"requests": 1, "per": "second"}}),
        );
        assert_eq!(
            r.descriptor(&req(&hs)).unwrap()[1],
            ("path".to_string(), "/accounts/*/transfers".to_string())
        );
    }
}
