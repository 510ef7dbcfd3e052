//! The request side: which incoming headers are forged, the request id, and
//! the facts the filters before `audit` left in filter state.

use meshward_shared::audit::{AuditClaims, ClaimsRef};
use meshward_shared::filter_state::{self, Decision};

/// Names of incoming headers in the audit namespace (each once, in order).
/// Header names reach Wasm lower-cased (HTTP/2 and Envoy's HTTP/1 codec);
/// the comparison ignores case anyway.
pub fn forged_header_names<V>(headers: &[(String, V)], prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in headers {
        let matches = name.len() >= prefix.len()
            && name
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix));
        if matches && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.clone());
        }
    }
    names
}

/// Whether an `x-request-id` value is kept: 1 to 128 visible ASCII bytes.
/// Anything else is replaced by a fresh id, so the id stays a usable key.
pub fn valid_request_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 128 && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// An RFC 9562 version 4 UUID from 16 random bytes.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = meshward_shared::audit::hex_encode(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// What the earlier filters decided, read from filter state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub tenant: Option<String>,
    pub principal: Option<String>,
    pub waf: Option<Decision>,
    pub authz: Option<Decision>,
    pub ratelimit: Option<Decision>,
    pub waf_score: Option<i64>,
}

impl Facts {
    /// Reads every key through `get` (a filter-state lookup). Absent or
    /// malformed values are absent facts — never an "allow".
    pub fn read(get: impl Fn(&str) -> Option<Vec<u8>>) -> Facts {
        let text = |key: &str| {
            get(key)
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty())
        };
        let decision = |key: &str| get(key).and_then(|b| Decision::decode(&b));
        let waf = decision(filter_state::WAF_DECISION);
        // The score is only read when the WAF decided: one host call less
        // per request on chains without a WAF.
        let waf_score = waf
            .as_ref()
            .and_then(|_| text(filter_state::WAF_SCORE))
            .and_then(|s| s.trim().parse().ok());
        Facts {
            tenant: text(filter_state::TENANT),
            principal: text(filter_state::PRINCIPAL),
            waf,
            authz: decision(filter_state::AUTHZ_DECISION),
            ratelimit: decision(filter_state::RATELIMIT_DECISION),
            waf_score,
        }
    }
}

/// The request line as the audit filter saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub path: String,
    pub authority: Option<String>,
}

impl RequestLine {
    /// From the request's pseudo-headers.
    pub fn from_headers(headers: &[(String, Vec<u8>)]) -> RequestLine {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        RequestLine {
            method: get(":method").unwrap_or_default(),
            path: get(":path").unwrap_or_default(),
            authority: get(":authority").filter(|a| !a.is_empty()),
        }
    }
}

/// The header claims for one request, borrowed (encodes exactly like
/// [`claims`]).
pub fn claims_ref<'a>(
    request_id: &'a str,
    time_ms: u64,
    line: &'a RequestLine,
    facts: &'a Facts,
) -> ClaimsRef<'a> {
    let or_dash = |s: &'a str| if s.is_empty() { "-" } else { s };
    ClaimsRef {
        request_id,
        time_unix_ms: time_ms,
        tenant: facts.tenant.as_deref(),
        principal: facts.principal.as_deref(),
        destination: line.authority.as_deref(),
        method: or_dash(&line.method),
        path: or_dash(&line.path),
        waf: facts.waf.as_ref(),
        authz: facts.authz.as_ref(),
        ratelimit: facts.ratelimit.as_ref(),
    }
}

/// The header claims for one request.
pub fn claims(request_id: &str, time_ms: u64, line: &RequestLine, facts: &Facts) -> AuditClaims {
    AuditClaims {
        request_id: request_id.to_string(),
        time_unix_ms: time_ms,
        tenant: facts.tenant.clone(),
        principal: facts.principal.clone(),
        destination: line.authority.clone(),
        method: non_empty(&line.method),
        path: non_empty(&line.path),
        waf: facts.waf.clone(),
        authz: facts.authz.clone(),
        ratelimit: facts.ratelimit.clone(),
    }
}

/// The canonical encoding needs a method and a path; a request without them
/// (not possible through Envoy's codecs) is recorded as `-`.
fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::audit::{sign_header, verify_header, Keyring, SigningKey};
    use meshward_shared::filter_state::Outcome;
    use std::collections::HashMap;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn every_header_in_the_namespace_is_forged() {
        let headers = h(&[
            ("x-meshward-audit", "v=1;forged"),
            ("x-meshward-audit-signature", "kid=k1;..."),
            ("X-Meshward-Tenant", "bank-a"),
            ("x-meshward-audit", "again"),
            ("x-meshwardish", "not ours"),
            ("x-request-id", "r"),
        ]);
        assert_eq!(
            forged_header_names(&headers, "x-meshward-"),
            vec![
                "x-meshward-audit",
                "x-meshward-audit-signature",
                "X-Meshward-Tenant"
            ]
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_usable() {
        assert!(valid_request_id(b"3f1c9a8e-0b7d-4c55-9a1e-2f6d7c8b9a01"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id("é".as_bytes()));
        assert!(!valid_request_id(&[b'a'; 129]));
    }

    #[test]
    fn uuid_has_version_4_and_rfc_variant() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = uuid_v4([0; 16]);
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn facts_come_from_filter_state_and_malformed_ones_are_absent() {
        let mut state: HashMap<&str, Vec<u8>> = HashMap::new();
        state.insert(filter_state::TENANT, b"bank-a".to_vec());
        state.insert(
            filter_state::PRINCIPAL,
            b"spiffe://td/ns/bank-a/sa/api".to_vec(),
        );
        state.insert(
            filter_state::AUTHZ_DECISION,
            Decision::new(Outcome::Allow)
                .with_rule("same-tenant")
                .encode(),
        );
        state.insert(filter_state::WAF_DECISION, b"allow".to_vec());
        state.insert(filter_state::WAF_SCORE, b"5".to_vec());
        let facts = Facts::read(|k| state.get(k).cloned());
        assert_eq!(facts.waf_score, None, "no score without a WAF decision");
        state.insert(
            filter_state::WAF_DECISION,
            Decision::new(Outcome::Allow).encode(),
        );
        let facts = Facts::read(|k| state.get(k).cloned());
        assert_eq!(facts.waf, Some(Decision::new(Outcome::Allow)));
        assert_eq!(facts.waf_score, Some(5));
        state.insert(filter_state::WAF_DECISION, b"allow".to_vec());
        let facts = Facts::read(|k| state.get(k).cloned());
        assert_eq!(facts.tenant.as_deref(), Some("bank-a"));
        assert_eq!(
            facts.authz,
            Some(Decision::new(Outcome::Allow).with_rule("same-tenant"))
        );
        assert_eq!(facts.waf, None, "a malformed decision is not an allow");
        assert_eq!(facts.ratelimit, None);
    }

    #[test]
    fn claims_sign_and_verify_end_to_end() {
        let line = RequestLine::from_headers(&h(&[
            (":method", "GET"),
            (":path", "/accounts/1"),
            (":authority", "api.bank-a"),
        ]));
        let facts = Facts {
            tenant: Some("bank-a".into()),
            ..Facts::default()
        };
        let c = claims("r1", 5, &line, &facts);
        assert_eq!(claims_ref("r1", 5, &line, &facts).encode(), c.encode());
        let empty = RequestLine::default();
        assert_eq!(
            claims_ref("r1", 5, &empty, &facts).encode(),
            claims("r1", 5, &empty, &facts).encode()
        );
        let key = SigningKey::new("k1", b"0123456789abcdef").unwrap();
        let sig = sign_header(&c.encode(), &key);
        let mut ring = Keyring::new();
        ring.insert("k1", b"0123456789abcdef").unwrap();
        assert_eq!(verify_header(&c.encode(), &sig, &ring).unwrap(), c);
    }
}
