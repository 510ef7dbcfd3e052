//! The audit record: one JSON object per request, chained to the record
//! before it and signed.
//!
//! A record line is the canonical JSON of a [`RecordBody`] plus two fields:
//! `hash` (lowercase hex SHA-256 of the canonical body) and `sig` (HMAC-SHA256,
//! under the key named by the body's `kid`, of a domain tag and the 32-byte
//! SHA-256 digest — signing the digest rather than the body again halves the
//! hashing per record and is as strong as SHA-256's collision resistance). The body's
//! `prev` is the previous record's `hash` in the same `stream` (the
//! [`GENESIS_HASH`] for `seq` 1), so removing, reordering or altering a record
//! breaks the chain where it happened.

use super::canonical::to_canonical;
use super::encoding::{hex_decode, hex_digits, hex_encode};
use super::keys::{Keyring, SigningKey};
use crate::filter_state::{Decision, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The record format version, the body's `v`.
pub const RECORD_VERSION: u32 = 1;

/// `prev` of the first record of a stream.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What precedes a record in Envoy's log, so `grep` finds records.
pub const LOG_PREFIX: &str = "meshward-audit-record: ";

const RECORD_MAC_DOMAIN: &[u8] = b"meshward-audit-record-v1\0";

/// One audit record without its `hash` and `sig`.
///
/// The fields are declared in the byte order of their JSON names, so serde's
/// serialization of this struct *is* the canonical form (a test holds this
/// true); the verifier still canonicalizes what it reads, so a collector may
/// re-order keys.
///
/// `S` is the string type: `String` (the default) for records read back, or
/// a borrowed type such as `Cow<str>` for a writer that serializes values it
/// already holds without copying them. Every `S` serializes as a JSON string,
/// so the canonical form does not depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordBody<S = String> {
    pub decisions: RecordDecisions<S>,
    /// The `:authority` the request was sent to.
    pub destination: Option<S>,
    /// From the request headers to the end of the stream, milliseconds.
    pub duration_ms: u64,
    /// The key id `sig` was made with; `null` when signing is off.
    pub kid: Option<S>,
    pub method: S,
    /// The request path, with configured patterns masked.
    pub path: S,
    /// `hash` of the previous record of this stream ([`GENESIS_HASH`] for seq 1).
    pub prev: S,
    pub principal: Option<S>,
    pub request_bytes: u64,
    /// Request headers, sensitive ones redacted, patterns masked.
    pub request_headers: Vec<(S, S)>,
    pub request_id: S,
    pub response_bytes: u64,
    /// Envoy's `response.code_details` (e.g. which filter replied locally).
    pub response_details: Option<S>,
    pub response_headers: Vec<(S, S)>,
    /// Sequence number in the stream, from 1, without gaps.
    pub seq: u64,
    /// The response status; `null` when no response was sent (stream reset).
    pub status: Option<u16>,
    /// Random id of the chain (one per proxy VM).
    pub stream: S,
    /// The caller's tenant.
    pub tenant: Option<S>,
    /// When the request headers were seen, RFC 3339 UTC with milliseconds.
    pub time: S,
    /// The upstream host that served the request, when known.
    pub upstream: Option<S>,
    pub v: u32,
    /// The WAF's inbound anomaly score, when it ran.
    pub waf_score: Option<i64>,
}

/// The decisions of the filters before `audit`. `null` means that filter did
/// not decide — it did not run or wrote nothing — never "allowed".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordDecisions<S = String> {
    pub ratelimit: Option<RecordDecision<S>>,
    pub tenant: Option<RecordDecision<S>>,
    pub waf: Option<RecordDecision<S>>,
}

impl<S> Default for RecordDecisions<S> {
    fn default() -> Self {
        RecordDecisions {
            ratelimit: None,
            tenant: None,
            waf: None,
        }
    }
}

/// A [`Decision`] as a record holds it (fields in canonical order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "S: Deserialize<'de>")
)]
pub struct RecordDecision<S = String> {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<S>,
}

impl From<&Decision> for RecordDecision {
    fn from(d: &Decision) -> Self {
        RecordDecision {
            outcome: d.outcome,
            reason: d.reason.clone().filter(|s| !s.is_empty()),
            rule: d.rule.clone().filter(|s| !s.is_empty()),
        }
    }
}

impl<'a> From<&'a Decision> for RecordDecision<Cow<'a, str>> {
    /// The same record decision, borrowing the decision's strings.
    fn from(d: &'a Decision) -> Self {
        let text =
            |s: &'a Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(Cow::Borrowed);
        RecordDecision {
            outcome: d.outcome,
            reason: text(&d.reason),
            rule: text(&d.rule),
        }
    }
}

/// A record ready to write: its line and its hash (the next record's `prev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub line: String,
    pub hash: String,
}

/// Sets `body.kid` to the signing key's id (or `null`) and produces the
/// record line with `hash` and `sig`.
pub fn seal(body: &mut RecordBody, key: Option<&SigningKey>) -> SealedRecord {
    body.kid = key.map(|k| k.id().to_string());
    let mut line = Vec::with_capacity(1024);
    let digest = seal_into(&mut line, &*body, key);
    SealedRecord {
        // JSON of strings is UTF-8; the fallback keeps this total.
        line: String::from_utf8(line).unwrap_or_default(),
        hash: hex_encode(&digest),
    }
}

/// Appends the record line of `body` (its canonical JSON with `hash` and, when
/// `key` is given, `sig`) to `out` and returns the SHA-256 digest that `hash`
/// spells (the next record's `prev`, as hex).
///
/// The caller sets `body.kid` to `key`'s id (or `None`); [`seal`] does that for
/// an owned body. Writing into a reused buffer spares a writer the
/// allocations of building the line piece by piece; what is written is
/// byte-for-byte what [`seal`] writes.
pub fn seal_into<S: Serialize>(
    out: &mut Vec<u8>,
    body: &RecordBody<S>,
    key: Option<&SigningKey>,
) -> [u8; 32] {
    let start = out.len();
    if serde_json::to_writer(&mut *out, body).is_err() {
        // A struct of strings and integers always serializes into a Vec.
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
    let digest: [u8; 32] = Sha256::digest(out.get(start..).unwrap_or_default()).into();
    // The canonical JSON ends with `}`: the two integrity fields go before it.
    if out.last() == Some(&b'}') {
        out.pop();
    }
    out.extend_from_slice(b",\"hash\":\"");
    out.extend(hex_digits(&digest));
    out.push(b'"');
    if let Some(key) = key {
        out.extend_from_slice(b",\"sig\":\"");
        out.extend(hex_digits(&key.sign(&[RECORD_MAC_DOMAIN, &digest])));
        out.push(b'"');
    }
    out.push(b'}');
    digest
}

/// A line that is not an audit record at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an audit record: {0}")]
    NotARecord(String),
}

/// The state of a record's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    Valid,
    Invalid,
    UnknownKey(String),
    Unsigned,
    Malformed(String),
}

/// One record as read back: its body and what its own fields prove.
#[derive(Debug, Clone)]
pub struct CheckedRecord {
    pub body: RecordBody,
    /// The `hash` field as written.
    pub hash: String,
    /// Whether `hash` is the SHA-256 of the canonical body.
    pub hash_matches: bool,
    pub signature: SignatureCheck,
}

/// Parses one record line and checks its hash and signature (not the chain:
/// see `ChainVerifier`).
pub fn check_record(line: &str, keys: &Keyring) -> Result<CheckedRecord, RecordError> {
    let mut value: Value =
        serde_json::from_str(line).map_err(|e| RecordError::NotJson(e.to_string()))?;
    let map = value
        .as_object_mut()
        .ok_or_else(|| RecordError::NotARecord("not a JSON object".into()))?;
    let hash = match map.remove("hash") {
        Some(Value::String(h)) => h,
        _ => return Err(RecordError::NotARecord("no \"hash\" string".into())),
    };
    let sig = match map.remove("sig") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(RecordError::NotARecord("\"sig\" is not a string".into())),
    };
    let canonical = to_canonical(&value);
    let body: RecordBody =
        serde_json::from_value(value).map_err(|e| RecordError::NotARecord(e.to_string()))?;
    let digest = Sha256::digest(&canonical);
    let hash_matches = hex_encode(&digest) == hash;
    let signature = match (&sig, &body.kid) {
        (None, None) => SignatureCheck::Unsigned,
        (None, Some(_)) => SignatureCheck::Malformed("has a kid but no sig".into()),
        (Some(_), None) => SignatureCheck::Malformed("has a sig but no kid".into()),
        (Some(sig), Some(kid)) => match hex_decode(sig).filter(|m| m.len() == 32) {
            None => SignatureCheck::Malformed("sig is not 64 lowercase hex digits".into()),
            Some(mac) => match keys.verify(kid, &[RECORD_MAC_DOMAIN, &digest], &mac) {
                None => SignatureCheck::UnknownKey(kid.clone()),
                Some(true) => SignatureCheck::Valid,
                Some(false) => SignatureCheck::Invalid,
            },
        },
    };
    Ok(CheckedRecord {
        body,
        hash,
        hash_matches,
        signature,
    })
}

/// The record lines in one line of an export file. Accepts:
/// - a record (JSON lines as the filter writes them);
/// - an Envoy log line: whatever follows [`LOG_PREFIX`];
/// - an OTLP/HTTP JSON logs request (`{"resourceLogs": …}`, as an
///   OpenTelemetry collector's file exporter writes): every log record body.
///
/// Anything else is returned as it is, for `check_record` to report.
pub fn extract_record_lines(line: &str) -> Vec<String> {
    let line = line.trim();
    if line.is_empty() {
        return Vec::new();
    }
    if let Some(i) = line.find(LOG_PREFIX) {
        return vec![line[i + LOG_PREFIX.len()..].trim().to_string()];
    }
    if line.starts_with('{') && line.contains("\"resourceLogs\"") {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line) {
            if let Some(Value::Array(resources)) = map.get("resourceLogs") {
                return otlp_bodies(resources);
            }
        }
    }
    vec![line.to_string()]
}

fn otlp_bodies(resources: &[Value]) -> Vec<String> {
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for resource in resources {
        for scope in list(resource, "scopeLogs") {
            for record in list(&scope, "logRecords") {
                if let Some(body) = record
                    .get("body")
                    .and_then(|b| b.get("stringValue"))
                    .and_then(Value::as_str)
                {
                    out.push(body.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn body(stream: &str, seq: u64, prev: &str) -> RecordBody {
        RecordBody {
            decisions: RecordDecisions {
                ratelimit: None,
                tenant: Some(RecordDecision {
                    outcome: Outcome::Deny,
                    reason: Some("cross_tenant".into()),
                    rule: Some("deny-b".into()),
                }),
                waf: Some(RecordDecision {
                    outcome: Outcome::Allow,
                    reason: None,
                    rule: None,
                }),
            },
            destination: Some("api.bank-a.svc".into()),
            duration_ms: 12,
            kid: None,
            method: "GET".into(),
            path: "/accounts/1".into(),
            prev: prev.into(),
            principal: Some("spiffe://bank.example/ns/bank-b/sa/api".into()),
            request_bytes: 0,
            request_headers: vec![
                ("user-agent".into(), "curl/8 \"quoted\" \u{e9}".into()),
                ("authorization".into(), "[redacted]".into()),
            ],
            request_id: format!("req-{seq}"),
            response_bytes: 31,
            response_details: Some("via_upstream".into()),
            response_headers: vec![("content-type".into(), "text/plain".into())],
            seq,
            status: Some(200),
            stream: stream.into(),
            tenant: Some("bank-b".into()),
            time: "2026-01-01T00:00:00.000Z".into(),
            upstream: None,
            v: RECORD_VERSION,
            waf_score: Some(0),
        }
    }

    fn keys() -> (SigningKey, Keyring) {
        let secret = b"record-secret-0123456789";
        let mut ring = Keyring::new();
        ring.insert("k1", secret).unwrap();
        (SigningKey::new("k1", secret).unwrap(), ring)
    }

    #[test]
    fn struct_order_is_the_canonical_order() {
        let mut sparse = body("s", 1, GENESIS_HASH);
        sparse.decisions = RecordDecisions::default();
        sparse.tenant = None;
        sparse.status = None;
        for b in [body("s", 1, GENESIS_HASH), sparse] {
            let direct = serde_json::to_vec(&b).unwrap();
            let canonical = to_canonical(&serde_json::to_value(&b).unwrap());
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(canonical).unwrap()
            );
        }
    }

    #[allow(clippy::ptr_arg)] // maps `&String` fields (Option::as_ref)
    fn borrowed(b: &RecordBody) -> RecordBody<Cow<'_, str>> {
        fn c(s: &String) -> Cow<'_, str> {
            Cow::Borrowed(s)
        }
        fn d(d: &Option<RecordDecision>) -> Option<RecordDecision<Cow<'_, str>>> {
            d.as_ref().map(|d| RecordDecision {
                outcome: d.outcome,
                reason: d.reason.as_ref().map(c),
                rule: d.rule.as_ref().map(c),
            })
        }
        fn h(l: &[(String, String)]) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
            l.iter().map(|(k, v)| (c(k), c(v))).collect()
        }
        RecordBody {
            decisions: RecordDecisions {
                ratelimit: d(&b.decisions.ratelimit),
                tenant: d(&b.decisions.tenant),
                waf: d(&b.decisions.waf),
            },
            destination: b.destination.as_ref().map(c),
            duration_ms: b.duration_ms,
            kid: b.kid.as_ref().map(c),
            method: c(&b.method),
            path: c(&b.path),
            prev: c(&b.prev),
            principal: b.principal.as_ref().map(c),
            request_bytes: b.request_bytes,
            request_headers: h(&b.request_headers),
            request_id: c(&b.request_id),
            response_bytes: b.response_bytes,
            response_details: b.response_details.as_ref().map(c),
            response_headers: h(&b.response_headers),
            seq: b.seq,
            status: b.status,
            stream: c(&b.stream),
            tenant: b.tenant.as_ref().map(c),
            time: c(&b.time),
            upstream: b.upstream.as_ref().map(c),
            v: b.v,
            waf_score: b.waf_score,
        }
    }

    #[test]
    fn a_borrowed_body_seals_to_the_same_line_as_an_owned_one() {
        let (key, ring) = keys();
        for signing in [Some(&key), None] {
            let mut owned = body("s", 7, GENESIS_HASH);
            let sealed = seal(&mut owned, signing);
            let mut out = b"prefix: ".to_vec();
            let digest = seal_into(&mut out, &borrowed(&owned), signing);
            assert_eq!(
                out.strip_prefix(b"prefix: ").unwrap(),
                sealed.line.as_bytes()
            );
            assert_eq!(hex_encode(&digest), sealed.hash);
            let checked = check_record(&sealed.line, &ring).unwrap();
            assert!(checked.hash_matches);
        }
        let decision = Decision::new(Outcome::Deny).with_rule("r").with_reason("");
        let owned: RecordDecision = RecordDecision::from(&decision);
        let cow: RecordDecision<Cow<str>> = RecordDecision::from(&decision);
        assert_eq!(
            serde_json::to_string(&owned).unwrap(),
            serde_json::to_string(&cow).unwrap()
        );
        assert_eq!(cow.reason, None, "an empty reason is absent");
    }

    #[test]
    fn sealed_record_checks_out() {
        let (key, ring) = keys();
        let mut b = body("s", 1, GENESIS_HASH);
        let sealed = seal(&mut b, Some(&key));
        assert!(!sealed.line.contains('\n'));
        let checked = check_record(&sealed.line, &ring).unwrap();
        assert!(checked.hash_matches);
        assert_eq!(checked.signature, SignatureCheck::Valid);
        assert_eq!(checked.hash, sealed.hash);
        assert_eq!(checked.body, b);
        assert_eq!(checked.body.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn reordered_keys_still_check_out() {
        let (key, ring) = keys();
        let sealed = seal(&mut body("s", 1, GENESIS_HASH), Some(&key));
        let value: Value = serde_json::from_str(&sealed.line).unwrap();
        // Re-serialize through a reversed key order, as a collector might.
        let map = value.as_object().unwrap();
        let mut parts: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect();
        parts.reverse();
        let line = format!("{{{}}}", parts.join(", "));
        let checked = check_record(&line, &ring).unwrap();
        assert!(checked.hash_matches);
        assert_eq!(checked.signature, SignatureCheck::Valid);
    }

    #[test]
    fn altered_content_fails_the_hash_and_a_rehash_fails_the_signature() {
        let (key, ring) = keys();
        let sealed = seal(&mut body("s", 1, GENESIS_HASH), Some(&key));
        let altered = sealed.line.replace("\"status\":200", "\"status\":201");
        let checked = check_record(&altered, &ring).unwrap();
        assert!(!checked.hash_matches);
        assert_eq!(checked.signature, SignatureCheck::Invalid);

        // Recompute the hash like a forger without the key would.
        let mut b = body("s", 1, GENESIS_HASH);
        b.status = Some(201);
        b.kid = Some("k1".into());
        let forged_hash = hex_encode(&Sha256::digest(serde_json::to_vec(&b).unwrap()));
        let forged = altered.replace(&sealed.hash, &forged_hash);
        let checked = check_record(&forged, &ring).unwrap();
        assert!(checked.hash_matches);
        assert_eq!(checked.signature, SignatureCheck::Invalid);
    }

    #[test]
    fn an_added_field_is_not_a_record() {
        let (key, ring) = keys();
        let sealed = seal(&mut body("s", 1, GENESIS_HASH), Some(&key));
        let line = sealed.line.replacen('{', "{\"extra\":1,", 1);
        assert!(matches!(
            check_record(&line, &ring),
            Err(RecordError::NotARecord(_))
        ));
    }

    #[test]
    fn unsigned_and_unknown_key_records_are_reported_as_such() {
        let (key, ring) = keys();
        let sealed = seal(&mut body("s", 1, GENESIS_HASH), None);
        assert!(!sealed.line.contains("\"sig\""));
        let checked = check_record(&sealed.line, &ring).unwrap();
        assert!(checked.hash_matches);
        assert_eq!(checked.signature, SignatureCheck::Unsigned);
        let sealed = seal(&mut body("s", 1, GENESIS_HASH), Some(&key));
        let checked = check_record(&sealed.line, &Keyring::new()).unwrap();
        assert_eq!(checked.signature, SignatureCheck::UnknownKey("k1".into()));
    }

    #[test]
    fn record_lines_are_found_in_log_lines_and_otlp_requests() {
        let rec = r#"{"a":1}"#;
        assert_eq!(
            extract_record_lines(&format!(
                "[2026-01-01 00:00:00.000][12][info][wasm] wasm log audit: {LOG_PREFIX}{rec}"
            )),
            vec![rec.to_string()]
        );
        let otlp = serde_json::json!({"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"body":{"stringValue": rec}}, {"body":{"stringValue": "{\"b\":2}"}}]}]}]});
        assert_eq!(
            extract_record_lines(&otlp.to_string()),
            vec![rec.to_string(), "{\"b\":2}".to_string()]
        );
        assert_eq!(extract_record_lines(rec), vec![rec.to_string()]);
        assert!(extract_record_lines("   ").is_empty());
    }
}
