//! The audit filter in the harness: forged headers, signed audit headers, key
//! rotation, the decisions of earlier filters, chained records, the collector
//! export (failures, time-outs, a bounded queue) and redaction — asserted on
//! what the upstream received, what the client got, the records written and
//! what a verifier makes of them.

use meshward_harness::certs::TestCa;
use meshward_harness::{CallReply, FailStrategy, Phase, PluginSpec, Proxy, Request, Response};
use meshward_shared::audit::{
    extract_record_lines, verify_header, AuditClaims, ChainReport, ChainVerifier, HeaderError,
    Keyring, ProblemKind, LOG_PREFIX,
};
use meshward_shared::filter_state::Outcome;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const K1: &str = "k1-audit-secret-for-tests-0001";
const K2: &str = "k2-audit-secret-for-tests-0002";
const COLLECTOR: &str = "collector";

fn wasm(name: &str) -> PathBuf {
    meshward_harness::manifest::default_wasm_dir().join(format!("meshward_{name}.wasm"))
}

fn keys(pairs: &[(&str, &str)]) -> Keyring {
    let mut ring = Keyring::new();
    for (id, secret) in pairs {
        ring.insert(id, secret.as_bytes()).unwrap();
    }
    ring
}

fn signed_config() -> Value {
    json!({"signing": {"activeKeyId": "k1", "keys": [{"id": "k1"}]}})
}

fn audit_plugin(config: Value) -> PluginSpec {
    PluginSpec::new("audit", wasm("audit"))
        .config_json(config)
        .env("MESHWARD_AUDIT_KEY_K1", K1)
        .env("MESHWARD_AUDIT_KEY_K2", K2)
        .phase(Phase::Stats)
        .fail_strategy(FailStrategy::FailClose)
}

fn proxy(config: Value) -> Proxy {
    Proxy::builder()
        .cluster(COLLECTOR)
        .plugin(audit_plugin(config))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn with_export(mut config: Value, export: Value) -> Value {
    let mut e = json!({"cluster": COLLECTOR, "flushIntervalMs": 1000, "timeoutMs": 500});
    for (k, v) in export.as_object().unwrap() {
        e[k] = v.clone();
    }
    config["export"] = e;
    config
}

/// The record lines the filter wrote to Envoy's log so far.
fn logged_records(proxy: &Proxy) -> Vec<String> {
    proxy
        .logs()
        .iter()
        .filter(|l| l.message.contains(LOG_PREFIX))
        .flat_map(|l| extract_record_lines(&l.message))
        .collect()
}

/// The record lines the collector received, in arrival order.
fn exported_records(proxy: &Proxy) -> Vec<String> {
    proxy
        .http_calls()
        .iter()
        .filter(|c| c.cluster == COLLECTOR)
        .flat_map(|c| extract_record_lines(&String::from_utf8_lossy(&c.body)))
        .collect()
}

fn verify(lines: &[String], keys: &Keyring) -> ChainReport {
    let mut v = ChainVerifier::new(keys);
    for (i, l) in lines.iter().enumerate() {
        v.push_line(i + 1, l);
    }
    v.finish()
}

fn record(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

fn upstream_claims(
    out: &meshward_harness::Outcome,
    keys: &Keyring,
) -> Result<AuditClaims, HeaderError> {
    let value = out
        .upstream_header("x-meshward-audit")
        .expect("audit header");
    let sig = out
        .upstream_header("x-meshward-audit-signature")
        .expect("signature header");
    verify_header(value, sig, keys)
}

fn count_header(out: &meshward_harness::Outcome, name: &str) -> usize {
    out.upstream
        .as_ref()
        .map_or(0, |u| u.headers.iter().filter(|(k, _)| k == name).count())
}

#[test]
fn forged_audit_headers_from_the_client_never_reach_the_upstream() {
    let mut proxy = proxy(signed_config());
    let out = proxy.send(
        Request::get("/accounts/1")
            .authority("api.bank-a")
            .header(
                "x-meshward-audit",
                "v=1;id=forged;t=1;tenant=bank-a;m=GET;p=/",
            )
            .header(
                "x-meshward-audit-signature",
                "kid=k1;alg=hmac-sha256;sig=00",
            )
            .header("x-meshward-tenant", "bank-a"),
    );
    assert_eq!(out.status(), 200);
    assert_eq!(count_header(&out, "x-meshward-audit"), 1);
    assert_eq!(count_header(&out, "x-meshward-audit-signature"), 1);
    assert_eq!(out.upstream_header("x-meshward-tenant"), None);
    let claims = upstream_claims(&out, &keys(&[("k1", K1)])).unwrap();
    assert_ne!(claims.request_id, "forged");
    assert_eq!(claims.tenant, None, "the client's tenant claim is gone");
    assert_eq!(
        proxy.metric("meshward_audit.forged_headers_removed"),
        Some(3)
    );
}

#[test]
fn signature_verifies_with_the_right_key_and_fails_with_another() {
    let mut proxy = proxy(signed_config());
    let out =
        proxy.send(Request::post("/transfer", b"{}".to_vec()).authority("transaction.bank-a"));
    let claims = upstream_claims(&out, &keys(&[("k1", K1)])).unwrap();
    assert_eq!(claims.method, "POST");
    assert_eq!(claims.path, "/transfer");
    assert_eq!(claims.destination.as_deref(), Some("transaction.bank-a"));
    assert_eq!(claims.time_unix_ms, proxy.now_nanos() / 1_000_000);
    assert_eq!(
        upstream_claims(&out, &keys(&[("k1", K2)])),
        Err(HeaderError::BadSignature("k1".into()))
    );
    assert_eq!(
        upstream_claims(&out, &keys(&[("k2", K2)])),
        Err(HeaderError::UnknownKey("k1".into()))
    );
    assert_eq!(proxy.metric("meshward_audit.headers_signed"), Some(1));
}

#[test]
fn rotating_the_active_key_signs_with_the_new_key_and_keeps_the_chain() {
    let two_keys = |active: &str| json!({"signing": {"activeKeyId": active, "keys": [{"id": "k1"}, {"id": "k2"}]}});
    let mut proxy = proxy(two_keys("k1"));
    let before = proxy.send(Request::get("/a"));
    proxy
        .reconfigure("audit", two_keys("k2").to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let after = proxy.send(Request::get("/b"));

    let both = keys(&[("k1", K1), ("k2", K2)]);
    assert!(before
        .upstream_header("x-meshward-audit-signature")
        .unwrap()
        .starts_with("kid=k1;"));
    assert!(after
        .upstream_header("x-meshward-audit-signature")
        .unwrap()
        .starts_with("kid=k2;"));
    assert!(upstream_claims(&before, &both).is_ok());
    assert!(upstream_claims(&after, &both).is_ok());
    assert!(
        upstream_claims(&after, &keys(&[("k1", K1)])).is_err(),
        "k1 alone no longer verifies"
    );

    let records = logged_records(&proxy);
    assert_eq!(records.len(), 2);
    assert_eq!(record(&records[0])["kid"], "k1");
    assert_eq!(record(&records[1])["kid"], "k2");
    let report = verify(&records, &both);
    assert!(report.is_ok(), "{report}");
}

#[test]
fn a_missing_key_is_a_config_error_that_never_shows_a_secret() {
    let err = Proxy::builder()
        .plugin(
            PluginSpec::new("audit", wasm("audit"))
                .config_json(json!({"signing": {"activeKeyId": "k1",
                    "keys": [{"id": "k1"}, {"id": "k3"}]}}))
                .env("MESHWARD_AUDIT_KEY_K1", K1),
        )
        .build()
        .err()
        .expect("config must be rejected");
    let text = err.to_string();
    assert!(
        text.contains("meshward-audit: invalid config: signing.keys[1]: key \"k3\": environment variable MESHWARD_AUDIT_KEY_K3 is not set"),
        "{text}"
    );
    assert!(!text.contains(K1), "{text}");

    // Signing turned off explicitly needs no key, and signs nothing.
    let mut proxy = proxy(json!({"signing": {"enabled": false}}));
    let out = proxy.send(Request::get("/"));
    assert!(out.upstream_header("x-meshward-audit").is_some());
    assert_eq!(out.upstream_header("x-meshward-audit-signature"), None);
}

#[test]
fn secrets_never_appear_in_logs() {
    let mut proxy = proxy(with_export(signed_config(), json!({})));
    proxy.send(Request::get("/"));
    proxy.advance(Duration::from_secs(3));
    for line in proxy.logs() {
        assert!(!line.message.contains(K1), "{}", line.message);
    }
}

#[test]
fn request_id_is_kept_or_created_and_echoed_to_the_client() {
    // Envoy's id (the harness generates one like Envoy) is kept.
    let mut proxy = proxy(signed_config());
    let out = proxy.send(Request::get("/").header("x-request-id", "envoy-generated-id-1"));
    assert_eq!(
        out.upstream_header("x-request-id"),
        Some("envoy-generated-id-1")
    );
    assert_eq!(
        out.response.get("x-request-id"),
        Some("envoy-generated-id-1")
    );
    let claims = upstream_claims(&out, &keys(&[("k1", K1)])).unwrap();
    assert_eq!(claims.request_id, "envoy-generated-id-1");

    // Without one, the filter creates a v4 UUID.
    let mut proxy = Proxy::builder()
        .generate_request_id(false)
        .plugin(audit_plugin(signed_config()))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = proxy.send(Request::get("/"));
    let id = out
        .upstream_header("x-request-id")
        .expect("created id")
        .to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.as_bytes()[14], b'4', "{id} is a v4 UUID");
    assert_eq!(out.response.get("x-request-id"), Some(id.as_str()));
    assert_eq!(
        upstream_claims(&out, &keys(&[("k1", K1)]))
            .unwrap()
            .request_id,
        id
    );
    assert_eq!(record(&logged_records(&proxy)[0])["requestId"], id.as_str());
    let other = proxy.send(Request::get("/"));
    assert_ne!(other.upstream_header("x-request-id"), Some(id.as_str()));
    assert_eq!(
        proxy.metric("meshward_audit.request_ids_generated"),
        Some(2)
    );
}

fn tenant_chain() -> Proxy {
    Proxy::builder()
        .node_metadata("NAMESPACE", "bank-a")
        .plugin(
            PluginSpec::new("tenant", wasm("tenant"))
                .config_json(json!({"tenants": ["bank-a", "bank-b"]}))
                .phase(Phase::Authz)
                .priority(100),
        )
        .plugin(audit_plugin(signed_config()))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_tenant_filters_decision_and_identity_appear_and_absent_filters_stay_absent() {
    let ca = TestCa::new("meshward audit test CA").unwrap();
    let caller = ca.issue("spiffe://cluster.local/ns/bank-a/sa/web").unwrap();
    let mut proxy = tenant_chain();
    let out = proxy.send(
        Request::get("/accounts/1")
            .authority("api.bank-a")
            .peer_certificate_pem(caller.cert_pem.clone()),
    );
    assert_eq!(out.status(), 200, "{:?}", out.logs);
    let claims = upstream_claims(&out, &keys(&[("k1", K1)])).unwrap();
    assert_eq!(claims.tenant.as_deref(), Some("bank-a"));
    assert_eq!(
        claims.principal.as_deref(),
        Some("spiffe://cluster.local/ns/bank-a/sa/web")
    );
    assert_eq!(
        claims.authz.as_ref().map(|d| d.outcome),
        Some(Outcome::Allow)
    );
    assert_eq!(claims.waf, None, "waf did not run: absent, not allowed");
    assert_eq!(
        claims.ratelimit, None,
        "ratelimit did not run: absent, not allowed"
    );
    let header = out.upstream_header("x-meshward-audit").unwrap();
    assert!(header.contains(";d.tenant=allow"), "{header}");
    assert!(!header.contains("d.waf"), "{header}");

    let rec = record(&logged_records(&proxy)[0]);
    assert_eq!(rec["decisions"]["tenant"]["outcome"], "allow");
    assert_eq!(rec["decisions"]["waf"], Value::Null);
    assert_eq!(rec["decisions"]["ratelimit"], Value::Null);
    assert_eq!(rec["tenant"], "bank-a");
}

#[test]
fn a_request_denied_by_an_earlier_filter_is_still_recorded_with_that_decision() {
    let ca = TestCa::new("meshward audit test CA").unwrap();
    let caller = ca.issue("spiffe://cluster.local/ns/bank-b/sa/api").unwrap();
    let mut proxy = tenant_chain();
    let out = proxy.send(
        Request::get("/accounts/1")
            .authority("api.bank-a")
            .peer_certificate_pem(caller.cert_pem.clone()),
    );
    assert_eq!(out.status(), 403);
    assert!(out.upstream.is_none());
    let request_id = out
        .response
        .get("x-request-id")
        .expect("request id echoed")
        .to_string();
    let records = logged_records(&proxy);
    assert_eq!(records.len(), 1);
    let rec = record(&records[0]);
    assert_eq!(rec["status"], 403);
    assert_eq!(rec["requestId"], request_id.as_str());
    assert_eq!(rec["decisions"]["tenant"]["outcome"], "deny");
    assert_eq!(rec["principal"], "spiffe://cluster.local/ns/bank-b/sa/api");
    assert!(verify(&records, &keys(&[("k1", K1)])).is_ok());
}

#[test]
fn records_chain_across_requests_and_workers() {
    let mut proxy = Proxy::builder()
        .workers(2)
        .plugin(audit_plugin(signed_config()))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..6 {
        proxy.send(Request::get(&format!("/r/{i}")).worker(i % 2));
    }
    let records = logged_records(&proxy);
    assert_eq!(records.len(), 6);
    let report = verify(&records, &keys(&[("k1", K1)]));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.streams, 2, "one chain per worker VM");
    let first = record(&records[0]);
    let third = record(&records[2]);
    assert_eq!(first["stream"], third["stream"]);
    assert_eq!(first["seq"], 1);
    assert_eq!(third["seq"], 2);
    assert_eq!(third["prev"], first["hash"]);
    assert_eq!(proxy.metric("meshward_audit.records"), Some(6));
}

#[test]
fn the_verifier_catches_a_removed_an_altered_and_a_reordered_record() {
    let mut proxy = proxy(signed_config());
    for i in 0..4 {
        proxy.send(Request::get(&format!("/r/{i}")));
    }
    let records = logged_records(&proxy);
    let ring = keys(&[("k1", K1)]);
    assert!(verify(&records, &ring).is_ok());

    let mut removed = records.clone();
    removed.remove(1);
    let kinds: Vec<ProblemKind> = verify(&removed, &ring)
        .problems
        .into_iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(kinds, vec![ProblemKind::Missing { from: 2, to: 2 }]);

    let mut altered = records.clone();
    altered[2] = altered[2].replace("\"/r/2\"", "\"/r/9\"");
    let kinds: Vec<ProblemKind> = verify(&altered, &ring)
        .problems
        .into_iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(kinds, vec![ProblemKind::Altered]);

    let mut reordered = records.clone();
    reordered.swap(0, 1);
    let report = verify(&reordered, &ring);
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::OutOfOrder { after_seq: 2, .. }
    ));
}

#[test]
fn sensitive_headers_and_card_numbers_are_never_recorded_in_clear() {
    let mut config = signed_config();
    config["redaction"] = json!({
        "headers": ["authorization", "cookie", "set-cookie"],
        "patterns": [{"name": "pan", "regex": r"\b(?:\d[ -]?){12,18}\d\b"}]
    });
    let mut proxy = proxy(config);
    proxy.set_upstream(|_| {
        Response::new(200)
            .header("set-cookie", "session=server-secret")
            .body(b"ok".to_vec())
    });
    let out = proxy.send(
        Request::get("/pay?card=4111111111111111")
            .header("authorization", "Bearer client-secret-token")
            .header("cookie", "sid=cookie-secret")
            .header("x-card", "4111 1111 1111 1111"),
    );
    // The upstream still gets what the client sent: redaction is for records.
    assert_eq!(
        out.upstream_header("authorization"),
        Some("Bearer client-secret-token")
    );
    let records = logged_records(&proxy);
    let line = &records[0];
    for secret in [
        "client-secret-token",
        "cookie-secret",
        "server-secret",
        "4111",
    ] {
        assert!(!line.contains(secret), "{secret} in {line}");
    }
    let rec = record(line);
    assert_eq!(rec["path"], "/pay?card=[masked:pan]");
    let header = |list: &str, name: &str| -> Value {
        rec[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == name)
            .map(|p| p[1].clone())
            .unwrap()
    };
    assert_eq!(header("requestHeaders", "authorization"), "[redacted]");
    assert_eq!(header("requestHeaders", "cookie"), "[redacted]");
    assert_eq!(header("requestHeaders", "x-card"), "[masked:pan]");
    assert_eq!(header("responseHeaders", "set-cookie"), "[redacted]");
    assert!(verify(&records, &keys(&[("k1", K1)])).is_ok());
}

#[test]
fn records_are_exported_to_the_collector_as_otlp_json_logs() {
    let mut proxy = proxy(with_export(signed_config(), json!({"batchSize": 10})));
    proxy.on_http_call(COLLECTOR, |_| {
        CallReply::response(200, vec![], b"{}".to_vec())
    });
    for i in 0..3 {
        proxy.send(Request::get(&format!("/r/{i}")));
    }
    assert!(
        proxy.http_calls().is_empty(),
        "batched, not one call per request"
    );
    proxy.advance(Duration::from_millis(1000));
    let calls = proxy.http_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/v1/logs"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    let log_records = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    assert_eq!(log_records.as_array().unwrap().len(), 3);
    assert_eq!(log_records[0]["severityNumber"], 9);
    assert!(log_records[0]["timeUnixNano"].is_string());
    let exported = exported_records(&proxy);
    assert_eq!(
        exported,
        logged_records(&proxy),
        "the collector gets the same records"
    );
    assert!(verify(&exported, &keys(&[("k1", K1)])).is_ok());
    assert_eq!(proxy.metric("meshward_audit.export_records_sent"), Some(3));
    assert_eq!(proxy.metric("meshward_audit.export_queue_depth"), Some(0));
}

#[test]
fn a_failing_collector_gets_every_record_once_it_recovers() {
    let mut proxy = proxy(with_export(signed_config(), json!({"batchSize": 2})));
    let up = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = up.clone();
    let delivered = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let sink = delivered.clone();
    proxy.on_http_call(COLLECTOR, move |call| {
        if flag.get() {
            sink.borrow_mut()
                .extend(extract_record_lines(&String::from_utf8_lossy(&call.body)));
            CallReply::response(200, vec![], Vec::new())
        } else {
            CallReply::Failure
        }
    });
    for i in 0..5 {
        proxy.send(Request::get(&format!("/r/{i}")));
    }
    proxy.advance(Duration::from_secs(8));
    assert!(proxy.metric("meshward_audit.export_failed").unwrap_or(0) >= 2);
    assert!(delivered.borrow().is_empty());
    assert_eq!(proxy.metric("meshward_audit.export_queue_depth"), Some(5));
    assert!(proxy.logs().iter().any(|l| l
        .message
        .contains("export to cluster \"collector\" failed or timed out; will retry")));

    up.set(true);
    proxy.advance(Duration::from_secs(40));
    let got = delivered.borrow().clone();
    assert_eq!(got.len(), 5);
    let report = verify(&got, &keys(&[("k1", K1)]));
    assert!(report.is_ok(), "in order, nothing missing: {report}");
    assert_eq!(
        proxy.metric("meshward_audit.export_dropped").unwrap_or(0),
        0
    );
    assert_eq!(proxy.metric("meshward_audit.export_records_sent"), Some(5));
}

#[test]
fn a_collector_that_times_out_is_retried() {
    let mut proxy = proxy(with_export(signed_config(), json!({"timeoutMs": 500})));
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let n = calls.clone();
    proxy.on_http_call(COLLECTOR, move |_| {
        n.set(n.get() + 1);
        if n.get() == 1 {
            CallReply::Timeout
        } else {
            CallReply::response(200, vec![], Vec::new())
        }
    });
    proxy.send(Request::get("/"));
    proxy.advance(Duration::from_millis(1000));
    assert_eq!(calls.get(), 1);
    proxy.advance(Duration::from_millis(600));
    assert_eq!(proxy.metric("meshward_audit.export_failed"), Some(1));
    proxy.advance(Duration::from_secs(3));
    assert_eq!(calls.get(), 2);
    assert_eq!(proxy.metric("meshward_audit.export_records_sent"), Some(1));
    assert_eq!(proxy.http_calls()[0].timeout, Duration::from_millis(500));
}

#[test]
fn a_full_export_queue_drops_and_counts_and_the_verifier_sees_the_gap() {
    let mut proxy = proxy(with_export(
        signed_config(),
        json!({"batchSize": 5, "queueLimit": 5}),
    ));
    let up = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = up.clone();
    proxy.on_http_call(COLLECTOR, move |_| {
        if flag.get() {
            CallReply::response(200, vec![], Vec::new())
        } else {
            CallReply::response(503, vec![], Vec::new())
        }
    });
    for i in 0..8 {
        proxy.send(Request::get(&format!("/r/{i}")));
    }
    assert_eq!(proxy.metric("meshward_audit.export_dropped"), Some(3));
    assert_eq!(
        proxy.metric("meshward_audit.records"),
        Some(8),
        "the log still has all"
    );
    assert!(proxy
        .logs()
        .iter()
        .any(|l| l.message.contains("export queue full")));
    up.set(true);
    proxy.advance(Duration::from_secs(5));
    assert_eq!(exported_records(&proxy).len(), 5);
    proxy.send(Request::get("/after"));
    proxy.advance(Duration::from_secs(2));
    // The collector's copy: seq 1..=5, then seq 9 after the gap.
    let collector_copy = exported_records(&proxy);
    let report = verify(&collector_copy, &keys(&[("k1", K1)]));
    let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![ProblemKind::Missing { from: 6, to: 8 }],
        "{report}"
    );
}

#[test]
fn the_manifest_loads_with_its_host_key_and_signs_with_k1() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasmplugins/base/audit.yaml");
    let mut proxy = Proxy::builder()
        .host_env("MESHWARD_AUDIT_KEY_K1", K1)
        .cluster("outbound|4318||otel-collector.shared.svc.cluster.local")
        .manifests(&[manifest])
        .unwrap()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = proxy.send(Request::get("/pay?card=4111111111111111"));
    assert!(upstream_claims(&out, &keys(&[("k1", K1)])).is_ok());
    let rec = record(&logged_records(&proxy)[0]);
    assert_eq!(rec["path"], "/pay?card=[masked:pan]");
}
