//! The inter-filter contract: which facts a meshward filter publishes in Envoy
//! filter state for the filters after it, under which key, in which encoding.
//!
//! A filter writes with `set_property(["meshward.<key>"], bytes)`; every later
//! Wasm filter of the same request reads it with `get_property(["meshward.<key>"])`
//! (ARCHITECTURE §3). Filter state never reaches the wire: the upstream sees
//! only what `audit` adds. Every key and encoding is defined here, once.

use serde::{Deserialize, Serialize};

/// The caller's SPIFFE ID (UTF-8), written by `tenant` once it is verified.
pub const PRINCIPAL: &str = "meshward.principal";
/// The caller's tenant (its namespace, UTF-8), written by `tenant`.
pub const TENANT: &str = "meshward.tenant";
/// The tenant filter's [`Decision`] (JSON).
pub const AUTHZ_DECISION: &str = "meshward.authz.decision";
/// The WAF's inbound anomaly score, decimal ASCII.
pub const WAF_SCORE: &str = "meshward.waf.score";
/// The ids of the WAF rules that matched, comma-separated decimal ASCII.
pub const WAF_RULES: &str = "meshward.waf.rules";
/// The WAF's [`Decision`] (JSON).
pub const WAF_DECISION: &str = "meshward.waf.decision";
/// The rate limiter's [`Decision`] (JSON).
pub const RATELIMIT_DECISION: &str = "meshward.ratelimit.decision";

/// The property path of a key: proxy-wasm paths are lists of segments, and a
/// `meshward.*` key is a single segment.
pub fn path(key: &str) -> Vec<&str> {
    vec![key]
}

/// What an enforcing filter decided about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub outcome: Outcome,
    /// The rule (or policy entry) that decided, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A short machine-readable reason, e.g. `cross_tenant`, `over_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcome of a decision. `DryRunDeny` means the filter would have denied
/// but runs in dry-run mode, so the request went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
    DryRunDeny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::DryRunDeny => "dry_run_deny",
        }
    }
}

impl Decision {
    pub fn new(outcome: Outcome) -> Self {
        Decision {
            outcome,
            rule: None,
            reason: None,
        }
    }

    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The bytes stored in filter state.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing a struct of strings and a unit enum cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a decision back; `None` for absent or malformed bytes, which a
    /// reader must treat as "that filter did not decide", never as allow.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_round_trips() {
        let d = Decision::new(Outcome::DryRunDeny)
            .with_rule("deny-bank-b")
            .with_reason("cross_tenant");
        let bytes = d.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"outcome":"dry_run_deny","rule":"deny-bank-b","reason":"cross_tenant"}"#
        );
        assert_eq!(Decision::decode(&bytes), Some(d));
    }

    #[test]
    fn garbage_is_no_decision() {
        assert_eq!(Decision::decode(b"allow"), None);
        assert_eq!(Decision::decode(b""), None);
    }
}
