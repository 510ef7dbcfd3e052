//! Envoy's rate limit service protocol (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`).
//!
//! The messages are `prost` derives written against the real proto files,
//! with their exact field numbers; only fields meshward reads or writes are
//! declared (prost skips unknown fields when decoding, so a response with
//! `dynamic_metadata` or `quota` decodes fine):
//!
//! - `envoy/service/ratelimit/v3/rls.proto`: `RateLimitRequest`,
//!   `RateLimitResponse` (+ `Code`, `RateLimit`, `DescriptorStatus`)
//! - `envoy/extensions/common/ratelimit/v3/ratelimit.proto`: `RateLimitDescriptor`
//! - `envoy/config/core/v3/base.proto`: `HeaderValue`
//! - `google/protobuf/duration.proto`: `Duration`

use crate::gcra::NANOS_PER_SEC;

/// gRPC service and method names.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// 0 means 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// `envoy.type.v3.RateLimitUnit`, same numbering as [`Unit`].
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.Code`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
    #[prost(bytes = "vec", tag = "5")]
    pub raw_body: Vec<u8>,
    // 6: google.protobuf.Struct dynamic_metadata, 7: Quota quota — not used.
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
    // 5: Quota quota — not used.
}

/// `google.protobuf.Duration`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `envoy.config.core.v3.HeaderValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// Encodes a `RateLimitRequest` for `domain` with one descriptor per entry list.
pub fn encode_request(domain: &str, descriptors: Vec<Vec<(String, String)>>) -> Vec<u8> {
    use prost::Message;
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: descriptors
            .into_iter()
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .into_iter()
                    .map(|(key, value)| Entry { key, value })
                    .collect(),
                limit: None,
            })
            .collect(),
        hits_addend: 0,
    }
    .encode_to_vec()
}

/// Decodes a `RateLimitRequest` (what a rate limit service receives; used by
/// tests and tools that play the service).
pub fn decode_request(bytes: &[u8]) -> Result<RateLimitRequest, prost::DecodeError> {
    use prost::Message;
    RateLimitRequest::decode(bytes)
}

/// Encodes a `RateLimitResponse` (what a rate limit service answers).
pub fn encode_response(response: &RateLimitResponse) -> Vec<u8> {
    use prost::Message;
    response.encode_to_vec()
}

/// What the service answered, in the terms the filter acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `overall_code == OVER_LIMIT`. Like Envoy, any other code (`UNKNOWN`
    /// included) admits the request.
    pub over_limit: bool,
    /// Indices of the descriptors the service reported over the limit. When
    /// the response has no per-descriptor statuses (or not one per
    /// descriptor), every descriptor counts as over the limit.
    pub over_limit_descriptors: Vec<usize>,
    /// Seconds until the longest-blocked over-limit descriptor resets (at least 1).
    pub retry_after_secs: u64,
    pub response_headers: Vec<(String, String)>,
    pub request_headers: Vec<(String, String)>,
}

fn headers(list: Vec<HeaderValue>) -> Vec<(String, String)> {
    list.into_iter()
        .filter(|h| !h.key.is_empty())
        .map(|h| {
            let value = if h.value.is_empty() {
                String::from_utf8(h.raw_value).unwrap_or_default()
            } else {
                h.value
            };
            (h.key.to_ascii_lowercase(), value)
        })
        .collect()
}

/// Decodes a `RateLimitResponse` to `sent` descriptors.
pub fn decode_response(bytes: &[u8], sent: usize) -> Result<Answer, prost::DecodeError> {
    use prost::Message;
    let r = RateLimitResponse::decode(bytes)?;
    let over_limit = r.overall_code == Code::OverLimit as i32;
    let per_descriptor = r.statuses.len() == sent;
    let mut over = Vec::new();
    let mut retry_ns: u64 = 0;
    for (i, s) in r.statuses.iter().enumerate() {
        if s.code != Code::OverLimit as i32 {
            continue;
        }
        if per_descriptor {
            over.push(i);
        }
        if let Some(d) = &s.duration_until_reset {
            let secs = u64::try_from(d.seconds).unwrap_or(0);
            let nanos = u64::try_from(d.nanos).unwrap_or(0);
            let ns = secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos);
            retry_ns = retry_ns.max(ns);
        }
    }
    if over_limit && over.is_empty() {
        over = (0..sent).collect();
    }
    if !over_limit {
        over.clear();
    }
    Ok(Answer {
        over_limit,
        over_limit_descriptors: over,
        retry_after_secs: crate::gcra::ceil_secs(retry_ns, 1),
        response_headers: headers(r.response_headers_to_add),
        request_headers: headers(r.request_headers_to_add),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn request_has_the_wire_layout_of_rls_proto() {
        let bytes = encode_request(
            "bank",
            vec![vec![
                ("rule".into(), "t".into()),
                ("tenant".into(), "a".into()),
            ]],
        );
        // domain = 1 (LEN) "bank"; descriptors = 2 (LEN) { entries = 1 (LEN) {key = 1, value = 2} ... }
        let want: Vec<u8> = [
            &[0x0a, 4][..],
            b"bank",
            &[0x12, 24],
            &[0x0a, 9, 0x0a, 4],
            b"rule",
            &[0x12, 1],
            b"t",
            &[0x0a, 11, 0x0a, 6],
            b"tenant",
            &[0x12, 1],
            b"a",
        ]
        .concat();
        assert_eq!(bytes, want);
        let back = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.descriptors[0].entries[1].value, "a");
    }

    #[test]
    fn over_limit_answer_names_descriptors_and_retry_after() {
        let resp = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![
                DescriptorStatus {
                    code: Code::Ok as i32,
                    current_limit: None,
                    limit_remaining: 5,
                    duration_until_reset: None,
                },
                DescriptorStatus {
                    code: Code::OverLimit as i32,
                    current_limit: Some(RateLimit {
                        name: "x".into(),
                        requests_per_unit: 10,
                        unit: Unit::Minute as i32,
                    }),
                    limit_remaining: 0,
                    duration_until_reset: Some(Duration {
                        seconds: 41,
                        nanos: 5,
                    }),
                },
            ],
            response_headers_to_add: vec![HeaderValue {
                key: "X-RLS".into(),
                value: "over".into(),
                raw_value: vec![],
            }],
            request_headers_to_add: vec![],
            raw_body: vec![],
        };
        let a = decode_response(&resp.encode_to_vec(), 2).unwrap();
        assert!(a.over_limit);
        assert_eq!(a.over_limit_descriptors, vec![1]);
        assert_eq!(a.retry_after_secs, 42);
        assert_eq!(a.response_headers, vec![("x-rls".into(), "over".into())]);
    }

    #[test]
    fn over_limit_without_statuses_blames_every_descriptor() {
        let resp = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            ..Default::default()
        };
        let a = decode_response(&resp.encode_to_vec(), 3).unwrap();
        assert_eq!(a.over_limit_descriptors, vec![0, 1, 2]);
        assert_eq!(a.retry_after_secs, 1);
    }

    #[test]
    fn ok_and_unknown_admit_and_garbage_is_an_error() {
        for code in [Code::Ok, Code::Unknown] {
            let resp = RateLimitResponse {
                overall_code: code as i32,
                request_headers_to_add: vec![HeaderValue {
                    key: "x-quota".into(),
                    value: String::new(),
                    raw_value: b"raw".to_vec(),
                }],
                ..Default::default()
            };
            let a = decode_response(&resp.encode_to_vec(), 1).unwrap();
            assert!(!a.over_limit && a.over_limit_descriptors.is_empty());
            assert_eq!(a.request_headers, vec![("x-quota".into(), "raw".into())]);
        }
        assert!(decode_response(&[0x0a, 0xff], 1).is_err());
    }
}
