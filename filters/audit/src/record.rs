//! Building one audit record from what the stream observed, and chaining it.

use crate::config::Settings;
use crate::stamp::{Facts, RequestLine};
use meshward_shared::audit::{
    format_rfc3339_millis, hex_encode_into, seal_into, RecordBody, RecordDecision, RecordDecisions,
    SigningKey, GENESIS_HASH, RECORD_VERSION,
};
use std::borrow::Cow;

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

/// A record body that borrows what it can from `obs` (chain fields empty:
/// [`Chain::seal_next`] sets them).
pub type Body<'a> = RecordBody<Cow<'a, str>>;

/// The record body (without chain fields, which [`Chain::seal_next`] sets).
/// Values recorded as they are borrow from `obs`; only masked, cut or
/// non-UTF-8 values are copied.
pub fn build<'a>(obs: &'a Observed, settings: &Settings) -> Body<'a> {
    let max = settings.max_value_bytes;
    let redactor = &settings.redactor;
    let headers = |list: &'a [(String, Vec<u8>)],
                   enabled: bool|
     -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
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
                let value = match String::from_utf8_lossy(value) {
                    Cow::Borrowed(v) => redactor.header_value(name, v, max),
                    Cow::Owned(v) => Cow::Owned(redactor.header_value(name, &v, max).into_owned()),
                };
                (Cow::Borrowed(name.as_str()), value)
            })
            .collect()
    };
    let decision = |d: &'a Option<meshward_shared::filter_state::Decision>| {
        d.as_ref().map(RecordDecision::from)
    };
    let text = |s: &'a Option<String>| s.as_deref().map(Cow::Borrowed);
    RecordBody {
        decisions: RecordDecisions {
            ratelimit: decision(&obs.facts.ratelimit),
            tenant: decision(&obs.facts.authz),
            waf: decision(&obs.facts.waf),
        },
        destination: text(&obs.line.authority),
        duration_ms: obs.end_ms.saturating_sub(obs.start_ms),
        kid: None,
        method: or_dash(Cow::Borrowed(&obs.line.method)),
        path: or_dash(redactor.text(&obs.line.path, max)),
        prev: Cow::Borrowed(""),
        principal: text(&obs.facts.principal),
        request_bytes: obs.request_bytes,
        request_headers: headers(&obs.request_headers, settings.record_request_headers),
        request_id: Cow::Borrowed(&obs.request_id),
        response_bytes: obs.response_bytes,
        response_details: text(&obs.details),
        response_headers: headers(&obs.response_headers, settings.record_response_headers),
        seq: 0,
        status: obs.status,
        stream: Cow::Borrowed(""),
        tenant: text(&obs.facts.tenant),
        time: Cow::Owned(format_rfc3339_millis(obs.start_ms)),
        upstream: text(&obs.upstream),
        v: RECORD_VERSION,
        waf_score: obs.facts.waf_score,
    }
}

fn starts_with_ci(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn or_dash(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_empty() {
        Cow::Borrowed("-")
    } else {
        s
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

    /// The hash of the last sealed record ([`GENESIS_HASH`] before the first).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// Gives `body` the next place in the chain, appends its sealed record
    /// line to `out` (see `meshward_shared::audit::seal_into`), advances, and
    /// returns the record's sequence number.
    pub fn seal_next(
        &mut self,
        body: Body<'_>,
        key: Option<&SigningKey>,
        out: &mut Vec<u8>,
    ) -> u64 {
        let seq = self.next_seq;
        let digest = {
            let mut body: Body<'_> = body;
            body.stream = Cow::Borrowed(&self.stream);
            body.seq = seq;
            body.prev = Cow::Borrowed(&self.prev);
            body.kid = key.map(|k| Cow::Borrowed(k.id()));
            seal_into(out, &body, key)
        };
        self.next_seq += 1;
        self.prev.clear();
        hex_encode_into(&mut self.prev, &digest);
        seq
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
        let obs = observed();
        let body = build(&obs, &s);
        let json = serde_json::to_string(&body).unwrap();
        for secret in ["secret-token", "session=abc", "4111", "s=1"] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
        assert_eq!(body.path, "/pay?card=[masked:pan]");
        assert!(body
            .request_headers
            .contains(&(Cow::Borrowed("authorization"), Cow::Borrowed("[redacted]"))));
        assert!(body
            .request_headers
            .iter()
            .all(|(k, _)| !k.starts_with(':') && !k.starts_with("x-meshward-")));
        assert_eq!(body.duration_ms, 42);
        assert_eq!(body.time, "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn absent_decisions_are_null_not_allow() {
        let obs = observed();
        let body = build(&obs, &settings());
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
        let obs = observed();
        let lines: Vec<String> = (0..3)
            .map(|i| {
                let mut out = Vec::new();
                let seq = chain.seal_next(build(&obs, &s), s.signing_key.as_ref(), &mut out);
                assert_eq!(seq, i + 1);
                let line = String::from_utf8(out).unwrap();
                assert!(line.contains(&format!(",\"hash\":\"{}\"", chain.last_hash())));
                line
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
