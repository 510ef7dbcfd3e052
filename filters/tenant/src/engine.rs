//! One request through the tenant filter, as plain values: the request
//! headers, the peer's cached identity and the clock in; what to publish,
//! which headers to remove, which counter to bump and whether to reply 403 out.
//! The proxy-wasm shell (`lib.rs`) only moves these values to and from Envoy.

use crate::config::{Mode, Settings};
use crate::identity::{self, PeerIdentity, Resolved};
use crate::path;
use crate::policy::{Caller, Reason, Request};
use meshward_shared::filter_state::{Decision, Outcome};
use meshward_shared::spiffe::SpiffeId;
use std::rc::Rc;

/// The XFCC header name (lowercase, as Envoy hands headers to filters).
pub const XFCC: &str = "x-forwarded-client-cert";
/// The response-code details of a denial.
pub const DENIED_DETAILS: &str = "meshward_tenant_denied";
/// The bucket for callers whose namespace is not a configured tenant.
pub const OTHER_TENANT: &str = "other";
/// The bucket for callers without a (valid) identity.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The configured filter for one destination tenant.
#[derive(Debug, Clone)]
pub struct Engine {
    pub settings: Settings,
    pub destination_tenant: String,
}

/// What the shell must do for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The verified caller (`meshward.principal`), when there is one from a
    /// configured trust domain.
    pub principal: Option<Rc<SpiffeId>>,
    /// The caller's tenant (`meshward.tenant`): its namespace.
    pub caller_tenant: Option<String>,
    /// The decision published as `meshward.authz.decision`.
    pub decision: Decision,
    /// Send the 403 local reply (a denial in enforce mode).
    pub deny: bool,
    /// Request headers to remove before the request goes on.
    pub remove_headers: Vec<String>,
    /// The counter to increment.
    pub metric: String,
    /// Why, for the log line of a denial.
    pub detail: Option<String>,
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Engine {
    /// Evaluates one request. `now` is the host clock in Unix seconds.
    pub fn evaluate(
        &self,
        headers: &[(String, String)],
        peer: &PeerIdentity,
        now: i64,
    ) -> Evaluation {
        let settings = &self.settings;

        // Several XFCC lines are one comma-separated list (RFC 9110 §5.3).
        let mut xfcc_lines = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(XFCC))
            .map(|(_, v)| v.as_str());
        let xfcc_joined;
        let xfcc = match (xfcc_lines.next(), xfcc_lines.next()) {
            (None, _) => None,
            (Some(one), None) => Some(one),
            (Some(first), Some(second)) => {
                let mut all = vec![first, second];
                all.extend(xfcc_lines);
                xfcc_joined = all.join(",");
                Some(xfcc_joined.as_str())
            }
        };

        let resolution = identity::resolve(peer, now, xfcc, &settings.trusted_forwarders);

        let mut remove_headers: Vec<String> = Vec::new();
        for (name, _) in headers {
            let strip = settings.strip_headers.iter().any(|p| p.matches(name))
                || (!resolution.peer_is_trusted_forwarder && name.eq_ignore_ascii_case(XFCC));
            if strip {
                let lower = name.to_ascii_lowercase();
                if !remove_headers.contains(&lower) {
                    remove_headers.push(lower);
                }
            }
        }

        let (caller, detail) = match &resolution.caller {
            Resolved::Anonymous => (Caller::Anonymous, None),
            Resolved::Rejected { reason, detail } => {
                (Caller::Rejected(*reason), Some(detail.clone()))
            }
            Resolved::Authenticated { id, .. } => (Caller::Authenticated(id.as_ref()), None),
        };
        let canonical = header(headers, ":path").and_then(path::canonical);
        let request = Request {
            caller: caller.clone(),
            destination_tenant: &self.destination_tenant,
            method: header(headers, ":method").unwrap_or_default(),
            path: canonical.as_deref(),
        };
        let verdict = settings.policy.evaluate(&request);

        let principal = match &resolution.caller {
            Resolved::Authenticated { id, .. }
                if settings.policy.trust_domains.contains(id.trust_domain()) =>
            {
                Some(Rc::clone(id))
            }
            _ => None,
        };
        let caller_tenant = principal
            .as_ref()
            .and_then(|id| id.namespace())
            .map(str::to_string);

        let bucket = match (&principal, &caller_tenant) {
            (None, _) => UNAUTHENTICATED,
            (Some(_), Some(t)) if settings.tenants.iter().any(|k| k == t) => t.as_str(),
            (Some(_), _) => OTHER_TENANT,
        };
        let outcome = match (verdict.allow, settings.mode) {
            (true, _) => Outcome::Allow,
            (false, Mode::Enforce) => Outcome::Deny,
            (false, Mode::DryRun) => Outcome::DryRunDeny,
        };
        let metric = match outcome {
            Outcome::Allow => format!("meshward_tenant.allowed.{bucket}"),
            Outcome::Deny => format!(
                "meshward_tenant.denied.{bucket}.{}",
                verdict.reason.as_str()
            ),
            Outcome::DryRunDeny => format!(
                "meshward_tenant.dry_run_denied.{bucket}.{}",
                verdict.reason.as_str()
            ),
        };
        let detail = if verdict.allow {
            None
        } else {
            let who = match (&caller, &resolution.caller) {
                (Caller::Authenticated(id), _) => id.as_str().to_string(),
                (_, Resolved::Rejected { .. }) => {
                    format!("rejected identity ({})", detail.unwrap_or_default())
                }
                _ => "no identity".to_string(),
            };
            Some(who)
        };

        Evaluation {
            principal,
            caller_tenant,
            decision: Decision::new(outcome)
                .with_rule(verdict.rule)
                .with_reason(verdict.reason.as_str()),
            deny: outcome == Outcome::Deny,
            remove_headers,
            metric,
            detail,
        }
    }
}

/// Every counter name the filter can emit for the configured tenants: the
/// bound on metric series (tenants + `other` + `unauthenticated`, times the
/// denial reasons, times enforce / dry-run, plus the allowed counters).
pub fn metric_names(tenants: &[String]) -> Vec<String> {
    let buckets = tenants
        .iter()
        .map(String::as_str)
        .chain([OTHER_TENANT, UNAUTHENTICATED]);
    let mut names = Vec::new();
    for bucket in buckets {
        names.push(format!("meshward_tenant.allowed.{bucket}"));
        for reason in Reason::DENIALS {
            names.push(format!(
                "meshward_tenant.denied.{bucket}.{}",
                reason.as_str()
            ));
            names.push(format!(
                "meshward_tenant.dry_run_denied.{bucket}.{}",
                reason.as_str()
            ));
        }
    }
    names
}

/// The JSON body of a denial (ARCHITECTURE §3: `error` and `request_id`).
pub fn deny_body(reason: &str, request_id: &str) -> Vec<u8> {
    meshward_shared::local_reply::json_body("tenant_denied", Some(reason), request_id)
}

/// The request id of a request (`x-request-id`), empty when absent.
pub fn request_id(headers: &[(String, String)]) -> &str {
    header(headers, "x-request-id").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::svid::Svid;

    const NOW: i64 = 1_767_225_600;
    const GW: &str =
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";

    fn engine(mode: &str) -> Engine {
        let json = format!(
            r#"{{"mode": "{mode}", "tenants": ["bank-a", "bank-b", "shared"],
                "trustedForwarders": ["{GW}"], "publicPaths": ["/healthz"],
                "stripHeaders": ["x-meshward-*", "x-tenant"]}}"#
        );
        Engine {
            settings: Settings::parse(json.as_bytes()).unwrap(),
            destination_tenant: "bank-a".into(),
        }
    }

    fn peer(id: &str) -> PeerIdentity {
        PeerIdentity::Svid(Rc::new(Svid {
            id: SpiffeId::parse(id).unwrap(),
            not_before: NOW - 1,
            not_after: NOW + 1,
        }))
    }

    fn headers(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), path.to_string()),
        ];
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        h
    }

    #[test]
    fn a_same_tenant_call_is_allowed_and_published() {
        let e = engine("enforce");
        let ev = e.evaluate(
            &headers("/accounts", &[]),
            &peer("spiffe://cluster.local/ns/bank-a/sa/web"),
            NOW,
        );
        assert!(!ev.deny);
        assert_eq!(
            ev.principal.as_deref().map(SpiffeId::as_str),
            Some("spiffe://cluster.local/ns/bank-a/sa/web")
        );
        assert_eq!(ev.caller_tenant.as_deref(), Some("bank-a"));
        assert_eq!(ev.metric, "meshward_tenant.allowed.bank-a");
        assert_eq!(
            String::from_utf8(ev.decision.encode()).unwrap(),
            r#"{"outcome":"allow","rule":"builtin:same_tenant","reason":"same_tenant"}"#
        );
    }

    #[test]
    fn a_cross_tenant_call_is_denied_and_counted_by_source_and_reason() {
        let e = engine("enforce");
        let ev = e.evaluate(
            &headers("/accounts", &[]),
            &peer("spiffe://cluster.local/ns/bank-b/sa/web"),
            NOW,
        );
        assert!(ev.deny);
        assert_eq!(ev.metric, "meshward_tenant.denied.bank-b.cross_tenant");
        assert_eq!(ev.caller_tenant.as_deref(), Some("bank-b"));
    }

    #[test]
    fn dry_run_decides_and_counts_but_does_not_deny() {
        let e = engine("dryRun");
        let ev = e.evaluate(
            &headers("/accounts", &[]),
            &peer("spiffe://cluster.local/ns/bank-b/sa/web"),
            NOW,
        );
        assert!(!ev.deny);
        assert_eq!(ev.decision.outcome, Outcome::DryRunDeny);
        assert_eq!(
            ev.metric,
            "meshward_tenant.dry_run_denied.bank-b.cross_tenant"
        );
    }

    #[test]
    fn identity_headers_are_removed_and_xfcc_only_kept_from_a_forwarder() {
        let e = engine("enforce");
        let h = headers(
            "/accounts",
            &[
                ("x-meshward-tenant", "bank-a"),
                ("X-Tenant", "bank-a"),
                (XFCC, "URI=spiffe://cluster.local/ns/bank-a/sa/x"),
                ("x-other", "1"),
            ],
        );
        let ev = e.evaluate(&h, &peer("spiffe://cluster.local/ns/bank-b/sa/web"), NOW);
        assert_eq!(
            ev.remove_headers,
            vec!["x-meshward-tenant", "x-tenant", XFCC]
        );
        assert!(
            ev.deny,
            "the forged XFCC does not make bank-b look like bank-a"
        );
        let fwd = format!("By={GW};URI=spiffe://cluster.local/ns/bank-a/sa/web");
        let h = headers("/accounts", &[(XFCC, &fwd)]);
        let ev = e.evaluate(&h, &peer(GW), NOW);
        assert!(ev.remove_headers.is_empty());
        assert!(!ev.deny);
        assert_eq!(ev.caller_tenant.as_deref(), Some("bank-a"));
    }

    #[test]
    fn several_xfcc_lines_are_one_list_whose_last_element_counts() {
        let e = engine("enforce");
        let forged = format!("By={GW};URI=spiffe://cluster.local/ns/bank-a/sa/web");
        let real = format!("By={GW};URI=spiffe://cluster.local/ns/bank-b/sa/web");
        let h = headers("/accounts", &[(XFCC, &forged), (XFCC, &real)]);
        let ev = e.evaluate(&h, &peer(GW), NOW);
        assert_eq!(ev.caller_tenant.as_deref(), Some("bank-b"));
        assert!(ev.deny);
    }

    #[test]
    fn unknown_trust_domains_are_not_published() {
        let e = engine("enforce");
        let ev = e.evaluate(
            &headers("/", &[]),
            &peer("spiffe://evil.example/ns/bank-a/sa/web"),
            NOW,
        );
        assert!(ev.deny);
        assert_eq!(ev.principal, None);
        assert_eq!(ev.caller_tenant, None);
        assert_eq!(
            ev.metric,
            "meshward_tenant.denied.unauthenticated.unknown_trust_domain"
        );
    }

    #[test]
    fn callers_outside_the_tenant_list_share_the_other_bucket() {
        let e = engine("enforce");
        let ev = e.evaluate(
            &headers("/", &[]),
            &peer("spiffe://cluster.local/ns/team-x/sa/web"),
            NOW,
        );
        assert_eq!(ev.metric, "meshward_tenant.denied.other.cross_tenant");
        assert!(metric_names(&e.settings.tenants).contains(&ev.metric));
        assert_eq!(
            metric_names(&e.settings.tenants).len(),
            5 * (1 + 2 * Reason::DENIALS.len())
        );
    }

    #[test]
    fn plaintext_requests_reach_only_public_paths() {
        let e = engine("enforce");
        assert!(
            !e.evaluate(&headers("/healthz", &[]), &PeerIdentity::None, NOW)
                .deny
        );
        let ev = e.evaluate(&headers("/accounts", &[]), &PeerIdentity::None, NOW);
        assert!(ev.deny);
        assert_eq!(
            ev.metric,
            "meshward_tenant.denied.unauthenticated.unauthenticated"
        );
    }

    #[test]
    fn the_deny_body_carries_reason_and_request_id() {
        let body = deny_body("cross_tenant", "req-1");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "tenant_denied");
        assert_eq!(v["reason"], "cross_tenant");
        assert_eq!(v["request_id"], "req-1");
    }
}
