//! Response headers that tell a client about its limits.
//!
//! - `retry-after` on every 429: whole seconds, rounded up, at least 1.
//! - IETF `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers,
//!   structured-field lists): one item per applicable rule, named by the rule:
//!   `"per-tenant";q=100;w=1` and `"per-tenant";r=0;t=1` (`q` requests per
//!   window of `w` seconds; `r` requests remaining now; `t` seconds until the
//!   bucket is full again).
//! - optionally `x-ratelimit-limit` / `-remaining` / `-reset` (the draft-03
//!   style Envoy's own rate limit filters emit) for the rule that limited the
//!   request, or on admitted responses the rule closest to its limit.

use crate::config::HeaderOptions;
use crate::gcra::{ceil_secs, Verdict, NANOS_PER_SEC};
use crate::limiter::{Outcome, RuleResult};
use crate::rules::Rule;

/// Header name/value pairs, names in lower case.
pub type Headers = Vec<(&'static str, String)>;

fn window_secs(rule: &Rule) -> u64 {
    rule.limit.period_ns / NANOS_PER_SEC
}

fn ietf(rules: &[Rule], results: &[RuleResult], out: &mut Headers) {
    let mut policy = String::new();
    let mut state = String::new();
    for r in results {
        let Some(rule) = rules.get(r.rule) else {
            continue;
        };
        if !policy.is_empty() {
            policy.push_str(", ");
            state.push_str(", ");
        }
        policy.push_str(&format!(
            "\"{}\";q={};w={}",
            rule.name,
            rule.limit.requests,
            window_secs(rule)
        ));
        state.push_str(&format!(
            "\"{}\";r={};t={}",
            rule.name,
            r.verdict.remaining(),
            ceil_secs(r.verdict.reset_ns(), 0)
        ));
    }
    if !policy.is_empty() {
        out.push(("ratelimit-policy", policy));
        out.push(("ratelimit", state));
    }
}

fn x_rate_limit(rules: &[Rule], r: &RuleResult, out: &mut Headers) {
    if let Some(rule) = rules.get(r.rule) {
        out.push(("x-ratelimit-limit", rule.limit.requests.to_string()));
        out.push(("x-ratelimit-remaining", r.verdict.remaining().to_string()));
        out.push((
            "x-ratelimit-reset",
            ceil_secs(r.verdict.reset_ns(), 0).to_string(),
        ));
    }
}

/// Headers of the 429 for a request limited by `outcome.limited()`.
pub fn limited(opts: &HeaderOptions, rules: &[Rule], outcome: &Outcome) -> Headers {
    let mut h = Headers::new();
    let Some(by) = outcome.limited() else {
        return h;
    };
    let retry_ns = match by.verdict {
        Verdict::Deny { retry_after_ns, .. } => retry_after_ns,
        Verdict::Allow { .. } => 0,
    };
    h.push(("retry-after", ceil_secs(retry_ns, 1).to_string()));
    if opts.ietf {
        ietf(rules, &outcome.results, &mut h);
    }
    if opts.x_rate_limit {
        x_rate_limit(rules, by, &mut h);
    }
    h
}

/// Headers for the response of an admitted request (only when
/// `headers.onAllowed` is set; empty when no rule applied).
pub fn allowed(opts: &HeaderOptions, rules: &[Rule], outcome: &Outcome) -> Headers {
    let mut h = Headers::new();
    if !opts.on_allowed {
        return h;
    }
    if opts.ietf {
        ietf(rules, &outcome.results, &mut h);
    }
    if opts.x_rate_limit {
        if let Some(t) = outcome.tightest() {
            x_rate_limit(rules, t, &mut h);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::gcra::Tat;

    fn cfg() -> Config {
        Config::parse(
            serde_json::json!({"headers": {"xRateLimit": true, "onAllowed": true}, "rules": [
                {"name": "per-tenant", "limit": {"requests": 100, "per": "second", "burst": 20}},
                {"name": "per-caller", "limit": {"requests": 60, "per": "minute", "burst": 5}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn allow(rule: usize, remaining: u32, reset_ns: u64) -> RuleResult {
        RuleResult {
            rule,
            verdict: Verdict::Allow {
                tat: Tat::default(),
                remaining,
                reset_ns,
            },
            dry_run: false,
            overflow: false,
        }
    }

    #[test]
    fn limited_response_carries_retry_after_and_both_header_families() {
        let c = cfg();
        let outcome = Outcome {
            results: vec![
                allow(0, 19, 10_000_000),
                RuleResult {
                    rule: 1,
                    verdict: Verdict::Deny {
                        retry_after_ns: 250_000_000,
                        reset_ns: 4_250_000_000,
                    },
                    dry_run: false,
                    overflow: false,
                },
            ],
            limited_by: Some(1),
            ..Default::default()
        };
        let h = limited(&c.headers, &c.rules, &outcome);
        assert_eq!(
            h,
            vec![
                ("retry-after", "1".to_string()),
                (
                    "ratelimit-policy",
                    "\"per-tenant\";q=100;w=1, \"per-caller\";q=60;w=60".to_string()
                ),
                (
                    "ratelimit",
                    "\"per-tenant\";r=19;t=1, \"per-caller\";r=0;t=5".to_string()
                ),
                ("x-ratelimit-limit", "60".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", "5".to_string()),
            ]
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let c = cfg();
        for (ns, want) in [
            (1, "1"),
            (999_999_999, "1"),
            (1_000_000_001, "2"),
            (59_000_000_000, "59"),
        ] {
            let outcome = Outcome {
                results: vec![RuleResult {
                    rule: 0,
                    verdict: Verdict::Deny {
                        retry_after_ns: ns,
                        reset_ns: ns,
                    },
                    dry_run: false,
                    overflow: false,
                }],
                limited_by: Some(0),
                ..Default::default()
            };
            assert_eq!(
                limited(&c.headers, &c.rules, &outcome)[0],
                ("retry-after", want.to_string())
            );
        }
    }

    #[test]
    fn admitted_response_reports_the_rule_closest_to_its_limit() {
        let c = cfg();
        let outcome = Outcome {
            results: vec![allow(0, 19, 10_000_000), allow(1, 3, 2_000_000_000)],
            ..Default::default()
        };
        let h = allowed(&c.headers, &c.rules, &outcome);
        assert!(
            h.contains(&("x-ratelimit-remaining", "3".to_string())),
            "{h:?}"
        );
        assert!(
            h.contains(&("x-ratelimit-limit", "60".to_string())),
            "{h:?}"
        );
        let mut off = c.headers;
        off.on_allowed = false;
        assert!(allowed(&off, &c.rules, &outcome).is_empty());
    }
}
