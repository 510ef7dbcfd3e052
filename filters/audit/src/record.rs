//! Building one audit record from what the stream observed, and chaining it.

use crate::config::Settings;
use crate::stamp::{Facts, RequestLine};
use meshward_shared::audit::{
    format_rfc3339_millis, seal, RecordBody, RecordDecision, RecordDecisions, SealedRecord,
    SigningKey, GENESIS_HASH, RECORD_VERSION,
};

/// Everything the stream learned about one request by the end of it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub request_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub line: RequestLine,
    pub facts: Facts,
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub status: Option<u16>,
    pub details: Option<String>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub upstream: Option<String>,
}

/// The record body (without chain fields, which [`Chain::seal_next`] sets).
pub fn build(obs: &Observed, settings: &Settings) -> RecordBody {
    let max = settings.max_value_bytes;
    let redactor = &settings.redactor;
    let headers = |list: &[(String, Vec<u8>)], enabled: bool| -> Vec<(String, String)> {
        if !enabled {
            return Vec::new();
        }
        list.iter()
            // Pseudo-headers are recorded as fields (method, path, status,
            // destination); the audit namespace holds only what this filter
            // added, which the record repeats in its own fields.
            .filter(|(name, _)| {
                !name.starts_with(':') && !starts_with_ci(name, &settings.header_prefix)
            })
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value);
                (name.clone(), redactor.header_value(name, &value, max))
            })
            .collect()
    };
    let decision =
        |d: &Option<meshward_shared::filter_state::Decision>| d.as_ref().map(RecordDecision::from);
    RecordBody {
        decisions: RecordDecisions {
            ratelimit: decision(&obs.facts.ratelimit),
            tenant: decision(&obs.facts.authz),
            waf: decision(&obs.facts.waf),
        },
        destination: obs.line.authority.clone(),
        duration_ms: obs.end_ms.saturating_sub(obs.start_ms),
        kid: None,
        method: or_dash(&obs.line.method),
        path: or_dash(&redactor.text(&obs.line.path, max)),
        prev: String::new(),
        principal: obs.facts.principal.clone(),
        request_bytes: obs.request_bytes,
        request_headers: headers(&obs.request_headers, settings.record_request_headers),
        request_id: obs.request_id.clone(),
        response_bytes: obs.response_bytes,
        response_details: obs.details.clone(),
        response_headers: headers(&obs.response_headers, settings.record_response_headers),
        seq: 0,
        status: obs.status,
        stream: String::new(),
        tenant: obs.facts.tenant.clone(),
        time: format_rfc3339_millis(obs.start_ms),
        upstream: obs.upstream.clone(),
        v: RECORD_VERSION,
        waf_score: obs.facts.waf_score,
    }
}

fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// One VM's chain of records: a random stream id, the next sequence number
/// and the hash of the last record.
#[derive(Debug, Clone)]
pub struct Chain {
    stream: String,
    next_seq: u64,
    prev: String,
}

impl Chain {
    pub fn new(stream: String) -> Self {
        Chain {
            stream,
            next_seq: 1,
            prev: GENESIS_HASH.to_string(),
        }
    }

    /// The sequence number of the last sealed record (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Gives `body` the next place in the chain, seals it, and advances.
    pub fn seal_next(&mut self, mut body: RecordBody, key: Option<&SigningKey>) -> SealedRecord {
        body.stream = self.stream.clone();
        body.seq = self.next_seq;
        body.prev = std::mem::take(&mut self.prev);
        let sealed = seal(&mut body, key);
        self.next_seq += 1;
        self.prev = sealed.hash.clone();
        sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use meshward_shared::audit::{ChainVerifier, Keyring};
    use meshward_shared::filter_state::{Decision, Outcome};

    const SECRET: &str = "record-secret-0123456789";

    fn settings() -> Settings {
        let cfg = serde_json::json!({
            "signing": {"activeKeyId": "k1", "keys": [{"id": "k1"}]},
            "redaction": {"patterns": [{"name": "pan", "regex": r"\b(?:\d[ -]?){12,18}\d\b"}]}
        });
        load(cfg.to_string().as_bytes(), |_| Some(SECRET.into())).unwrap()
    }

    fn observed() -> Observed {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        Observed {
            request_id: "r1".into(),
            start_ms: 1_767_225_600_000,
            end_ms: 1_767_225_600_042,
            line: RequestLine {
                method: "POST".into(),
                path: "/pay?card=4111111111111111".into(),
                authority: Some("transaction.bank-a".into()),
            },
            facts: Facts {
                tenant: Some("bank-a".into()),
                ratelimit: Some(Decision::new(Outcome::Deny).with_reason("over_limit")),
                ..Facts::default()
            },
            request_headers: h(&[
                (":method", "POST"),
                ("authorization", "Bearer secret-token"),
                ("cookie", "session=abc"),
                ("x-card", "4111 1111 1111 1111"),
                ("x-meshward-audit", "v=1;..."),
            ]),
            response_headers: h(&[(":status", "429"), ("set-cookie", "s=1")]),
            status: Some(429),
            ..Observed::default()
        }
    }

    #[test]
    fn records_hold_no_secrets_or_card_numbers() {
        let s = settings();
        let body = build(&observed(), &s);
        let json = serde_json::to_string(&body).unwrap();
        for secret in ["secret-token", "session=abc", "4111", "s=1"] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
        assert_eq!(body.path, "/pay?card=[masked:pan]");
        assert!(body
            .request_headers
            .contains(&("authorization".into(), "[redacted]".into())));
        assert!(body
            .request_headers
            .iter()
            .all(|(k, _)| !k.starts_with(':') && !k.starts_with("x-meshward-")));
        assert_eq!(body.duration_ms, 42);
        assert_eq!(body.time, "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn absent_decisions_are_null_not_allow() {
        let body = build(&observed(), &settings());
        assert_eq!(body.decisions.waf, None);
        assert_eq!(body.decisions.tenant, None);
        assert_eq!(
            body.decisions.ratelimit.map(|d| d.outcome),
            Some(Outcome::Deny)
        );
    }

    #[test]
    fn chained_records_verify() {
        let s = settings();
        let mut chain = Chain::new("stream-1".into());
        let lines: Vec<String> = (0..3)
            .map(|_| {
                chain
                    .seal_next(build(&observed(), &s), s.signing_key.as_ref())
                    .line
            })
            .collect();
        let mut ring = Keyring::new();
        ring.insert("k1", SECRET.as_bytes()).unwrap();
        let mut v = ChainVerifier::new(&ring);
        for (i, l) in lines.iter().enumerate() {
            v.push_line(i + 1, l);
        }
        let report = v.finish();
        assert!(report.is_ok(), "{report}");
    }
}
