//! The `pluginConfig` of the rate limiter: serde types as the user writes
//! them, validated and compiled into [`Config`] once, in `on_configure`.
//!
//! Every error names the path of the offending field
//! (`rules[2].limit.burst: must be at least 1 (got 0)`); see README.md for the
//! reference of each field.

use crate::gcra::{Limit, NANOS_PER_SEC};
use crate::rules::{
    Cidr, HeaderMatch, Identity, KeySpec, Match, PathTemplate, PrincipalPattern, Rule,
};
use meshward_shared::config::{parse_json, ConfigError};
use serde::Deserialize;
use std::collections::HashSet;

/// Default ceiling on the number of keys (slots) kept in shared data.
pub const DEFAULT_MAX_KEYS: u32 = 10_000;
/// The largest slot table a configuration may ask for.
pub const MAX_MAX_KEYS: u32 = 1_000_000;
/// Default timeout of a call to the rate limit service.
pub const DEFAULT_RLS_TIMEOUT_MS: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    /// Decide and record, never reject (every rule).
    #[serde(default)]
    dry_run: bool,
    /// Ceiling on the keys kept in shared data.
    #[serde(default = "default_max_keys")]
    max_keys: u32,
    #[serde(default)]
    headers: RawHeaders,
    #[serde(default)]
    rate_limit_service: Option<RawRls>,
    rules: Vec<RawRule>,
}

fn default_max_keys() -> u32 {
    DEFAULT_MAX_KEYS
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHeaders {
    /// IETF `RateLimit-Policy` / `RateLimit` headers.
    #[serde(default = "yes")]
    ietf: bool,
    /// `x-ratelimit-limit` / `-remaining` / `-reset`.
    #[serde(default)]
    x_rate_limit: bool,
    /// Also add the headers to admitted requests' responses.
    #[serde(default)]
    on_allowed: bool,
}

impl Default for RawHeaders {
    fn default() -> Self {
        RawHeaders {
            ietf: true,
            x_rate_limit: false,
            on_allowed: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRls {
    cluster: String,
    domain: String,
    #[serde(default = "default_rls_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    failure_mode_deny: bool,
}

fn default_rls_timeout() -> u64 {
    DEFAULT_RLS_TIMEOUT_MS
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    matches: RawMatch,
    #[serde(default)]
    key: RawKey,
    limit: RawLimit,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    global: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMatch {
    #[serde(default)]
    identity: Identity,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    path_prefixes: Vec<String>,
    #[serde(default)]
    headers: Vec<RawHeaderMatch>,
    #[serde(default)]
    source_cidrs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHeaderMatch {
    name: String,
    /// Exact value; without it the header only has to be present.
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKey {
    #[serde(default)]
    tenant: bool,
    #[serde(default)]
    principal: bool,
    #[serde(default)]
    source_ip: bool,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    path_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLimit {
    requests: u32,
    per: Unit,
    #[serde(default)]
    burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Unit {
    Second,
    Minute,
    Hour,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
        }
    }
}

/// Which headers go on 429s (and, if asked, on admitted responses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderOptions {
    pub ietf: bool,
    pub x_rate_limit: bool,
    pub on_allowed: bool,
}

/// Envoy's rate limit service, for rules with `global: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsOptions {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    /// `true`: an error or timeout of the service rejects (500);
    /// `false` (Envoy's default): the request goes on.
    pub failure_mode_deny: bool,
}

/// A validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dry_run: bool,
    pub max_keys: u32,
    pub headers: HeaderOptions,
    pub rls: Option<RlsOptions>,
    pub rules: Vec<Rule>,
}

impl Config {
    /// Parses and validates a `pluginConfig` document.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        compile(raw)
    }

    /// Header names (lower case) that rules match on or key by: the only
    /// headers the shell needs to read.
    pub fn needed_headers(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for rule in &self.rules {
            for h in &rule.matches.headers {
                names.push(h.name.clone());
            }
            if let Some(h) = &rule.key.header {
                names.push(h.clone());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Whether any rule asks the rate limit service.
    pub fn has_global_rules(&self) -> bool {
        self.rules.iter().any(|r| r.global)
    }
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(path, reason)
}

fn compile(raw: RawConfig) -> Result<Config, ConfigError> {
    if raw.max_keys == 0 || raw.max_keys > MAX_MAX_KEYS {
        return Err(err(
            "maxKeys",
            format!(
                "must be between 1 and {MAX_MAX_KEYS} (got {})",
                raw.max_keys
            ),
        ));
    }
    let rls = match raw.rate_limit_service {
        None => None,
        Some(r) => Some(compile_rls(r).map_err(|e| e.within("rateLimitService"))?),
    };
    if raw.rules.is_empty() {
        return Err(err("rules", "at least one rule is required"));
    }
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let path = format!("rules[{i}]");
        if !names.insert(r.name.clone()) {
            return Err(err(
                format!("{path}.name"),
                format!("duplicate rule name `{}`", r.name),
            ));
        }
        let rule = compile_rule(r, rls.is_some()).map_err(|e| e.within(&path))?;
        rules.push(rule);
    }
    Ok(Config {
        dry_run: raw.dry_run,
        max_keys: raw.max_keys,
        headers: HeaderOptions {
            ietf: raw.headers.ietf,
            x_rate_limit: raw.headers.x_rate_limit,
            on_allowed: raw.headers.on_allowed,
        },
        rls,
        rules,
    })
}

fn compile_rls(r: RawRls) -> Result<RlsOptions, ConfigError> {
    if r.cluster.trim().is_empty() {
        return Err(err("cluster", "must not be empty"));
    }
    if r.domain.trim().is_empty() {
        return Err(err("domain", "must not be empty"));
    }
    if r.timeout_ms == 0 || r.timeout_ms > 60_000 {
        return Err(err(
            "timeoutMs",
            format!("must be between 1 and 60000 (got {})", r.timeout_ms),
        ));
    }
    Ok(RlsOptions {
        cluster: r.cluster,
        domain: r.domain,
        timeout_ms: r.timeout_ms,
        failure_mode_deny: r.failure_mode_deny,
    })
}

/// Rule names appear in dotted metric names and in structured-field
/// headers, so no dots, quotes or spaces.
fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn compile_rule(r: RawRule, have_rls: bool) -> Result<Rule, ConfigError> {
    if !valid_rule_name(&r.name) {
        return Err(err(
            "name",
            format!(
                "must be 1 to 64 characters of [A-Za-z0-9_-] (got `{}`)",
                r.name
            ),
        ));
    }
    let matches = compile_match(r.matches).map_err(|e| e.within("match"))?;
    let key = compile_key(r.key, matches.identity).map_err(|e| e.within("key"))?;
    let limit = compile_limit(r.limit).map_err(|e| e.within("limit"))?;
    if r.global && !have_rls {
        return Err(err(
            "global",
            "needs `rateLimitService` (cluster and domain) at the top level",
        ));
    }
    Ok(Rule {
        name: r.name,
        matches,
        key,
        limit,
        dry_run: r.dry_run,
        global: r.global,
    })
}

fn compile_limit(l: RawLimit) -> Result<Limit, ConfigError> {
    if l.requests == 0 {
        return Err(err("requests", "must be at least 1 (got 0)"));
    }
    let burst = l.burst.unwrap_or(l.requests);
    if burst == 0 {
        return Err(err("burst", "must be at least 1 (got 0)"));
    }
    Ok(Limit {
        requests: l.requests,
        period_ns: l.per.seconds() * NANOS_PER_SEC,
        burst,
    })
}

/// An HTTP field name (RFC 9110 token), or an HTTP/2 pseudo-header.
fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let body = lower.strip_prefix(':').unwrap_or(&lower);
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(lower)
    } else {
        Err(err(path, format!("not a valid header name: `{name}`")))
    }
}

fn compile_match(m: RawMatch) -> Result<Match, ConfigError> {
    for (i, t) in m.tenants.iter().enumerate() {
        if t.is_empty() {
            return Err(err(format!("tenants[{i}]"), "must not be empty"));
        }
    }
    let mut principals = Vec::with_capacity(m.principals.len());
    for (i, p) in m.principals.iter().enumerate() {
        principals
            .push(PrincipalPattern::parse(p).map_err(|r| err(format!("principals[{i}]"), r))?);
    }
    if m.identity == Identity::Unauthenticated && (!m.tenants.is_empty() || !principals.is_empty())
    {
        return Err(err(
            "identity",
            "`unauthenticated` cannot be combined with `tenants` or `principals`",
        ));
    }
    let mut methods = Vec::with_capacity(m.methods.len());
    for (i, meth) in m.methods.iter().enumerate() {
        if meth.is_empty() || !meth.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(err(
                format!("methods[{i}]"),
                format!("not an HTTP method: `{meth}`"),
            ));
        }
        methods.push(meth.to_ascii_uppercase());
    }
    for (i, p) in m.path_prefixes.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(err(
                format!("pathPrefixes[{i}]"),
                format!("must start with `/` (got `{p}`)"),
            ));
        }
    }
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.into_iter().enumerate() {
        headers.push(HeaderMatch {
            name: header_name(&format!("headers[{i}].name"), &h.name)?,
            value: h.value,
        });
    }
    let mut source_cidrs = Vec::with_capacity(m.source_cidrs.len());
    for (i, c) in m.source_cidrs.iter().enumerate() {
        source_cidrs.push(Cidr::parse(c).map_err(|r| err(format!("sourceCidrs[{i}]"), r))?);
    }
    Ok(Match {
        identity: m.identity,
        tenants: m.tenants,
        principals,
        methods,
        path_prefixes: m.path_prefixes,
        headers,
        source_cidrs,
    })
}

fn compile_key(k: RawKey, identity: Identity) -> Result<KeySpec, ConfigError> {
    if identity == Identity::Unauthenticated {
        if k.tenant {
            return Err(err(
                "tenant",
                "the rule matches only unauthenticated callers, which have no tenant",
            ));
        }
        if k.principal {
            return Err(err(
                "principal",
                "the rule matches only unauthenticated callers, which have no principal",
            ));
        }
    }
    let header = match k.header {
        Some(h) => Some(header_name("header", &h)?),
        None => None,
    };
    let path_template = match k.path_template {
        Some(t) => Some(PathTemplate::parse(&t).map_err(|r| err("pathTemplate", r))?),
        None => None,
    };
    Ok(KeySpec {
        tenant: k.tenant,
        principal: k.principal,
        source_ip: k.source_ip,
        header,
        path_template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes())
    }

    fn one_rule(rule: serde_json::Value) -> serde_json::Value {
        serde_json::json!({ "rules": [rule] })
    }

    #[test]
    fn a_typical_bank_config_compiles() {
        let c = parse(serde_json::json!({
            "maxKeys": 5000,
            "headers": {"xRateLimit": true, "onAllowed": true},
            "rateLimitService": {"cluster": "rls", "domain": "bank", "timeoutMs": 50},
            "rules": [
                {"name": "per-tenant", "match": {"identity": "authenticated"},
                 "key": {"tenant": true}, "limit": {"requests": 1000, "per": "second", "burst": 200}},
                {"name": "per-caller", "match": {"identity": "authenticated", "methods": ["post"],
                   "pathPrefixes": ["/payments"], "headers": [{"name": "X-Channel", "value": "api"}]},
                 "key": {"principal": true, "pathTemplate": "/payments/{kind}"},
                 "limit": {"requests": 60, "per": "minute"}, "global": true},
                {"name": "anonymous", "match": {"identity": "unauthenticated", "sourceCidrs": ["10.0.0.0/8", "::1/128"]},
                 "key": {"sourceIp": true, "header": "x-api-key"}, "limit": {"requests": 10, "per": "hour"}, "dryRun": true}
            ]
        }))
        .unwrap();
        assert_eq!(c.max_keys, 5000);
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.rules[1].limit.burst, 60, "burst defaults to requests");
        assert_eq!(c.rules[1].limit.period_ns, 60 * NANOS_PER_SEC);
        assert_eq!(c.rules[1].matches.methods, vec!["POST"]);
        assert_eq!(c.needed_headers(), vec!["x-api-key", "x-channel"]);
        assert!(c.has_global_rules());
        assert!(c.headers.ietf && c.headers.x_rate_limit && c.headers.on_allowed);
        assert_eq!(c.rls.unwrap().timeout_ms, 50);
    }

    #[test]
    fn each_kind_of_bad_config_is_rejected_with_its_path() {
        let lim = serde_json::json!({"requests": 10, "per": "second"});
        // (label, config, expected "path: reason" prefix)
        let rows: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "no rules key",
                serde_json::json!({}),
                ".: missing field `rules`",
            ),
            (
                "empty rules",
                serde_json::json!({"rules": []}),
                "rules: at least one rule is required",
            ),
            (
                "unknown top-level field",
                serde_json::json!({"rules": [], "rulez": 1}),
                "rulez: unknown field `rulez`",
            ),
            (
                "zero requests",
                one_rule(
                    serde_json::json!({"name": "a", "limit": {"requests": 0, "per": "second"}}),
                ),
                "rules[0].limit.requests: must be at least 1 (got 0)",
            ),
            (
                "zero burst",
                one_rule(
                    serde_json::json!({"name": "a", "limit": {"requests": 5, "per": "second", "burst": 0}}),
                ),
                "rules[0].limit.burst: must be at least 1 (got 0)",
            ),
            (
                "negative requests",
                one_rule(
                    serde_json::json!({"name": "a", "limit": {"requests": -1, "per": "second"}}),
                ),
                "rules[0].limit.requests: invalid value",
            ),
            (
                "unknown unit",
                one_rule(serde_json::json!({"name": "a", "limit": {"requests": 1, "per": "day"}})),
                "rules[0].limit.per: unknown variant `day`",
            ),
            (
                "missing limit",
                one_rule(serde_json::json!({"name": "a"})),
                "rules[0]: missing field `limit`",
            ),
            (
                "bad rule name",
                one_rule(serde_json::json!({"name": "a b", "limit": lim})),
                "rules[0].name: must be 1 to 64 characters",
            ),
            (
                "duplicate rule name",
                serde_json::json!({"rules": [{"name": "a", "limit": lim}, {"name": "a", "limit": lim}]}),
                "rules[1].name: duplicate rule name `a`",
            ),
            (
                "unknown rule field",
                one_rule(serde_json::json!({"name": "a", "limit": lim, "burst": 3})),
                "rules[0].burst: unknown field `burst`",
            ),
            (
                "bad CIDR",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"sourceCidrs": ["10.0.0.0/33"]}}),
                ),
                "rules[0].match.sourceCidrs[0]: prefix length 33 is more than 32",
            ),
            (
                "bad address",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"sourceCidrs": ["ten/8"]}}),
                ),
                "rules[0].match.sourceCidrs[0]: not an IP address: `ten`",
            ),
            (
                "bad method",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"methods": ["GET /"]}}),
                ),
                "rules[0].match.methods[0]: not an HTTP method",
            ),
            (
                "relative path prefix",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"pathPrefixes": ["api"]}}),
                ),
                "rules[0].match.pathPrefixes[0]: must start with `/`",
            ),
            (
                "bad header name",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"headers": [{"name": "x y"}]}}),
                ),
                "rules[0].match.headers[0].name: not a valid header name",
            ),
            (
                "bad principal pattern",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"principals": ["spiffe://*/ns/x"]}}),
                ),
                "rules[0].match.principals[0]: `*` may only start or end a pattern",
            ),
            (
                "unknown identity",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"identity": "anyone"}}),
                ),
                "rules[0].match.identity: unknown variant `anyone`",
            ),
            (
                "unauthenticated with tenants",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"identity": "unauthenticated", "tenants": ["bank-a"]}}),
                ),
                "rules[0].match.identity: `unauthenticated` cannot be combined",
            ),
            (
                "unauthenticated keyed by tenant",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "match": {"identity": "unauthenticated"}, "key": {"tenant": true}}),
                ),
                "rules[0].key.tenant: the rule matches only unauthenticated callers",
            ),
            (
                "bad key header",
                one_rule(serde_json::json!({"name": "a", "limit": lim, "key": {"header": ""}})),
                "rules[0].key.header: not a valid header name",
            ),
            (
                "bad path template",
                one_rule(
                    serde_json::json!({"name": "a", "limit": lim, "key": {"pathTemplate": "/a/{x/b"}}),
                ),
                "rules[0].key.pathTemplate: segment 2 (`{x`)",
            ),
            (
                "global without service",
                one_rule(serde_json::json!({"name": "a", "limit": lim, "global": true})),
                "rules[0].global: needs `rateLimitService`",
            ),
            (
                "zero maxKeys",
                serde_json::json!({"maxKeys": 0, "rules": [{"name": "a", "limit": lim}]}),
                "maxKeys: must be between 1 and 1000000 (got 0)",
            ),
            (
                "service without cluster",
                serde_json::json!({"rateLimitService": {"cluster": "", "domain": "d"}, "rules": [{"name": "a", "limit": lim}]}),
                "rateLimitService.cluster: must not be empty",
            ),
            (
                "service timeout zero",
                serde_json::json!({"rateLimitService": {"cluster": "c", "domain": "d", "timeoutMs": 0}, "rules": [{"name": "a", "limit": lim}]}),
                "rateLimitService.timeoutMs: must be between 1 and 60000 (got 0)",
            ),
            (
                "unknown headers option",
                serde_json::json!({"headers": {"draft": true}, "rules": [{"name": "a", "limit": lim}]}),
                "headers.draft: unknown field `draft`",
            ),
        ];
        for (label, cfg, want) in rows {
            let got = parse(cfg).map(|_| ()).unwrap_err().to_string();
            assert!(
                got.starts_with(want),
                "{label}: got `{got}`, want prefix `{want}`"
            );
        }
    }

    #[test]
    fn invalid_json_is_rejected() {
        assert!(Config::parse(b"{rules").is_err());
        assert!(Config::parse(b"").is_err(), "an empty config has no rules");
    }
}
