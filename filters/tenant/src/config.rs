//! The tenant filter's `pluginConfig`: serde types (camelCase, unknown fields
//! rejected) and their validation into a compiled [`Settings`].
//!
//! Everything is checked here, once, in `on_configure`: SPIFFE IDs, trust
//! domains, principal / namespace / path patterns, methods, rule names. The
//! request path only runs the compiled matchers.

use crate::path::PathPattern;
use crate::policy::{Action, Policy, Rule, Source};
use meshward_shared::config::{parse_json, ConfigError};
use meshward_shared::principal::{NamespacePattern, PrincipalPattern, TrustDomains};
use meshward_shared::spiffe::SpiffeId;
use serde::Deserialize;

/// Default bound of the per-connection identity cache.
pub const DEFAULT_IDENTITY_CACHE_SIZE: usize = 1024;
/// Upper bound accepted for `identityCacheSize`.
pub const MAX_IDENTITY_CACHE_SIZE: usize = 65_536;
/// Most tenants accepted (each adds metric series).
pub const MAX_TENANTS: usize = 64;
/// Most rules accepted.
pub const MAX_RULES: usize = 256;

/// Enforce (deny with 403) or dry-run (decide, record, count, let through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default = "default_trust_domain")]
    trust_domain: String,
    #[serde(default)]
    trust_domain_aliases: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default = "default_shared_tenants")]
    shared_tenants: Vec<String>,
    #[serde(default)]
    shared_access: Option<RawSource>,
    #[serde(default)]
    destination_tenant: Option<String>,
    #[serde(default = "default_true")]
    allow_same_tenant: bool,
    #[serde(default)]
    trusted_forwarders: Vec<String>,
    #[serde(default)]
    public_paths: Vec<String>,
    #[serde(default = "default_strip_headers")]
    strip_headers: Vec<String>,
    #[serde(default = "default_cache_size")]
    identity_cache_size: usize,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    name: String,
    action: RawAction,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    from: Option<RawSource>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
enum RawAction {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
}

fn default_trust_domain() -> String {
    "cluster.local".to_string()
}
fn default_shared_tenants() -> Vec<String> {
    vec!["shared".to_string()]
}
fn default_true() -> bool {
    true
}
fn default_strip_headers() -> Vec<String> {
    vec!["x-meshward-*".to_string()]
}
fn default_cache_size() -> usize {
    DEFAULT_IDENTITY_CACHE_SIZE
}

/// A header-name pattern of `stripHeaders`: exact or `prefix*`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPattern {
    Exact(String),
    Prefix(String),
}

impl HeaderPattern {
    /// Matches a header name, ignoring ASCII case (the pattern is lowercase).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HeaderPattern::Exact(e) => name.eq_ignore_ascii_case(e),
            HeaderPattern::Prefix(p) => name
                .as_bytes()
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
        }
    }
}

/// The validated, compiled configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// The destination tenant from config; `None` means "from node metadata".
    pub destination_tenant: Option<String>,
    pub trusted_forwarders: Vec<SpiffeId>,
    pub strip_headers: Vec<HeaderPattern>,
    pub identity_cache_size: usize,
    /// Tenants known for metrics; others are counted as `other`.
    pub tenants: Vec<String>,
    pub policy: Policy,
}

impl Settings {
    /// Parses and validates a `pluginConfig` document.
    pub fn parse(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        compile(raw)
    }

    /// Whether a SPIFFE ID is a trusted XFCC forwarder.
    pub fn is_trusted_forwarder(&self, id: &SpiffeId) -> bool {
        self.trusted_forwarders.iter().any(|f| f == id)
    }
}

/// Validates a namespace / tenant name: a SPIFFE path segment (and so a
/// Kubernetes namespace name is always accepted).
pub fn validate_tenant_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("tenant name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a tenant name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!(
            "`{name}`: tenant names are limited to letters, digits, `.`, `-` and `_`"
        ));
    }
    Ok(())
}

fn compile(raw: RawConfig) -> Result<Settings, ConfigError> {
    let aliases: Vec<&str> = raw
        .trust_domain_aliases
        .iter()
        .map(String::as_str)
        .collect();
    let trust_domains = match TrustDomains::new(&raw.trust_domain, &[]) {
        Err(e) => return Err(ConfigError::new("trustDomain", e.to_string())),
        Ok(_) => TrustDomains::new(&raw.trust_domain, &aliases).map_err(|e| {
            let index = raw
                .trust_domain_aliases
                .iter()
                .position(|a| TrustDomains::new(a, &[]).is_err())
                .unwrap_or(0);
            ConfigError::new(format!("trustDomainAliases[{index}]"), e.to_string())
        })?,
    };

    if raw.tenants.len() > MAX_TENANTS {
        return Err(ConfigError::new(
            "tenants",
            format!("at most {MAX_TENANTS} tenants (got {})", raw.tenants.len()),
        ));
    }
    for (i, t) in raw.tenants.iter().enumerate() {
        validate_tenant_name(t).map_err(|e| ConfigError::new(format!("tenants[{i}]"), e))?;
        if raw
            .tenants
            .get(..i)
            .is_some_and(|before| before.contains(t))
        {
            return Err(ConfigError::new(
                format!("tenants[{i}]"),
                format!("`{t}` is listed twice"),
            ));
        }
    }
    for (i, t) in raw.shared_tenants.iter().enumerate() {
        validate_tenant_name(t).map_err(|e| ConfigError::new(format!("sharedTenants[{i}]"), e))?;
    }
    if let Some(t) = &raw.destination_tenant {
        validate_tenant_name(t).map_err(|e| ConfigError::new("destinationTenant", e))?;
    }

    let shared_access = raw
        .shared_access
        .map(|s| {
            let source = compile_source(s).map_err(|e| e.within("sharedAccess"))?;
            if source.is_empty() {
                return Err(ConfigError::new(
                    "sharedAccess",
                    "name at least one principal or namespace (omit sharedAccess to admit any authenticated caller)",
                ));
            }
            Ok(source)
        })
        .transpose()?;

    let mut trusted_forwarders = Vec::with_capacity(raw.trusted_forwarders.len());
    for (i, f) in raw.trusted_forwarders.iter().enumerate() {
        let id = SpiffeId::parse(f)
            .map_err(|e| ConfigError::new(format!("trustedForwarders[{i}]"), e.to_string()))?;
        trusted_forwarders.push(id);
    }

    let mut public_paths = Vec::with_capacity(raw.public_paths.len());
    for (i, p) in raw.public_paths.iter().enumerate() {
        let pattern = PathPattern::parse(p)
            .map_err(|e| ConfigError::new(format!("publicPaths[{i}]"), format!("`{p}`: {e}")))?;
        public_paths.push(pattern);
    }

    let mut strip_headers = Vec::with_capacity(raw.strip_headers.len());
    for (i, h) in raw.strip_headers.iter().enumerate() {
        strip_headers.push(
            compile_header_pattern(h)
                .map_err(|e| ConfigError::new(format!("stripHeaders[{i}]"), e))?,
        );
    }

    if raw.identity_cache_size == 0 || raw.identity_cache_size > MAX_IDENTITY_CACHE_SIZE {
        return Err(ConfigError::new(
            "identityCacheSize",
            format!(
                "must be between 1 and {MAX_IDENTITY_CACHE_SIZE} (got {})",
                raw.identity_cache_size
            ),
        ));
    }

    if raw.rules.len() > MAX_RULES {
        return Err(ConfigError::new(
            "rules",
            format!("at most {MAX_RULES} rules (got {})", raw.rules.len()),
        ));
    }
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (i, r) in raw.rules.into_iter().enumerate() {
        let path = format!("rules[{i}]");
        let rule = compile_rule(r).map_err(|e| e.within(&path))?;
        if rules.iter().any(|other: &Rule| other.name == rule.name) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("`{}` is used by an earlier rule", rule.name),
            ));
        }
        rules.push(rule);
    }

    Ok(Settings {
        mode: raw.mode,
        destination_tenant: raw.destination_tenant,
        trusted_forwarders,
        strip_headers,
        identity_cache_size: raw.identity_cache_size,
        tenants: raw.tenants,
        policy: Policy {
            trust_domains,
            allow_same_tenant: raw.allow_same_tenant,
            shared_tenants: raw.shared_tenants,
            shared_access,
            public_paths,
            rules,
        },
    })
}

fn compile_header_pattern(h: &str) -> Result<HeaderPattern, String> {
    let lower = h.to_ascii_lowercase();
    let (literal, prefix) = match lower.strip_suffix('*') {
        Some(p) => (p.to_string(), true),
        None => (lower, false),
    };
    if literal.is_empty() {
        return Err("a header pattern must name at least one character".into());
    }
    if literal.starts_with(':') {
        return Err(format!("`{h}`: pseudo-headers cannot be stripped"));
    }
    if !literal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b))
    {
        return Err(format!(
            "`{h}`: not a header name (a `*` is allowed only at the end)"
        ));
    }
    Ok(if prefix {
        HeaderPattern::Prefix(literal)
    } else {
        HeaderPattern::Exact(literal)
    })
}

fn compile_source(raw: RawSource) -> Result<Source, ConfigError> {
    let mut source = Source::default();
    for (i, p) in raw.principals.iter().enumerate() {
        source
            .principals
            .push(PrincipalPattern::parse(p).map_err(|e| {
                ConfigError::new(format!("principals[{i}]"), format!("`{p}`: {e}"))
            })?);
    }
    for (i, n) in raw.namespaces.iter().enumerate() {
        source
            .namespaces
            .push(NamespacePattern::parse(n).map_err(|e| {
                ConfigError::new(format!("namespaces[{i}]"), format!("`{n}`: {e}"))
            })?);
    }
    Ok(source)
}

fn compile_rule(raw: RawRule) -> Result<Rule, ConfigError> {
    if raw.name.is_empty()
        || raw.name.len() > 64
        || !raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ConfigError::new(
            "name",
            "1 to 64 characters of letters, digits, `-`, `_` or `.`",
        ));
    }
    let action = match raw.action {
        RawAction::Allow => Action::Allow,
        RawAction::Deny => Action::Deny,
    };
    let mut to = Vec::with_capacity(raw.to.len());
    for (i, t) in raw.to.iter().enumerate() {
        to.push(
            NamespacePattern::parse(t)
                .map_err(|e| ConfigError::new(format!("to[{i}]"), format!("`{t}`: {e}")))?,
        );
    }
    let from = match raw.from {
        Some(s) => Some(compile_source(s).map_err(|e| e.within("from"))?),
        None => None,
    };
    if action == Action::Allow && from.as_ref().is_none_or(Source::is_empty) {
        return Err(ConfigError::new(
            "from",
            "an ALLOW rule must name source principals or namespaces",
        ));
    }
    let mut methods = Vec::with_capacity(raw.methods.len());
    for (i, m) in raw.methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ConfigError::new(
                format!("methods[{i}]"),
                format!("`{m}`: an HTTP method in upper case, e.g. GET"),
            ));
        }
        methods.push(m.clone());
    }
    let mut paths = Vec::with_capacity(raw.paths.len());
    for (i, p) in raw.paths.iter().enumerate() {
        paths.push(
            PathPattern::parse(p)
                .map_err(|e| ConfigError::new(format!("paths[{i}]"), format!("`{p}`: {e}")))?,
        );
    }
    Ok(Rule {
        name: raw.name,
        action,
        to,
        from,
        methods,
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        match Settings::parse(json.as_bytes()) {
            Err(e) => e,
            Ok(_) => panic!("accepted: {json}"),
        }
    }

    #[test]
    fn empty_config_uses_the_documented_defaults() {
        let s = Settings::parse(b"").unwrap();
        assert_eq!(s.mode, Mode::Enforce);
        assert_eq!(s.policy.trust_domains.primary(), "cluster.local");
        assert_eq!(s.policy.shared_tenants, vec!["shared".to_string()]);
        assert!(s.policy.allow_same_tenant);
        assert_eq!(
            s.strip_headers,
            vec![HeaderPattern::Prefix("x-meshward-".into())]
        );
        assert_eq!(s.identity_cache_size, DEFAULT_IDENTITY_CACHE_SIZE);
        assert_eq!(s.destination_tenant, None);
    }

    #[test]
    fn a_full_bank_mesh_config_is_accepted() {
        let s = Settings::parse(
            br#"{
              "mode": "dryRun",
              "trustDomain": "cluster.local",
              "trustDomainAliases": ["old.local"],
              "tenants": ["bank-a", "bank-b", "shared"],
              "sharedTenants": ["shared"],
              "sharedAccess": {"namespaces": ["bank-*"]},
              "destinationTenant": "bank-a",
              "allowSameTenant": true,
              "trustedForwarders": ["spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"],
              "publicPaths": ["/healthz", "/ready*"],
              "stripHeaders": ["x-meshward-*", "X-Tenant"],
              "identityCacheSize": 16,
              "rules": [
                {"name": "gw-to-api", "action": "ALLOW", "to": ["bank-a", "bank-b"],
                 "from": {"principals": ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]}},
                {"name": "b-reads-a-rates", "action": "ALLOW", "to": ["bank-a"],
                 "from": {"namespaces": ["bank-b"]}, "methods": ["GET"], "paths": ["/rates/{**}"]},
                {"name": "no-admin", "action": "DENY", "paths": ["/admin/*"]}
              ]
            }"#,
        )
        .unwrap();
        assert_eq!(s.mode, Mode::DryRun);
        assert_eq!(s.policy.rules.len(), 3);
        assert_eq!(s.strip_headers[1], HeaderPattern::Exact("x-tenant".into()));
        assert_eq!(s.destination_tenant.as_deref(), Some("bank-a"));
    }

    #[test]
    fn bad_configs_are_rejected_with_path_and_reason() {
        let rows: &[(&str, &str, &str)] = &[
            (r#"{"modes": "enforce"}"#, "modes", "unknown field `modes`"),
            (r#"{"mode": "audit"}"#, "mode", "unknown variant `audit`"),
            (
                r#"{"trustDomain": "Cluster.local"}"#,
                "trustDomain",
                "trust_domain_char",
            ),
            (
                r#"{"trustDomainAliases": ["ok.local", "bad:1"]}"#,
                "trustDomainAliases[1]",
                "port",
            ),
            (r#"{"tenants": ["bank/a"]}"#, "tenants[0]", "limited to"),
            (r#"{"tenants": ["a", "a"]}"#, "tenants[1]", "twice"),
            (r#"{"destinationTenant": ""}"#, "destinationTenant", "empty"),
            (
                r#"{"trustedForwarders": ["spiffe://cluster.local/ns/../sa/gw"]}"#,
                "trustedForwarders[0]",
                "dot_segment",
            ),
            (
                r#"{"trustedForwarders": ["cluster.local/ns/a/sa/gw"]}"#,
                "trustedForwarders[0]",
                "wrong_scheme",
            ),
            (r#"{"publicPaths": ["/a*b"]}"#, "publicPaths[0]", "`*`"),
            (
                r#"{"publicPaths": ["/healthz/../x"]}"#,
                "publicPaths[0]",
                "canonical",
            ),
            (
                r#"{"stripHeaders": ["*"]}"#,
                "stripHeaders[0]",
                "at least one",
            ),
            (
                r#"{"stripHeaders": ["x-a*b"]}"#,
                "stripHeaders[0]",
                "not a header name",
            ),
            (
                r#"{"stripHeaders": [":path"]}"#,
                "stripHeaders[0]",
                "pseudo",
            ),
            (
                r#"{"identityCacheSize": 0}"#,
                "identityCacheSize",
                "between 1",
            ),
            (r#"{"sharedAccess": {}}"#, "sharedAccess", "at least one"),
            (
                r#"{"sharedAccess": {"principals": ["a*b*"]}}"#,
                "sharedAccess.principals[0]",
                "`*`",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "ALLOW"}]}"#,
                "rules[0].from",
                "must name",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "ALLOW", "from": {}}]}"#,
                "rules[0].from",
                "must name",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "allow", "from": {"namespaces": ["a"]}}]}"#,
                "rules[0].action",
                "unknown variant",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "CUSTOM"}]}"#,
                "rules[0].action",
                "unknown variant",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY", "form": {}}]}"#,
                "rules[0].form",
                "unknown field `form`",
            ),
            (
                r#"{"rules": [{"name": "", "action": "DENY"}]}"#,
                "rules[0].name",
                "1 to 64",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY"}, {"name": "r", "action": "DENY"}]}"#,
                "rules[1].name",
                "earlier rule",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY", "from": {"principals": ["Cluster.local/ns/a/sa/b"]}}]}"#,
                "rules[0].from.principals[0]",
                "trust_domain_char",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY", "from": {"namespaces": ["a*b"]}}]}"#,
                "rules[0].from.namespaces[0]",
                "`*`",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY", "methods": ["get"]}]}"#,
                "rules[0].methods[0]",
                "upper case",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY", "paths": ["/a/{**}/b"]}]}"#,
                "rules[0].paths[0]",
                "last",
            ),
            (
                r#"{"rules": [{"name": "r", "action": "DENY", "to": ["bank a"]}]}"#,
                "rules[0].to[0]",
                "namespace",
            ),
        ];
        for (json, path, reason) in rows {
            let e = err(json);
            assert_eq!(e.path, *path, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
    }

    #[test]
    fn header_patterns_match_lowercase_names() {
        let p = compile_header_pattern("X-Meshward-*").unwrap();
        assert!(p.matches("x-meshward-tenant"));
        assert!(p.matches("X-MESHWARD-Tenant"));
        assert!(!p.matches("x-meshward"));
        assert!(!p.matches("x-other"));
    }
}
