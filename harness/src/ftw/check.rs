//! Deciding a stage the way go-ftw v2.3.0 does (`runner/check_*.go`, `waflog/read.go`), with
//! every reason a stage failed instead of the first one.
//!
//! - `expect_error`: the stage passes when there was an error (no response), and nothing else
//!   is checked; an error that was not expected fails the stage.
//! - `status`: the response's status is one of the expected ones.
//! - `response_contains`: a regular expression over the whole response as received (status
//!   line, headers, blank line, body).
//! - `log`: rule ids are read from the WAF's log lines for the request with go-ftw's patterns
//!   (`[id "942100"]`, escaped or JSON forms); `expect_ids` must all be there, `no_expect_ids`
//!   none of them; `match_regex` must match some line, `no_match_regex` none; `isolated` allows
//!   exactly one logged rule.

use super::schema::Output;
use regex::Regex;
use std::fmt;
use std::sync::OnceLock;

/// What a stage's request produced.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The response as the client got it; `None` when there was an error instead.
    pub response: Option<ObservedResponse>,
    /// Why there was no response (reset, timeout).
    pub error: Option<String>,
    /// The WAF's log lines for this request.
    pub log_lines: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ObservedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One reason a stage failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// An error was expected, a response came.
    ExpectedError {
        status: u16,
    },
    UnexpectedError {
        error: String,
    },
    Status {
        expected: Vec<u16>,
        got: u16,
    },
    ResponseContains {
        regex: String,
    },
    MissingIds {
        ids: Vec<u64>,
    },
    UnexpectedIds {
        ids: Vec<u64>,
    },
    MatchRegex {
        regex: String,
    },
    NoMatchRegex {
        regex: String,
    },
    NotIsolated {
        logged: Vec<u64>,
    },
    BadRegex {
        regex: String,
        error: String,
    },
    /// The stage could not be sent (a request that cannot be built or expressed).
    NotSent {
        reason: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |ids: &[u64]| {
            ids.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Failure::ExpectedError { status } => {
                write!(f, "expected an error, got a response ({status})")
            }
            Failure::UnexpectedError { error } => write!(f, "unexpected error: {error}"),
            Failure::Status { expected, got } => write!(
                f,
                "status {got}, expected {}",
                expected
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Failure::ResponseContains { regex } => {
                write!(f, "response does not match /{regex}/")
            }
            Failure::MissingIds { ids: missing } => write!(f, "missing ids {}", ids(missing)),
            Failure::UnexpectedIds { ids: found } => {
                write!(f, "unexpected ids {}", ids(found))
            }
            Failure::MatchRegex { regex } => write!(f, "no log line matches /{regex}/"),
            Failure::NoMatchRegex { regex } => write!(f, "a log line matches /{regex}/"),
            Failure::NotIsolated { logged } => {
                write!(f, "isolated, but logged ids {}", ids(logged))
            }
            Failure::BadRegex { regex, error } => write!(f, "bad regex /{regex}/: {error}"),
            Failure::NotSent { reason } => write!(f, "not sent: {reason}"),
        }
    }
}

/// go-ftw's rule-id patterns: `[id "1"]`, `[id \"1\"]`, `["id":"1"]`, `[\"id\":\"1\"]`; a line
/// without any of those is read as JSON (`{"id":1}`, `"ruleId":"1"`).
fn id_patterns() -> &'static (Regex, Regex) {
    static PATTERNS: OnceLock<(Regex, Regex)> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        (
            Regex::new(r#"\[(?:id |\\?"id\\?":)\\?"(\d+)\\?"\]"#).expect("static regex"),
            Regex::new(r#"(?:\{|,)\s*"(?:id|ruleId)":\s*"?(\d+)"?"#).expect("static regex"),
        )
    })
}

/// The rule ids the log lines name, sorted, each once.
pub fn triggered_ids(lines: &[String]) -> Vec<u64> {
    let (standard, json) = id_patterns();
    let mut ids: Vec<u64> = Vec::new();
    for line in lines {
        let mut found: Vec<u64> = standard
            .captures_iter(line)
            .filter_map(|c| c.get(1)?.as_str().parse().ok())
            .collect();
        if found.is_empty() {
            found = json
                .captures_iter(line)
                .filter_map(|c| c.get(1)?.as_str().parse().ok())
                .collect();
        }
        ids.extend(found);
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The response as the client read it off the wire.
pub fn full_response(response: &ObservedResponse) -> Vec<u8> {
    let mut text = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason_phrase(response.status)
    )
    .into_bytes();
    for (name, value) in &response.headers {
        text.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    text.extend_from_slice(b"\r\n");
    text.extend_from_slice(&response.body);
    text
}

/// Every reason the stage fails its expectations; empty when it passes.
pub fn check(output: &Output, observed: &Observed) -> Vec<Failure> {
    let mut failures = Vec::new();
    if output.expect_error == Some(true) {
        if let Some(response) = &observed.response {
            failures.push(Failure::ExpectedError {
                status: response.status,
            });
        }
        return failures;
    }
    let Some(response) = &observed.response else {
        failures.push(Failure::UnexpectedError {
            error: observed
                .error
                .clone()
                .unwrap_or_else(|| "no response".into()),
        });
        return failures;
    };
    if !output.status.is_empty() && !output.status.contains(&response.status) {
        failures.push(Failure::Status {
            expected: output.status.clone(),
            got: response.status,
        });
    }
    if let Some(pattern) = &output.response_contains {
        match regex::bytes::Regex::new(pattern) {
            Ok(re) if re.is_match(&full_response(response)) => {}
            Ok(_) => failures.push(Failure::ResponseContains {
                regex: pattern.clone(),
            }),
            Err(e) => failures.push(Failure::BadRegex {
                regex: pattern.clone(),
                error: e.to_string(),
            }),
        }
    }
    let log = output.effective_log();
    let ids = triggered_ids(&observed.log_lines);
    let line_matches = |pattern: &str| -> Result<bool, Failure> {
        let re = Regex::new(pattern).map_err(|e| Failure::BadRegex {
            regex: pattern.to_string(),
            error: e.to_string(),
        })?;
        Ok(observed.log_lines.iter().any(|l| re.is_match(l)))
    };
    if let Some(pattern) = &log.match_regex {
        match line_matches(pattern) {
            Ok(true) => {}
            Ok(false) => failures.push(Failure::MatchRegex {
                regex: pattern.clone(),
            }),
            Err(f) => failures.push(f),
        }
    }
    let missing: Vec<u64> = log
        .expect_ids
        .iter()
        .copied()
        .filter(|id| !ids.contains(id))
        .collect();
    if !missing.is_empty() {
        failures.push(Failure::MissingIds { ids: missing });
    }
    if output.isolated && ids.len() != 1 {
        failures.push(Failure::NotIsolated {
            logged: ids.clone(),
        });
    }
    if let Some(pattern) = &log.no_match_regex {
        match line_matches(pattern) {
            Ok(false) => {}
            Ok(true) => failures.push(Failure::NoMatchRegex {
                regex: pattern.clone(),
            }),
            Err(f) => failures.push(f),
        }
    }
    let unexpected: Vec<u64> = log
        .no_expect_ids
        .iter()
        .copied()
        .filter(|id| ids.contains(id))
        .collect();
    if !unexpected.is_empty() {
        failures.push(Failure::UnexpectedIds { ids: unexpected });
    }
    failures
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::Log;
    use super::*;

    fn observed(status: u16, body: &str, lines: &[&str]) -> Observed {
        Observed {
            response: Some(ObservedResponse {
                status,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: body.as_bytes().to_vec(),
            }),
            error: None,
            log_lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn log(expect: &[u64], no_expect: &[u64]) -> Output {
        Output {
            log: Log {
                expect_ids: expect.to_vec(),
                no_expect_ids: no_expect.to_vec(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const LINE: &str = r#"meshward-waf: ModSecurity: Warning. Matched "Operator `Rx' ..." [file "x"] [id "942100"] [msg "SQLi"] [data "Matched Data: 1 found within ARGS:x: 1"]"#;

    #[test]
    fn rule_ids_are_read_with_go_ftws_patterns() {
        let lines = vec![
            LINE.to_string(),
            r#"[id \"949110\"] and [id "942100"]"#.to_string(),
            r#"{"transaction":{"messages":[{"details":{"ruleId":"920350"}}]}}"#.to_string(),
            r#"["id":"1"] then {"id":2}"#.to_string(),
            "no ids here".to_string(),
        ];
        assert_eq!(triggered_ids(&lines), vec![1, 920350, 942100, 949110]);
    }

    #[test]
    fn expected_ids_pass_when_logged_and_fail_naming_the_missing_ones() {
        assert!(check(&log(&[942100], &[]), &observed(200, "", &[LINE])).is_empty());
        assert_eq!(
            check(&log(&[942100, 942101], &[]), &observed(200, "", &[LINE])),
            vec![Failure::MissingIds { ids: vec![942101] }]
        );
    }

    #[test]
    fn unexpected_ids_fail_only_when_logged() {
        assert!(check(&log(&[], &[942101]), &observed(200, "", &[LINE])).is_empty());
        assert_eq!(
            check(&log(&[], &[942100]), &observed(200, "", &[LINE])),
            vec![Failure::UnexpectedIds { ids: vec![942100] }]
        );
    }

    #[test]
    fn status_may_be_one_of_several() {
        let output = Output {
            status: vec![400, 403],
            ..Default::default()
        };
        assert!(check(&output, &observed(403, "", &[])).is_empty());
        assert_eq!(
            check(&output, &observed(200, "", &[])),
            vec![Failure::Status {
                expected: vec![400, 403],
                got: 200
            }]
        );
    }

    #[test]
    fn response_contains_is_a_regex_over_the_whole_response() {
        let output = Output {
            response_contains: Some("^HTTP/1.1 200 OK\r\ncontent-type: text/plain".into()),
            ..Default::default()
        };
        assert!(check(&output, &observed(200, "hello", &[])).is_empty());
        let output = Output {
            response_contains: Some("hel+o".into()),
            ..Default::default()
        };
        assert!(check(&output, &observed(200, "hello", &[])).is_empty());
        assert_eq!(
            check(&output, &observed(200, "bye", &[])),
            vec![Failure::ResponseContains {
                regex: "hel+o".into()
            }]
        );
    }

    #[test]
    fn log_regexes_match_single_lines() {
        let output = Output {
            log: Log {
                match_regex: Some(r"found within ARGS:x".into()),
                no_match_regex: Some(r#"\[id "949110"\]"#.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(check(&output, &observed(200, "", &[LINE])).is_empty());
        let failures = check(&output, &observed(200, "", &["[id \"949110\"]"]));
        assert_eq!(
            failures,
            vec![
                Failure::MatchRegex {
                    regex: "found within ARGS:x".into()
                },
                Failure::NoMatchRegex {
                    regex: r#"\[id "949110"\]"#.into()
                }
            ]
        );
        let bad = Output {
            log: Log {
                match_regex: Some("(".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            check(&bad, &observed(200, "", &[]))[0],
            Failure::BadRegex { .. }
        ));
    }

    #[test]
    fn deprecated_log_contains_is_a_match_regex() {
        let output = Output {
            log_contains: Some("id \"942100\"".into()),
            ..Default::default()
        };
        assert!(check(&output, &observed(200, "", &[LINE])).is_empty());
        assert_eq!(check(&output, &observed(200, "", &[])).len(), 1);
    }

    #[test]
    fn isolated_allows_exactly_one_rule() {
        let mut output = log(&[942100], &[]);
        output.isolated = true;
        assert!(check(&output, &observed(200, "", &[LINE])).is_empty());
        assert_eq!(
            check(&output, &observed(200, "", &[LINE, "[id \"949110\"]"])),
            vec![Failure::NotIsolated {
                logged: vec![942100, 949110]
            }]
        );
    }

    #[test]
    fn expect_error_passes_only_without_a_response() {
        let output = Output {
            expect_error: Some(true),
            status: vec![200],
            ..Default::default()
        };
        let error = Observed {
            error: Some("timeout".into()),
            ..Default::default()
        };
        assert!(check(&output, &error).is_empty());
        assert_eq!(
            check(&output, &observed(400, "", &[])),
            vec![Failure::ExpectedError { status: 400 }]
        );
        assert_eq!(
            check(&log(&[1], &[]), &error),
            vec![Failure::UnexpectedError {
                error: "timeout".into()
            }]
        );
    }
}
