//! The rate limiter over the built `.wasm`, in the harness: several worker
//! VMs sharing one process's shared data, a virtual clock, and a programmed
//! rate limit service.

use meshward_harness::certs::TestCa;
use meshward_harness::{FailStrategy, GrpcReply, Outcome, Phase, PluginSpec, Proxy, Request};
use meshward_ratelimit::rls;
use meshward_shared::audit::{extract_record_lines, LOG_PREFIX};
use meshward_shared::filter_state::{Decision, Outcome as Verdict, RATELIMIT_DECISION};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn wasm(name: &str) -> PathBuf {
    let dir = std::env::var_os("MESHWARD_WASM_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release"),
        PathBuf::from,
    );
    dir.join(format!("meshward_{name}.wasm"))
}

fn limiter(config: Value) -> PluginSpec {
    PluginSpec::new("ratelimit", wasm("ratelimit"))
        .config_json(config)
        .phase(Phase::Authz)
        .priority(100)
}

fn proxy(workers: usize, config: Value) -> Proxy {
    Proxy::builder()
        .workers(workers)
        .plugin(limiter(config))
        .build()
        .expect("ratelimit loads")
}

/// One bucket for everyone: `requests` per second with `burst`.
fn one_rule(requests: u32, burst: u32) -> Value {
    json!({"rules": [{"name": "all", "limit": {"requests": requests, "per": "second", "burst": burst}}]})
}

fn admitted(p: &mut Proxy, req: impl Fn(usize) -> Request, n: usize, every: Duration) -> usize {
    let mut ok = 0;
    for i in 0..n {
        if i > 0 {
            p.advance(every);
        }
        let out = p.send(req(i));
        match out.status() {
            200 => ok += 1,
            429 => {}
            other => panic!("request {i}: unexpected status {other}: {:?}", out.logs),
        }
    }
    ok
}

/// The decision the filter published in filter state for this request.
fn decision(out: &Outcome) -> Option<Decision> {
    out.filter_state
        .get(RATELIMIT_DECISION)
        .and_then(|b| Decision::decode(b))
}

fn round_robin(workers: usize) -> impl Fn(usize) -> Request {
    move |i| {
        Request::get("/accounts/1")
            .source("10.1.2.3:41000")
            .worker(i % workers)
    }
}

#[test]
fn four_workers_admit_exactly_burst_plus_rate_over_ten_seconds() {
    // 100/s burst 20; 200 attempts/s for 10 s spread over 4 workers. Shared
    // data makes the 4 VMs one limiter: 20 + 10 s × 100/s, exactly.
    let mut p = proxy(4, one_rule(100, 20));
    let n = admitted(&mut p, round_robin(4), 2001, Duration::from_millis(5));
    assert_eq!(n, 20 + 1000);
    assert_eq!(p.metric("meshward_ratelimit.rule.all.allowed"), Some(1020));
    assert_eq!(p.metric("meshward_ratelimit.rule.all.limited"), Some(981));
    assert_eq!(p.metric("meshward_ratelimit.requests"), Some(2001));
}

#[test]
fn a_steady_rate_under_the_limit_is_never_limited() {
    let mut p = proxy(4, one_rule(100, 1));
    let n = admitted(&mut p, round_robin(4), 500, Duration::from_millis(10));
    assert_eq!(n, 500);
}

#[test]
fn a_burst_from_idle_admits_exactly_the_burst() {
    let mut p = proxy(4, one_rule(10, 7));
    let n = admitted(&mut p, round_robin(4), 40, Duration::ZERO);
    assert_eq!(n, 7);
    // After 1 s the bucket has refilled 10 (capped at the burst of 7).
    p.advance(Duration::from_secs(1));
    assert_eq!(admitted(&mut p, round_robin(4), 40, Duration::ZERO), 7);
}

#[test]
fn forced_cas_mismatches_between_workers_keep_the_count_exact() {
    let mut p = proxy(4, one_rule(10, 5));
    // The first request creates the slot; then every write of the next
    // requests first loses a CAS race (as if another worker wrote first).
    assert_eq!(p.send(round_robin(4)(0)).status(), 200);
    let mut ok = 1;
    for i in 1..12 {
        p.inject_cas_mismatches(2);
        ok += usize::from(p.send(round_robin(4)(i)).status() == 200);
    }
    assert_eq!(ok, 5, "burst 5, whatever the CAS retries");
    assert!(p.metric("meshward_ratelimit.cas_retries").unwrap_or(0) >= 8);
    assert_eq!(p.metric("meshward_ratelimit.cas_exhausted"), Some(0));
}

fn request_with_id(worker: usize) -> Request {
    Request::get("/payments")
        .header("x-request-id", "req-42")
        .source("10.1.2.3:41000")
        .worker(worker)
}

#[test]
fn limited_request_gets_429_with_retry_after_and_rate_limit_headers() {
    let mut p = proxy(
        2,
        json!({"headers": {"xRateLimit": true}, "rules": [
            {"name": "per-ip", "key": {"sourceIp": true}, "limit": {"requests": 60, "per": "minute", "burst": 2}}]}),
    );
    assert_eq!(p.send(request_with_id(0)).status(), 200);
    assert_eq!(p.send(request_with_id(1)).status(), 200);
    p.advance(Duration::from_millis(300));
    let out: Outcome = p.send(request_with_id(0));
    assert_eq!(out.status(), 429);
    assert!(
        out.upstream.is_none(),
        "a limited request never reaches the upstream"
    );
    let reply = out.local_reply.as_ref().expect("a local reply");
    assert_eq!(reply.plugin, "ratelimit");
    assert_eq!(reply.details, "meshward_ratelimit_limited");
    let r = &out.response;
    assert_eq!(r.get("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"error": "rate limited", "request_id": "req-42"})
    );
    // One request per second; 0.3 s into the interval: retry in 0.7 s → 1.
    assert_eq!(r.get("retry-after"), Some("1"));
    assert_eq!(r.get("ratelimit-policy"), Some("\"per-ip\";q=60;w=60"));
    assert_eq!(r.get("ratelimit"), Some("\"per-ip\";r=0;t=2"));
    assert_eq!(r.get("x-ratelimit-limit"), Some("60"));
    assert_eq!(r.get("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.get("x-ratelimit-reset"), Some("2"));
    assert_eq!(
        decision(&out),
        Some(
            Decision::new(Verdict::Deny)
                .with_rule("per-ip")
                .with_reason("over_limit")
        )
    );
    p.advance(Duration::from_millis(700));
    assert_eq!(
        p.send(request_with_id(1)).status(),
        200,
        "retry-after was right"
    );
}

#[test]
fn retry_after_counts_whole_seconds_up() {
    let mut p = proxy(
        1,
        json!({"rules": [{"name": "slow", "limit": {"requests": 1, "per": "minute", "burst": 1}}]}),
    );
    assert_eq!(p.send(request_with_id(0)).status(), 200);
    p.advance(Duration::from_millis(10_500));
    let out = p.send(request_with_id(0));
    assert_eq!(out.status(), 429);
    assert_eq!(out.response.get("retry-after"), Some("50"), "49.5 s → 50");
}

#[test]
fn allowed_responses_carry_the_headers_when_configured() {
    let cfg = |on: bool| {
        json!({"headers": {"xRateLimit": true, "onAllowed": on}, "rules": [
            {"name": "per-ip", "key": {"sourceIp": true}, "limit": {"requests": 10, "per": "second", "burst": 5}}]})
    };
    let mut p = proxy(1, cfg(true));
    let out = p.send(request_with_id(0));
    assert_eq!(out.status(), 200);
    assert_eq!(out.response.get("x-ratelimit-remaining"), Some("4"));
    assert_eq!(out.response.get("ratelimit"), Some("\"per-ip\";r=4;t=1"));
    assert!(out.upstream_header("ratelimit").is_none(), "response only");
    let mut p = proxy(1, cfg(false));
    let out = p.send(request_with_id(0));
    assert_eq!(out.response.get("x-ratelimit-remaining"), None);
    assert_eq!(out.response.get("ratelimit"), None);
}

#[test]
fn unauthenticated_callers_are_limited_per_source_ip() {
    let mut p = proxy(
        2,
        json!({"rules": [
            {"name": "tenant", "match": {"identity": "authenticated"}, "key": {"tenant": true},
             "limit": {"requests": 1, "per": "hour", "burst": 1}},
            {"name": "anonymous", "match": {"identity": "unauthenticated"}, "key": {"sourceIp": true},
             "limit": {"requests": 1, "per": "hour", "burst": 3}}]}),
    );
    let from = |ip: &str, w: usize| Request::get("/").source(&format!("{ip}:5000")).worker(w);
    let ok = |p: &mut Proxy, ip: &str| {
        (0..6)
            .filter(|i| p.send(from(ip, i % 2)).status() == 200)
            .count()
    };
    assert_eq!(ok(&mut p, "10.0.0.1"), 3);
    assert_eq!(
        ok(&mut p, "10.0.0.2"),
        3,
        "another address has its own bucket"
    );
    assert_eq!(
        p.metric("meshward_ratelimit.rule.anonymous.limited"),
        Some(6)
    );
    assert_eq!(p.metric("meshward_ratelimit.rule.tenant.allowed"), Some(0));
}

#[test]
fn header_values_key_separate_buckets_and_match_rules() {
    let mut p = proxy(
        2,
        json!({"rules": [
            {"name": "per-key", "match": {"headers": [{"name": "x-channel", "value": "partner"}]},
             "key": {"header": "x-api-key"}, "limit": {"requests": 1, "per": "hour", "burst": 2}}]}),
    );
    let req = |key: &str, channel: &str, w: usize| {
        Request::get("/")
            .header("x-api-key", key)
            .header("x-channel", channel)
            .worker(w)
    };
    let ok = |p: &mut Proxy, key: &str, channel: &str| {
        (0..5)
            .filter(|i| p.send(req(key, channel, i % 2)).status() == 200)
            .count()
    };
    assert_eq!(ok(&mut p, "k1", "partner"), 2);
    assert_eq!(ok(&mut p, "k2", "partner"), 2);
    assert_eq!(
        ok(&mut p, "k1", "web"),
        5,
        "the rule matches only the partner channel"
    );
    // Without the key header the rule does not apply (as Envoy skips a descriptor).
    let no_key = (0..5)
        .filter(|_| {
            p.send(Request::get("/").header("x-channel", "partner"))
                .status()
                == 200
        })
        .count();
    assert_eq!(no_key, 5);
}

#[test]
fn the_key_ceiling_bounds_shared_data_and_overflowing_keys_share_a_bucket() {
    let mut p = proxy(
        4,
        json!({"maxKeys": 8, "rules": [
            {"name": "per-key", "key": {"header": "x-api-key"}, "limit": {"requests": 1, "per": "hour", "burst": 1}}]}),
    );
    let mut ok = 0;
    for i in 0..200 {
        let r = Request::get("/")
            .header("x-api-key", &format!("key-{i}"))
            .worker(i % 4);
        ok += usize::from(p.send(r).status() == 200);
    }
    let keys: Vec<String> = p
        .shared_data_keys("")
        .into_iter()
        .filter(|k| k.starts_with("meshward.ratelimit/ratelimit/"))
        .collect();
    assert_eq!(keys.len(), 9, "8 slots + 1 overflow bucket: {keys:?}");
    // 8 keys got a slot (one admission each); the other 192 share one
    // overflow bucket of burst 1: one admission.
    assert_eq!(ok, 8 + 1);
    assert_eq!(
        p.metric("meshward_ratelimit.rule.per-key.overflow"),
        Some(192)
    );
    // An hour later every slot is idle and is recycled for new keys.
    p.advance(Duration::from_secs(3600));
    let out = p.send(Request::get("/").header("x-api-key", "late-key"));
    assert_eq!(out.status(), 200);
    assert_eq!(
        p.metric("meshward_ratelimit.rule.per-key.overflow"),
        Some(192)
    );
}

#[test]
fn dry_run_admits_everything_and_counts_what_it_would_have_limited() {
    let mut p = proxy(
        2,
        json!({"dryRun": true, "rules": [{"name": "all", "limit": {"requests": 1, "per": "hour", "burst": 2}}]}),
    );
    let n = admitted(&mut p, round_robin(2), 10, Duration::ZERO);
    assert_eq!(n, 10);
    assert_eq!(p.metric("meshward_ratelimit.rule.all.allowed"), Some(2));
    assert_eq!(
        p.metric("meshward_ratelimit.rule.all.dry_run_limited"),
        Some(8)
    );
    assert_eq!(p.metric("meshward_ratelimit.rule.all.limited"), Some(0));
}

#[test]
fn two_plugins_and_two_configurations_never_share_state() {
    let cfg =
        json!({"rules": [{"name": "all", "limit": {"requests": 1, "per": "hour", "burst": 1}}]});
    let mut p = Proxy::builder()
        .workers(2)
        .plugin(limiter(cfg.clone()))
        .plugin(
            PluginSpec::new("ratelimit-edge", wasm("ratelimit"))
                .config_json(cfg.clone())
                .phase(Phase::Authz)
                .priority(50),
        )
        .build()
        .unwrap();
    // Both plugins count the first request in their own bucket: admitted.
    assert_eq!(p.send(Request::get("/")).status(), 200);
    let out = p.send(Request::get("/"));
    assert_eq!(out.status(), 429);
    assert_eq!(out.local_reply.unwrap().plugin, "ratelimit");
    // A new configuration (another generation) starts from fresh state.
    let cfg2 =
        json!({"rules": [{"name": "all", "limit": {"requests": 1, "per": "hour", "burst": 2}}]});
    p.reconfigure("ratelimit", cfg2.to_string()).unwrap();
    let out = p.send(Request::get("/"));
    assert_eq!(
        out.local_reply.map(|l| l.plugin).as_deref(),
        Some("ratelimit-edge")
    );
}

#[test]
fn bad_config_is_rejected_with_one_clear_line() {
    let rows = [
        (json!({}), "meshward-ratelimit: invalid config: .: missing field `rules`"),
        (
            json!({"rules": [{"name": "a", "limit": {"requests": 5, "per": "second", "burst": 0}}]}),
            "meshward-ratelimit: invalid config: rules[0].limit.burst: must be at least 1 (got 0)",
        ),
        (
            json!({"rules": [{"name": "a", "global": true, "limit": {"requests": 5, "per": "second"}}]}),
            "meshward-ratelimit: invalid config: rules[0].global: needs `rateLimitService` (cluster and domain) at the top level",
        ),
    ];
    for (cfg, line) in rows {
        let err = Proxy::builder()
            .plugin(limiter(cfg))
            .build()
            .err()
            .expect("rejected");
        assert_eq!(err.plugin, "ratelimit");
        let lines: Vec<&String> = err
            .logs
            .iter()
            .filter(|l| l.contains("invalid config"))
            .collect();
        assert_eq!(lines.len(), 1, "{:?}", err.logs);
        assert!(lines[0].contains(line), "{:?}", err.logs);
    }
}

// ----- global mode -----------------------------------------------------------

fn global_config(failure_mode_deny: bool) -> Value {
    json!({
        "rateLimitService": {"cluster": "rls", "domain": "bank", "timeoutMs": 40, "failureModeDeny": failure_mode_deny},
        "rules": [
            {"name": "per-ip", "key": {"sourceIp": true}, "global": true,
             "limit": {"requests": 100, "per": "second", "burst": 3}}]
    })
}

fn global_proxy(failure_mode_deny: bool) -> Proxy {
    Proxy::builder()
        .workers(2)
        .cluster("rls")
        .plugin(limiter(global_config(failure_mode_deny)))
        .build()
        .unwrap()
}

fn rls_answer(code: rls::Code, reset_secs: i64) -> Vec<u8> {
    rls::encode_response(&rls::RateLimitResponse {
        overall_code: code as i32,
        statuses: vec![rls::DescriptorStatus {
            code: code as i32,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: Some(rls::Duration {
                seconds: reset_secs,
                nanos: 0,
            }),
        }],
        response_headers_to_add: vec![rls::HeaderValue {
            key: "x-rls".into(),
            value: format!("{code:?}"),
            raw_value: vec![],
        }],
        request_headers_to_add: vec![rls::HeaderValue {
            key: "x-rls-checked".into(),
            value: "yes".into(),
            raw_value: vec![],
        }],
        raw_body: vec![],
    })
}

#[test]
fn global_ok_admits_and_the_service_sees_the_descriptors() {
    let mut p = global_proxy(false);
    p.on_grpc_call("rls", |_| GrpcReply::Message(rls_answer(rls::Code::Ok, 0)));
    let out = p.send(request_with_id(1));
    assert_eq!(out.status(), 200);
    assert_eq!(out.upstream_header("x-rls-checked"), Some("yes"));
    assert_eq!(out.response.get("x-rls"), Some("Ok"));
    let calls = p.grpc_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.service, "envoy.service.ratelimit.v3.RateLimitService");
    assert_eq!(call.method, "ShouldRateLimit");
    assert_eq!(call.timeout, Duration::from_millis(40));
    let sent = rls::decode_request(&call.message).unwrap();
    assert_eq!(sent.domain, "bank");
    assert_eq!(sent.descriptors.len(), 1);
    let entries: Vec<(&str, &str)> = sent.descriptors[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        entries,
        vec![("rule", "per-ip"), ("remote_address", "10.1.2.3")]
    );
}

#[test]
fn global_over_limit_is_a_429_with_the_services_retry_after() {
    let mut p = global_proxy(false);
    p.on_grpc_call("rls", |_| {
        GrpcReply::Message(rls_answer(rls::Code::OverLimit, 7))
    });
    let out = p.send(request_with_id(0));
    assert_eq!(out.status(), 429);
    assert!(out.upstream.is_none());
    assert_eq!(
        out.local_reply.as_ref().unwrap().details,
        "meshward_ratelimit_limited"
    );
    assert_eq!(out.response.get("retry-after"), Some("7"));
    assert_eq!(out.response.get("x-rls"), Some("OverLimit"));
    assert_eq!(
        decision(&out),
        Some(
            Decision::new(Verdict::Deny)
                .with_rule("per-ip")
                .with_reason("over_limit_global")
        )
    );
    assert_eq!(p.metric("meshward_ratelimit.rule.per-ip.limited"), Some(1));
}

#[test]
fn the_local_limit_is_checked_first_so_the_service_sees_only_admitted_traffic() {
    let mut p = global_proxy(false);
    p.on_grpc_call("rls", |_| GrpcReply::Message(rls_answer(rls::Code::Ok, 0)));
    let statuses: Vec<u16> = (0..6)
        .map(|i| p.send(request_with_id(i % 2)).status())
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    assert_eq!(
        p.grpc_calls().len(),
        3,
        "local burst of 3; the rest never asked"
    );
}

#[test]
fn global_error_fails_open_or_closed_as_configured() {
    let mut open = global_proxy(false);
    open.on_grpc_call("rls", |_| GrpcReply::Status(14, "unavailable".into()));
    let out = open.send(request_with_id(0));
    assert_eq!(out.status(), 200, "fail open");
    assert!(out.upstream.is_some());
    assert_eq!(decision(&out), Some(Decision::new(Verdict::Allow)));
    assert_eq!(open.metric("meshward_ratelimit.service_errors"), Some(1));

    let mut closed = global_proxy(true);
    closed.on_grpc_call("rls", |_| GrpcReply::Status(14, "unavailable".into()));
    let out = closed.send(request_with_id(0));
    assert_eq!(out.status(), 500, "fail closed");
    assert_eq!(
        out.local_reply.as_ref().unwrap().details,
        "meshward_ratelimit_service_error"
    );
    let body: Value = serde_json::from_slice(&out.response.body).unwrap();
    assert_eq!(body["request_id"], "req-42");
    assert_eq!(
        decision(&out),
        Some(Decision::new(Verdict::Deny).with_reason("rate_limit_service_error"))
    );
}

#[test]
fn global_timeout_fails_open_or_closed_as_configured() {
    for (deny, status) in [(false, 200), (true, 500)] {
        let mut p = global_proxy(deny);
        p.on_grpc_call("rls", |_| GrpcReply::Timeout);
        let t0 = p.now_nanos();
        let out = p.send(request_with_id(0));
        assert_eq!(out.status(), status, "failureModeDeny={deny}");
        assert_eq!(
            p.now_nanos() - t0,
            40_000_000,
            "the call's 40 ms timeout elapsed"
        );
        assert_eq!(p.metric("meshward_ratelimit.service_errors"), Some(1));
    }
}

#[test]
fn global_garbage_answer_is_an_error_not_a_trap() {
    let mut p = global_proxy(false);
    p.on_grpc_call("rls", |_| GrpcReply::Message(vec![0x0a, 0xff, 0x01]));
    let out = p.send(request_with_id(0));
    assert_eq!(out.status(), 200);
    assert_eq!(p.metric("meshward_ratelimit.service_errors"), Some(1));
    // The VM is still healthy.
    assert_eq!(p.send(request_with_id(0)).status(), 200);
}

#[test]
fn the_shipped_bank_manifest_loads_and_limits_unauthenticated_callers_by_ip() {
    let manifest =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasmplugins/base/ratelimit.yaml");
    let mut p = Proxy::builder()
        .workers(2)
        .wasm_dir(wasm("ratelimit").parent().unwrap())
        .manifests(&[manifest])
        .unwrap()
        .build()
        .unwrap();
    // `unauthenticated-per-ip`: burst 40 at 20/s.
    let statuses: Vec<u16> = (0..45)
        .map(|i| {
            p.send(
                Request::get("/healthz")
                    .source("10.9.9.9:1234")
                    .worker(i % 2),
            )
            .status()
        })
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 40);
    let out = p.send(Request::get("/healthz").source("10.9.9.9:1234"));
    assert_eq!(out.status(), 429);
    assert!(
        out.response.get("x-ratelimit-limit").is_some(),
        "xRateLimit is on in the manifest"
    );
    assert_eq!(
        p.send(Request::get("/healthz").source("10.9.9.10:1234"))
            .status(),
        200
    );
}

// ----- with the tenant filter (identity) and the audit filter (decision) ----

fn identity_chain(config: Value) -> Proxy {
    Proxy::builder()
        .workers(2)
        .node_metadata("NAMESPACE", "bank-a")
        .plugin(
            PluginSpec::new("tenant", wasm("tenant"))
                .config_json(json!({"tenants": ["bank-a", "bank-b"]}))
                .phase(Phase::Authz)
                .priority(200),
        )
        .plugin(limiter(config))
        .plugin(
            PluginSpec::new("audit", wasm("audit"))
                .config_json(json!({"signing": {"activeKeyId": "k1", "keys": [{"id": "k1"}]}}))
                .env("MESHWARD_AUDIT_KEY_K1", "k1-ratelimit-test-secret-0001")
                .phase(Phase::Stats)
                .fail_strategy(FailStrategy::FailClose),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The ratelimit decision of each audit record, in order: (outcome, rule).
fn ratelimit_decisions(p: &Proxy) -> Vec<(String, Option<String>)> {
    p.logs()
        .iter()
        .filter(|l| l.message.contains(LOG_PREFIX))
        .flat_map(|l| extract_record_lines(&l.message))
        .map(|line| {
            let rec: Value = serde_json::from_str(&line).unwrap();
            let d = &rec["decisions"]["ratelimit"];
            (
                d["outcome"].as_str().unwrap_or("absent").to_string(),
                d["rule"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn per_caller_inside_per_tenant_both_hold_and_a_rejection_spends_no_tenant_quota() {
    let mut p = identity_chain(json!({"rules": [
        {"name": "per-tenant", "match": {"identity": "authenticated"}, "key": {"tenant": true},
         "limit": {"requests": 1, "per": "hour", "burst": 3}},
        {"name": "per-caller", "match": {"identity": "authenticated"}, "key": {"principal": true},
         "limit": {"requests": 1, "per": "hour", "burst": 2}}]}));
    let ca = TestCa::new("meshward ratelimit test CA").unwrap();
    let web = ca.issue("spiffe://cluster.local/ns/bank-a/sa/web").unwrap();
    let api = ca.issue("spiffe://cluster.local/ns/bank-a/sa/api").unwrap();
    let call = |p: &mut Proxy, who: &str, w: usize| {
        p.send(
            Request::get("/accounts/1")
                .authority("api.bank-a")
                .peer_certificate_pem(who.to_string())
                .worker(w),
        )
        .status()
    };
    // web: its own burst of 2, then limited by per-caller.
    let web_statuses: Vec<u16> = (0..3).map(|i| call(&mut p, &web.cert_pem, i % 2)).collect();
    assert_eq!(web_statuses, vec![200, 200, 429]);
    // api: the tenant has 3 - 2 = 1 left (web's rejected request spent none).
    let api_statuses: Vec<u16> = (0..2).map(|i| call(&mut p, &api.cert_pem, i % 2)).collect();
    assert_eq!(api_statuses, vec![200, 429]);
    let allow = ("allow".to_string(), None);
    let deny = |rule: &str| ("deny".to_string(), Some(rule.to_string()));
    assert_eq!(
        ratelimit_decisions(&p),
        vec![
            allow.clone(),
            allow.clone(),
            deny("per-caller"),
            allow,
            deny("per-tenant")
        ],
        "the decision in filter state reaches the audit record"
    );
}

#[test]
fn dry_run_decision_reaches_the_audit_record() {
    let mut p = identity_chain(json!({"rules": [
        {"name": "per-caller", "dryRun": true, "key": {"principal": true},
         "limit": {"requests": 1, "per": "hour", "burst": 1}}]}));
    let ca = TestCa::new("meshward ratelimit test CA").unwrap();
    let web = ca.issue("spiffe://cluster.local/ns/bank-a/sa/web").unwrap();
    for _ in 0..2 {
        let out = p.send(
            Request::get("/accounts/1")
                .authority("api.bank-a")
                .peer_certificate_pem(web.cert_pem.clone()),
        );
        assert_eq!(out.status(), 200);
    }
    assert_eq!(
        ratelimit_decisions(&p),
        vec![
            ("allow".to_string(), None),
            ("dry_run_deny".to_string(), Some("per-caller".to_string()))
        ]
    );
}
