//! The authorization policy: who may call this workload's tenant.
//!
//! Evaluation order (Istio's CUSTOM → DENY → ALLOW, plus the tenant defaults):
//!
//! 1. DENY rules, in order: the first that matches denies (`deny_rule`).
//! 2. A public path (`publicPaths`) is allowed for anyone, even without identity.
//! 3. No identity denies (`unauthenticated`), as does a rejected certificate
//!    (`invalid_svid`) or a malformed forwarded identity (`invalid_xfcc`).
//! 4. A trust domain that is neither the configured one nor an alias denies
//!    (`unknown_trust_domain`).
//! 5. A caller of the destination's own tenant is allowed (`same_tenant`),
//!    unless `allowSameTenant` is false.
//! 6. ALLOW rules, in order: the first that matches allows (`allow_rule`).
//! 7. A `shared` destination admits any authenticated caller
//!    (`shared_authenticated`), or only `sharedAccess` when that narrows it
//!    (`shared_not_allowed` otherwise).
//! 8. Everything else is a cross-tenant call and is denied (`cross_tenant`).

use crate::path::PathPattern;
use meshward_shared::principal::{NamespacePattern, PrincipalPattern, TrustDomains};
use meshward_shared::spiffe::SpiffeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// A rule's `from`: every listed field must match; within a field, any entry.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub principals: Vec<PrincipalPattern>,
    pub namespaces: Vec<NamespacePattern>,
}

impl Source {
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty() && self.namespaces.is_empty()
    }

    /// An empty source matches anyone; a non-empty one needs an identity.
    fn matches(&self, caller: Option<&SpiffeId>, tds: &TrustDomains) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(id) = caller else {
            return false;
        };
        (self.principals.is_empty() || self.principals.iter().any(|p| p.matches(id, tds)))
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n.matches(id)))
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    /// Destination tenants the rule applies to; empty = all.
    pub to: Vec<NamespacePattern>,
    pub from: Option<Source>,
    /// Upper-case methods; empty = all.
    pub methods: Vec<String>,
    /// Path patterns; empty = all.
    pub paths: Vec<PathPattern>,
}

impl Rule {
    fn matches(&self, req: &Request<'_>, tds: &TrustDomains) -> bool {
        (self.to.is_empty()
            || self
                .to
                .iter()
                .any(|t| t.matches_name(req.destination_tenant)))
            && self
                .from
                .as_ref()
                .is_none_or(|f| f.matches(req.caller.id(), tds))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == req.method))
            && (self.paths.is_empty()
                || match req.path {
                    Some(path) => self.paths.iter().any(|p| p.matches(path)),
                    // An ambiguous path satisfies a DENY, never an ALLOW.
                    None => self.action == Action::Deny,
                })
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub trust_domains: TrustDomains,
    pub allow_same_tenant: bool,
    pub shared_tenants: Vec<String>,
    /// Narrows who may call a shared tenant; `None` = any authenticated caller.
    pub shared_access: Option<Source>,
    pub public_paths: Vec<PathPattern>,
    pub rules: Vec<Rule>,
}

/// Who is calling, as far as the identity step could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller<'a> {
    /// Plaintext, or mTLS without a client certificate.
    Anonymous,
    /// A certificate or forwarded identity was presented but rejected.
    Rejected(Reason),
    Authenticated(&'a SpiffeId),
}

impl<'a> Caller<'a> {
    pub fn id(&self) -> Option<&'a SpiffeId> {
        match self {
            Caller::Authenticated(id) => Some(id),
            _ => None,
        }
    }
}

/// The request facts the policy looks at.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub caller: Caller<'a>,
    pub destination_tenant: &'a str,
    pub method: &'a str,
    /// The canonical path ([`crate::path::canonical`]); `None` when ambiguous.
    pub path: Option<&'a str>,
}

/// Why a request was allowed or denied: a small fixed set, so it can be a
/// metric name segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    SameTenant,
    AllowRule,
    SharedAuthenticated,
    PublicPath,
    DenyRule,
    Unauthenticated,
    InvalidSvid,
    InvalidXfcc,
    UnknownTrustDomain,
    SharedNotAllowed,
    CrossTenant,
}

impl Reason {
    /// Every reason a request can be denied for (metric bounds).
    pub const DENIALS: [Reason; 7] = [
        Reason::DenyRule,
        Reason::Unauthenticated,
        Reason::InvalidSvid,
        Reason::InvalidXfcc,
        Reason::UnknownTrustDomain,
        Reason::SharedNotAllowed,
        Reason::CrossTenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SameTenant => "same_tenant",
            Reason::AllowRule => "allow_rule",
            Reason::SharedAuthenticated => "shared_authenticated",
            Reason::PublicPath => "public_path",
            Reason::DenyRule => "deny_rule",
            Reason::Unauthenticated => "unauthenticated",
            Reason::InvalidSvid => "invalid_svid",
            Reason::InvalidXfcc => "invalid_xfcc",
            Reason::UnknownTrustDomain => "unknown_trust_domain",
            Reason::SharedNotAllowed => "shared_not_allowed",
            Reason::CrossTenant => "cross_tenant",
        }
    }
}

/// The policy's answer: allow or deny, the rule that decided, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<'p> {
    pub allow: bool,
    /// A configured rule's name, or a built-in step `builtin:<step>`.
    pub rule: &'p str,
    pub reason: Reason,
}

impl Policy {
    pub fn evaluate<'p>(&'p self, req: &Request<'_>) -> Verdict<'p> {
        let tds = &self.trust_domains;
        let verdict = |allow, rule, reason| Verdict {
            allow,
            rule,
            reason,
        };

        if let Some(rule) = self
            .rules
            .iter()
            .filter(|r| r.action == Action::Deny)
            .find(|r| r.matches(req, tds))
        {
            return verdict(false, &rule.name, Reason::DenyRule);
        }

        if let Some(path) = req.path {
            if self.public_paths.iter().any(|p| p.matches(path)) {
                return verdict(true, "builtin:public_paths", Reason::PublicPath);
            }
        }

        let id = match &req.caller {
            Caller::Anonymous => {
                return verdict(false, "builtin:authentication", Reason::Unauthenticated)
            }
            Caller::Rejected(reason) => return verdict(false, "builtin:authentication", *reason),
            Caller::Authenticated(id) => *id,
        };

        if !tds.contains(id.trust_domain()) {
            return verdict(false, "builtin:trust_domain", Reason::UnknownTrustDomain);
        }

        if self.allow_same_tenant && id.namespace() == Some(req.destination_tenant) {
            return verdict(true, "builtin:same_tenant", Reason::SameTenant);
        }

        if let Some(rule) = self
            .rules
            .iter()
            .filter(|r| r.action == Action::Allow)
            .find(|r| r.matches(req, tds))
        {
            return verdict(true, &rule.name, Reason::AllowRule);
        }

        if self
            .shared_tenants
            .iter()
            .any(|t| t == req.destination_tenant)
        {
            return match &self.shared_access {
                None => verdict(true, "builtin:shared_access", Reason::SharedAuthenticated),
                Some(source) if source.matches(Some(id), tds) => {
                    verdict(true, "builtin:shared_access", Reason::SharedAuthenticated)
                }
                Some(_) => verdict(false, "builtin:shared_access", Reason::SharedNotAllowed),
            };
        }

        verdict(false, "builtin:default_deny", Reason::CrossTenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const CONFIG: &str = r#"{
      "trustDomain": "cluster.local",
      "trustDomainAliases": ["old.local"],
      "tenants": ["bank-a", "bank-b", "shared"],
      "publicPaths": ["/healthz"],
      "rules": [
        {"name": "gw-to-api", "action": "ALLOW", "to": ["bank-a", "bank-b"],
         "from": {"principals": ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]}},
        {"name": "b-reads-a-rates", "action": "ALLOW", "to": ["bank-a"],
         "from": {"namespaces": ["bank-b"]}, "methods": ["GET"], "paths": ["/rates/{**}"]},
        {"name": "no-admin", "action": "DENY", "paths": ["/admin/*"]},
        {"name": "block-b-batch", "action": "DENY", "to": ["shared"],
         "from": {"principals": ["cluster.local/ns/bank-b/sa/batch"]}}
      ]
    }"#;

    fn policy(json: &str) -> Policy {
        Settings::parse(json.as_bytes()).unwrap().policy
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn eval<'p>(
        p: &'p Policy,
        caller: Option<&SpiffeId>,
        dest: &str,
        method: &str,
        path: &str,
    ) -> Verdict<'p> {
        let canonical = crate::path::canonical(path);
        p.evaluate(&Request {
            caller: caller.map_or(Caller::Anonymous, Caller::Authenticated),
            destination_tenant: dest,
            method,
            path: canonical.as_deref(),
        })
    }

    #[test]
    fn decision_paths_follow_the_documented_order() {
        let p = policy(CONFIG);
        let a_api = id("spiffe://cluster.local/ns/bank-a/sa/api");
        let b_api = id("spiffe://cluster.local/ns/bank-b/sa/api");
        let b_batch = id("spiffe://cluster.local/ns/bank-b/sa/batch");
        let a_old = id("spiffe://old.local/ns/bank-a/sa/api");
        let gw =
            id("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account");
        let stranger = id("spiffe://evil.example/ns/bank-a/sa/api");
        // (label, caller, destination, method, path, allowed, rule, reason)
        type Row<'a> = (
            &'a str,
            Option<&'a SpiffeId>,
            &'a str,
            &'a str,
            &'a str,
            bool,
            &'a str,
            Reason,
        );
        let rows: Vec<Row> = vec![
            (
                "same tenant",
                Some(&a_api),
                "bank-a",
                "GET",
                "/accounts",
                true,
                "builtin:same_tenant",
                Reason::SameTenant,
            ),
            (
                "same tenant via alias trust domain",
                Some(&a_old),
                "bank-a",
                "GET",
                "/x",
                true,
                "builtin:same_tenant",
                Reason::SameTenant,
            ),
            (
                "cross tenant",
                Some(&b_api),
                "bank-a",
                "GET",
                "/accounts",
                false,
                "builtin:default_deny",
                Reason::CrossTenant,
            ),
            (
                "cross tenant allowed by rule",
                Some(&b_api),
                "bank-a",
                "GET",
                "/rates/eur",
                true,
                "b-reads-a-rates",
                Reason::AllowRule,
            ),
            (
                "allow rule's method does not match",
                Some(&b_api),
                "bank-a",
                "POST",
                "/rates/eur",
                false,
                "builtin:default_deny",
                Reason::CrossTenant,
            ),
            (
                "allow rule's path does not match",
                Some(&b_api),
                "bank-a",
                "GET",
                "/accounts",
                false,
                "builtin:default_deny",
                Reason::CrossTenant,
            ),
            (
                "allow rule does not apply to other tenants",
                Some(&a_api),
                "bank-b",
                "GET",
                "/rates/eur",
                false,
                "builtin:default_deny",
                Reason::CrossTenant,
            ),
            (
                "gateway allowed by principal",
                Some(&gw),
                "bank-b",
                "GET",
                "/",
                true,
                "gw-to-api",
                Reason::AllowRule,
            ),
            (
                "shared accepts authenticated",
                Some(&b_api),
                "shared",
                "POST",
                "/logs",
                true,
                "builtin:shared_access",
                Reason::SharedAuthenticated,
            ),
            (
                "deny rule beats shared default",
                Some(&b_batch),
                "shared",
                "POST",
                "/logs",
                false,
                "block-b-batch",
                Reason::DenyRule,
            ),
            (
                "deny rule beats same tenant",
                Some(&a_api),
                "bank-a",
                "GET",
                "/admin/users",
                false,
                "no-admin",
                Reason::DenyRule,
            ),
            (
                "unauthenticated",
                None,
                "bank-a",
                "GET",
                "/accounts",
                false,
                "builtin:authentication",
                Reason::Unauthenticated,
            ),
            (
                "unauthenticated on shared",
                None,
                "shared",
                "GET",
                "/logs",
                false,
                "builtin:authentication",
                Reason::Unauthenticated,
            ),
            (
                "public path without identity",
                None,
                "bank-a",
                "GET",
                "/healthz",
                true,
                "builtin:public_paths",
                Reason::PublicPath,
            ),
            (
                "public path with a query",
                None,
                "bank-a",
                "GET",
                "/healthz?full=1",
                true,
                "builtin:public_paths",
                Reason::PublicPath,
            ),
            (
                "dot segments cannot reach past a public path",
                None,
                "bank-a",
                "GET",
                "/healthz/../accounts",
                false,
                "builtin:authentication",
                Reason::Unauthenticated,
            ),
            (
                "unknown trust domain",
                Some(&stranger),
                "bank-a",
                "GET",
                "/accounts",
                false,
                "builtin:trust_domain",
                Reason::UnknownTrustDomain,
            ),
            (
                "unknown trust domain on shared",
                Some(&stranger),
                "shared",
                "GET",
                "/",
                false,
                "builtin:trust_domain",
                Reason::UnknownTrustDomain,
            ),
        ];
        for (label, caller, dest, method, path, allow, rule, reason) in rows {
            let v = eval(&p, caller, dest, method, path);
            assert_eq!(
                (v.allow, v.rule, v.reason),
                (allow, rule, reason),
                "{label}"
            );
        }
    }

    #[test]
    fn an_ambiguous_path_satisfies_deny_rules_but_not_allow_rules() {
        let p = policy(CONFIG);
        let b_api = id("spiffe://cluster.local/ns/bank-b/sa/api");
        let a_api = id("spiffe://cluster.local/ns/bank-a/sa/api");
        // It might be /admin/… to the upstream: the path-conditioned DENY wins.
        let v = eval(&p, Some(&a_api), "bank-a", "GET", "/x%2f..%2fadmin");
        assert_eq!((v.allow, v.rule), (false, "no-admin"));
        let v = eval(&p, Some(&b_api), "bank-a", "GET", "/rates/a%2fb");
        assert_eq!((v.allow, v.rule), (false, "no-admin"));
        // Without such a DENY rule, the ALLOW rule's path condition still fails.
        let no_deny = policy(
            r#"{"publicPaths": ["/healthz"], "rules": [{"name": "b-reads-a-rates", "action": "ALLOW",
                "from": {"namespaces": ["bank-b"]}, "paths": ["/rates/{**}"]}]}"#,
        );
        let v = eval(&no_deny, Some(&b_api), "bank-a", "GET", "/rates/a%2fb");
        assert_eq!((v.allow, v.reason), (false, Reason::CrossTenant));
        let v = eval(&no_deny, None, "bank-a", "GET", "/healthz%2f");
        assert_eq!((v.allow, v.reason), (false, Reason::Unauthenticated));
        assert!(eval(&no_deny, Some(&b_api), "bank-a", "GET", "/rates/eur").allow);
    }

    #[test]
    fn rejected_identities_deny_with_their_reason_but_public_paths_stay_open() {
        let p = policy(CONFIG);
        for reason in [Reason::InvalidSvid, Reason::InvalidXfcc] {
            let req = |path| Request {
                caller: Caller::Rejected(reason),
                destination_tenant: "bank-a",
                method: "GET",
                path: Some(path),
            };
            let v = p.evaluate(&req("/accounts"));
            assert_eq!((v.allow, v.reason), (false, reason));
            assert!(p.evaluate(&req("/healthz")).allow);
        }
    }

    #[test]
    fn shared_access_narrows_who_reaches_shared() {
        let p = policy(
            r#"{"tenants": ["bank-a", "bank-b", "shared"],
                "sharedAccess": {"namespaces": ["bank-a"]}}"#,
        );
        let a = id("spiffe://cluster.local/ns/bank-a/sa/api");
        let b = id("spiffe://cluster.local/ns/bank-b/sa/api");
        let s = id("spiffe://cluster.local/ns/shared/sa/logger");
        assert!(eval(&p, Some(&a), "shared", "GET", "/").allow);
        let v = eval(&p, Some(&b), "shared", "GET", "/");
        assert_eq!((v.allow, v.reason), (false, Reason::SharedNotAllowed));
        assert!(
            eval(&p, Some(&s), "shared", "GET", "/").allow,
            "same tenant"
        );
    }

    #[test]
    fn same_tenant_default_can_be_switched_off() {
        let p = policy(r#"{"allowSameTenant": false}"#);
        let a = id("spiffe://cluster.local/ns/bank-a/sa/api");
        let v = eval(&p, Some(&a), "bank-a", "GET", "/");
        assert_eq!((v.allow, v.reason), (false, Reason::CrossTenant));
    }

    #[test]
    fn an_id_without_istio_namespace_is_never_same_tenant() {
        let p = policy("{}");
        let w = id("spiffe://cluster.local/bank-a");
        assert!(!eval(&p, Some(&w), "bank-a", "GET", "/").allow);
    }

    #[test]
    fn a_deny_rule_without_source_applies_to_everyone_even_anonymous() {
        let p = policy(CONFIG);
        let v = eval(&p, None, "bank-a", "GET", "/admin/x");
        assert_eq!((v.allow, v.rule), (false, "no-admin"));
    }
}
