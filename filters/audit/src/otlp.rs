//! OTLP/HTTP logs, JSON encoding (`POST /v1/logs`,
//! `ExportLogsServiceRequest`): any OpenTelemetry collector's `otlphttp`
//! receiver accepts it. Each audit record is one log record whose body is the
//! record line exactly as written, so a verifier can check it after the
//! collector stored it.
//!
//! OTLP JSON specifics: 64-bit integers (`timeUnixNano`, `intValue`) are
//! strings; enum `severityNumber` is a number (9 = INFO).

use crate::export::Queued;
use serde_json::{json, Value};

/// The instrumentation scope name of audit log records.
pub const SCOPE: &str = "meshward.audit";

pub fn encode<'a>(
    service_name: &str,
    stream: &str,
    records: impl Iterator<Item = &'a Queued>,
) -> Vec<u8> {
    let log_records: Vec<Value> = records
        .map(|r| {
            json!({
                "timeUnixNano": r.time_unix_nanos.to_string(),
                "observedTimeUnixNano": r.observed_unix_nanos.to_string(),
                "severityNumber": 9,
                "severityText": "INFO",
                "body": {"stringValue": r.line},
                "attributes": [
                    {"key": "meshward.audit.stream", "value": {"stringValue": stream}},
                    {"key": "meshward.audit.seq", "value": {"intValue": r.seq.to_string()}},
                    {"key": "meshward.request_id", "value": {"stringValue": r.request_id}},
                ],
            })
        })
        .collect();
    let request = json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service_name}},
            ]},
            "scopeLogs": [{
                "scope": {"name": SCOPE, "version": env!("CARGO_PKG_VERSION")},
                "logRecords": log_records,
            }],
        }],
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_shared::audit::extract_record_lines;

    #[test]
    fn bodies_carry_the_record_lines_unchanged() {
        let recs = [
            Queued {
                line: r#"{"a":"x\"y","seq":1}"#.into(),
                seq: 1,
                request_id: "r1".into(),
                time_unix_nanos: 1_767_225_600_000_000_000,
                observed_unix_nanos: 1_767_225_600_100_000_000,
            },
            Queued {
                line: r#"{"seq":2}"#.into(),
                seq: 2,
                request_id: "r2".into(),
                time_unix_nanos: 2,
                observed_unix_nanos: 2,
            },
        ];
        let body = encode("svc", "stream-1", recs.iter());
        let text = String::from_utf8(body).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let lr = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
        assert_eq!(lr[0]["timeUnixNano"], "1767225600000000000");
        assert_eq!(lr[0]["severityNumber"], 9);
        assert_eq!(lr[1]["attributes"][1]["value"]["intValue"], "2");
        assert_eq!(
            v["resourceLogs"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "svc"
        );
        assert_eq!(
            extract_record_lines(&text),
            vec![recs[0].line.clone(), recs[1].line.clone()]
        );
    }
}
