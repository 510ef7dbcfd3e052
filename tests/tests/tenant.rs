//! The tenant filter over the built `.wasm`, in the harness: every decision
//! path, the spoofing attempts a caller can make, the per-connection identity
//! cache, dry-run, and configuration rejection. Certificates are minted at
//! test time (`meshward_harness::certs`), valid at the harness's virtual clock.

use meshward_harness::certs::{LeafKeyUsage, SvidSpec, TestCa};
use meshward_harness::{Outcome, PluginSpec, Proxy, Request, DEFAULT_START_NANOS};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

const GW: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
const A_WEB: &str = "spiffe://cluster.local/ns/bank-a/sa/web";
const A_API: &str = "spiffe://cluster.local/ns/bank-a/sa/api";
const B_API: &str = "spiffe://cluster.local/ns/bank-b/sa/api";
const B_BATCH: &str = "spiffe://cluster.local/ns/bank-b/sa/batch";
const NOW: i64 = (DEFAULT_START_NANOS / 1_000_000_000) as i64;

fn wasm() -> PathBuf {
    let dir = std::env::var_os("MESHWARD_WASM_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release"),
        PathBuf::from,
    );
    dir.join("meshward_tenant.wasm")
}

fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("meshward tenant tests").expect("test CA"))
}

/// A well-formed SVID for `id`, PEM.
fn svid(id: &str) -> String {
    ca().issue(id).expect("svid").cert_pem
}

fn minted(spec: SvidSpec) -> String {
    ca().svid(&spec).expect("svid").cert_pem
}

/// The bank mesh's policy (as in wasmplugins/base/tenant.yaml, plus a cross-tenant
/// ALLOW rule and a DENY rule to exercise those paths).
fn bank_config() -> Value {
    json!({
        "trustDomain": "cluster.local",
        "trustDomainAliases": ["old.local"],
        "tenants": ["bank-a", "bank-b", "shared"],
        "trustedForwarders": [GW],
        "publicPaths": ["/healthz"],
        "rules": [
            {"name": "ingress-to-bank-apis", "action": "ALLOW", "to": ["bank-a", "bank-b"],
             "from": {"principals": ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]}},
            {"name": "bank-b-reads-bank-a-rates", "action": "ALLOW", "to": ["bank-a"],
             "from": {"namespaces": ["bank-b"]}, "methods": ["GET"], "paths": ["/rates/{**}"]},
            {"name": "no-admin", "action": "DENY", "paths": ["/admin/*"]},
            {"name": "block-bank-b-batch", "action": "DENY",
             "from": {"principals": ["cluster.local/ns/bank-b/sa/batch"]}}
        ]
    })
}

fn proxy_with(destination: &str, config: Value) -> Proxy {
    Proxy::builder()
        .node_metadata("NAMESPACE", destination)
        .plugin(PluginSpec::new("tenant", wasm()).config_json(config))
        .build()
        .expect("tenant filter loads")
}

fn proxy(destination: &str) -> Proxy {
    proxy_with(destination, bank_config())
}

fn from(id: &str, path: &str) -> Request {
    Request::get(path).peer_certificate_pem(svid(id))
}

fn body(out: &Outcome) -> Value {
    serde_json::from_slice(&out.response.body).unwrap_or(Value::Null)
}

/// Asserts a 403 from the tenant filter with `reason`, never reaching upstream.
#[track_caller]
fn assert_denied(out: &Outcome, reason: &str) {
    assert_eq!(
        out.status(),
        403,
        "body {:?} logs {:?}",
        String::from_utf8_lossy(&out.response.body),
        out.logs
    );
    assert!(
        out.upstream.is_none(),
        "a denied request must not reach the upstream"
    );
    let reply = out.local_reply.as_ref().expect("a local reply");
    // The plugin's name: `tenant`, or the WasmPlugin's `meshward-tenant`.
    assert!(reply.plugin.ends_with("tenant"), "{}", reply.plugin);
    assert_eq!(reply.details, "meshward_tenant_denied");
    assert_eq!(out.response.get("content-type"), Some("application/json"));
    let b = body(out);
    assert_eq!(b["error"], "tenant_denied");
    assert_eq!(b["reason"], reason, "{b}");
}

#[track_caller]
fn assert_allowed(out: &Outcome) {
    assert_eq!(
        out.status(),
        200,
        "body {:?} logs {:?}",
        String::from_utf8_lossy(&out.response.body),
        out.logs
    );
    assert!(out.upstream.is_some());
}

// ---------------------------------------------------------------- decisions

#[test]
fn same_tenant_call_is_allowed_and_counted() {
    let mut p = proxy("bank-a");
    assert_allowed(&p.send(from(A_WEB, "/accounts/1")));
    assert_eq!(p.metric("meshward_tenant.allowed.bank-a"), Some(1));
}

#[test]
fn cross_tenant_call_is_denied_with_reason_request_id_and_metric() {
    let mut p = proxy("bank-a");
    let out = p.send(from(B_API, "/accounts/1").header("x-request-id", "req-42"));
    assert_denied(&out, "cross_tenant");
    assert_eq!(body(&out)["request_id"], "req-42");
    assert_eq!(
        p.metric("meshward_tenant.denied.bank-b.cross_tenant"),
        Some(1)
    );
    assert_eq!(p.metric("meshward_tenant.allowed.bank-b"), None);
    assert!(
        out.logs.iter().any(|l| l.message.contains("denied")
            && l.message.contains(B_API)
            && l.message.contains("reason=cross_tenant")
            && l.message.contains("request_id=req-42")),
        "{:?}",
        out.logs
    );
}

#[test]
fn an_allow_rule_admits_only_the_named_cross_tenant_route() {
    let mut p = proxy("bank-a");
    assert_allowed(&p.send(from(B_API, "/rates/eur/usd")));
    assert_denied(
        &p.send(Request::new("POST", "/rates/eur").peer_certificate_pem(svid(B_API))),
        "cross_tenant",
    );
    assert_denied(&p.send(from(B_API, "/accounts/1")), "cross_tenant");
    assert_denied(
        &p.send(from(B_API, "/rates/eur/../../accounts/1")),
        "cross_tenant",
    );
    // The rule is for bank-a as destination only.
    let mut b = proxy("bank-b");
    assert_denied(&b.send(from(A_API, "/rates/eur")), "cross_tenant");
}

#[test]
fn deny_rules_come_before_allow_rules_and_same_tenant() {
    let mut p = proxy("bank-b");
    assert_denied(&p.send(from(B_BATCH, "/accounts/1")), "deny_rule");
    assert_denied(&p.send(from(B_API, "/admin/users")), "deny_rule");
    assert_allowed(&p.send(from(B_API, "/accounts/1")));
    assert_eq!(p.metric("meshward_tenant.denied.bank-b.deny_rule"), Some(2));
}

#[test]
fn shared_services_accept_any_authenticated_caller_of_the_trust_domains() {
    let mut p = proxy("shared");
    assert_allowed(&p.send(from(A_API, "/logs")));
    assert_allowed(&p.send(from(B_API, "/logs")));
    assert_allowed(&p.send(from("spiffe://old.local/ns/bank-b/sa/api", "/logs")));
    assert_denied(&p.send(Request::get("/logs")), "unauthenticated");
    assert_denied(
        &p.send(from("spiffe://evil.example/ns/bank-a/sa/api", "/logs")),
        "unknown_trust_domain",
    );
    assert_denied(&p.send(from(B_BATCH, "/logs")), "deny_rule");
}

#[test]
fn shared_access_can_be_narrowed() {
    let mut config = bank_config();
    config["sharedAccess"] = json!({"namespaces": ["bank-a"]});
    let mut p = proxy_with("shared", config);
    assert_allowed(&p.send(from(A_API, "/secrets/x")));
    assert_denied(&p.send(from(B_API, "/secrets/x")), "shared_not_allowed");
}

#[test]
fn unknown_trust_domains_are_denied_even_for_a_matching_namespace() {
    let mut p = proxy("bank-a");
    let out = p.send(from(
        "spiffe://evil.example/ns/bank-a/sa/web",
        "/accounts/1",
    ));
    assert_denied(&out, "unknown_trust_domain");
    assert_eq!(
        p.metric("meshward_tenant.denied.unauthenticated.unknown_trust_domain"),
        Some(1)
    );
}

#[test]
fn trust_domain_aliases_are_the_same_tenant() {
    let mut p = proxy("bank-a");
    assert_allowed(&p.send(from("spiffe://old.local/ns/bank-a/sa/web", "/accounts/1")));
}

#[test]
fn plaintext_requests_reach_only_public_paths() {
    let mut p = proxy("bank-a");
    assert_allowed(&p.send(Request::get("/healthz")));
    assert_allowed(&p.send(Request::get("/healthz?verbose=1")));
    assert_denied(&p.send(Request::get("/accounts/1")), "unauthenticated");
    assert_denied(
        &p.send(Request::get("/healthz/../accounts/1")),
        "unauthenticated",
    );
    assert_denied(
        &p.send(Request::get("/healthz/%2e%2e/accounts/1")),
        "unauthenticated",
    );
    assert_eq!(p.metric("meshward_tenant.allowed.unauthenticated"), Some(2));
    assert_eq!(
        p.metric("meshward_tenant.denied.unauthenticated.unauthenticated"),
        Some(3)
    );
    // An encoded slash makes the path ambiguous: never public, and it
    // satisfies the path-conditioned DENY rule (`/admin/*`) of this config.
    assert_denied(
        &p.send(Request::get("/healthz%2f..%2faccounts")),
        "deny_rule",
    );
}

#[test]
fn the_ingress_gateway_reaches_bank_apis_through_its_allow_rule() {
    let mut p = proxy("bank-b");
    assert_allowed(&p.send(from(GW, "/accounts/1")));
}

#[test]
fn dry_run_decides_records_and_counts_but_does_not_enforce() {
    let mut config = bank_config();
    config["mode"] = json!("dryRun");
    let mut p = proxy_with("bank-a", config);
    let out = p.send(from(B_API, "/accounts/1"));
    assert_allowed(&out);
    assert!(out.local_reply.is_none());
    assert_eq!(
        p.metric("meshward_tenant.dry_run_denied.bank-b.cross_tenant"),
        Some(1)
    );
    assert_eq!(p.metric("meshward_tenant.denied.bank-b.cross_tenant"), None);
    assert!(
        out.logs
            .iter()
            .any(|l| l.message.contains("dry-run denied")),
        "{:?}",
        out.logs
    );
    // Dry-run still strips forged identity headers.
    let out = p.send(from(B_API, "/accounts/1").header("x-meshward-tenant", "bank-a"));
    assert_eq!(out.upstream_header("x-meshward-tenant"), None);
}

#[test]
fn destination_tenant_from_config_overrides_node_metadata() {
    let mut config = bank_config();
    config["destinationTenant"] = json!("bank-b");
    let mut p = proxy_with("bank-a", config);
    assert_allowed(&p.send(from(B_API, "/accounts/1")));
    assert_denied(&p.send(from(A_WEB, "/accounts/1")), "cross_tenant");
}

// ---------------------------------------------------------------- spoofing

#[test]
fn forged_xfcc_from_an_untrusted_peer_is_ignored_and_removed() {
    let mut p = proxy("bank-a");
    let forged = format!("By={GW};URI={A_WEB}");
    let out = p.send(from(B_API, "/accounts/1").header("x-forwarded-client-cert", &forged));
    assert_denied(&out, "cross_tenant");
    // A same-tenant caller gets through, without the forged header.
    let out = p.send(
        from(A_WEB, "/accounts/1")
            .header("x-forwarded-client-cert", &format!("By={GW};URI={B_API}")),
    );
    assert_allowed(&out);
    assert_eq!(out.upstream_header("x-forwarded-client-cert"), None);
}

#[test]
fn a_trusted_forwarder_passes_on_its_clients_identity() {
    let mut p = proxy("shared");
    let xfcc = format!("By={GW};Hash=abc;Subject=\"\";URI={A_WEB}");
    let out = p.send(from(GW, "/logs").header("x-forwarded-client-cert", &xfcc));
    assert_allowed(&out);
    // The upstream gets the gateway's element untouched, followed by the one this
    // sidecar appended for its direct peer, the gateway (APPEND_FORWARD, as Istio).
    let forwarded = out
        .upstream_header("x-forwarded-client-cert")
        .expect("XFCC at the upstream");
    let own = forwarded
        .strip_prefix(&format!("{xfcc},"))
        .unwrap_or_else(|| panic!("the gateway's element comes first: {forwarded}"));
    assert!(
        own.starts_with("By=spiffe://cluster.local/ns/shared/sa/default;Hash=")
            && own.ends_with(&format!(";URI={GW}")),
        "{own}"
    );
    assert_eq!(p.metric("meshward_tenant.allowed.bank-a"), Some(1));
}

#[test]
fn a_forged_xfcc_element_before_the_real_one_is_ignored() {
    let mut p = proxy("bank-a");
    // The client sent the first element; the gateway appended the last.
    let xfcc = format!("By={GW};URI={A_WEB},By={GW};URI={B_API}");
    let out = p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc));
    assert_denied(&out, "cross_tenant");
    assert_eq!(
        p.metric("meshward_tenant.denied.bank-b.cross_tenant"),
        Some(1)
    );
    // A quoted comma cannot split the real element either.
    let xfcc = format!("By={GW};Subject=\"CN=x,By={GW};URI={A_WEB}\";URI={B_API}");
    assert_denied(
        &p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc)),
        "cross_tenant",
    );
    // An unbalanced quote in the forged part invalidates the whole header.
    let xfcc = format!("URI=\"{A_WEB},By={GW};Subject=\"CN=gw\";URI={B_API}");
    assert_denied(
        &p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc)),
        "invalid_xfcc",
    );
}

#[test]
fn a_forwarded_element_written_by_someone_else_is_rejected() {
    let mut p = proxy("bank-a");
    let xfcc = format!("By={B_API};URI={A_WEB}");
    assert_denied(
        &p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc)),
        "invalid_xfcc",
    );
}

#[test]
fn identity_and_tenant_headers_injected_by_the_client_are_removed() {
    let mut p = proxy("bank-a");
    let out = p.send(
        from(A_WEB, "/accounts/1")
            .header("x-meshward-principal", B_API)
            .header("X-Meshward-Tenant", "bank-b")
            .header("x-meshward-audit", "forged")
            .header("x-keep", "yes"),
    );
    assert_allowed(&out);
    let upstream = out.upstream.as_ref().expect("upstream");
    assert!(
        upstream
            .headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("x-meshward-")),
        "{:?}",
        upstream.headers
    );
    assert_eq!(out.upstream_header("x-keep"), Some("yes"));
    // And the headers do not change the decision.
    let out = p.send(from(B_API, "/accounts/1").header("x-meshward-tenant", "bank-a"));
    assert_denied(&out, "cross_tenant");
}

#[test]
fn the_strip_list_is_configurable() {
    let mut config = bank_config();
    config["stripHeaders"] = json!(["x-meshward-*", "x-tenant-id"]);
    let mut p = proxy_with("bank-a", config);
    let out = p.send(from(A_WEB, "/accounts/1").header("X-Tenant-Id", "bank-b"));
    assert_allowed(&out);
    assert_eq!(out.upstream_header("x-tenant-id"), None);
}

#[test]
fn trust_domain_case_tricks_are_denied() {
    let mut p = proxy("bank-a");
    for id in [
        "spiffe://Cluster.local/ns/bank-a/sa/web",
        "spiffe://CLUSTER.LOCAL/ns/bank-a/sa/web",
    ] {
        assert_denied(&p.send(from(id, "/accounts/1")), "invalid_svid");
        let xfcc = format!("By={GW};URI={id}");
        assert_denied(
            &p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc)),
            "invalid_xfcc",
        );
    }
    assert_denied(
        &p.send(from(
            "SPIFFE://cluster.local/ns/bank-a/sa/web",
            "/accounts/1",
        )),
        "invalid_svid",
    );
}

#[test]
fn ids_with_dot_segments_empty_segments_or_percent_encoding_are_denied() {
    let mut p = proxy("bank-a");
    for id in [
        "spiffe://cluster.local/ns/bank-b/../bank-a/sa/web",
        "spiffe://cluster.local/ns/bank-a/sa/./web",
        "spiffe://cluster.local/ns//bank-a/sa/web",
        "spiffe://cluster.local/ns/bank-a/sa/web/",
        "spiffe://cluster.local/ns/bank%2Da/sa/web",
        "spiffe://cluster.local:443/ns/bank-a/sa/web",
        "spiffe://x@cluster.local/ns/bank-a/sa/web",
        "spiffe://cluster.local/ns/bank-a/sa/web?x=1",
        "spiffe://cluster.local",
    ] {
        let out = p.send(from(id, "/accounts/1"));
        assert_denied(&out, "invalid_svid");
        let xfcc = format!("By={GW};URI={id}");
        assert_denied(
            &p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc)),
            "invalid_xfcc",
        );
    }
    assert_eq!(
        p.metric("meshward_tenant.denied.unauthenticated.invalid_svid"),
        Some(9)
    );
}

#[test]
fn a_certificate_with_two_uri_sans_is_denied() {
    let mut p = proxy("bank-a");
    // Envoy's uri_san_peer_certificate would report the first (bank-a) only.
    let pem = minted(SvidSpec::new(A_WEB).extra_uri(B_API));
    let out = p.send(Request::get("/accounts/1").peer_certificate_pem(pem));
    assert_denied(&out, "invalid_svid");
    assert!(
        out.logs
            .iter()
            .any(|l| l.message.contains("multiple_uri_sans")),
        "{:?}",
        out.logs
    );
}

#[test]
fn a_ca_certificate_as_leaf_is_denied() {
    let mut p = proxy("bank-a");
    let out = p.send(
        Request::get("/accounts/1").peer_certificate_pem(minted(SvidSpec::new(A_WEB).ca_leaf())),
    );
    assert_denied(&out, "invalid_svid");
    assert!(
        out.logs.iter().any(|l| l.message.contains("ca_leaf")),
        "{:?}",
        out.logs
    );
}

#[test]
fn leaf_key_usage_must_sign_and_not_certify() {
    let mut p = proxy("bank-a");
    for (usage, detail) in [
        (LeafKeyUsage::KeyCertSign, "key_cert_sign"),
        (LeafKeyUsage::CrlSign, "crl_sign"),
        (LeafKeyUsage::NoDigitalSignature, "no_digital_signature"),
        (LeafKeyUsage::None, "missing_key_usage"),
    ] {
        let pem = minted(SvidSpec::new(A_WEB).key_usage(usage));
        let out = p.send(Request::get("/accounts/1").peer_certificate_pem(pem));
        assert_denied(&out, "invalid_svid");
        assert!(
            out.logs.iter().any(|l| l.message.contains(detail)),
            "{detail}: {:?}",
            out.logs
        );
    }
}

#[test]
fn an_expired_or_not_yet_valid_svid_is_denied() {
    let mut p = proxy("bank-a");
    let out = p.send(
        Request::get("/accounts/1")
            .peer_certificate_pem(minted(SvidSpec::new(A_WEB).expired_at(NOW))),
    );
    assert_denied(&out, "invalid_svid");
    assert!(
        out.logs.iter().any(|l| l.message.contains("expired")),
        "{:?}",
        out.logs
    );
    let out = p.send(
        Request::get("/accounts/1")
            .peer_certificate_pem(minted(SvidSpec::new(A_WEB).not_yet_valid_at(NOW))),
    );
    assert_denied(&out, "invalid_svid");
}

#[test]
fn garbage_certificates_are_denied_without_trapping() {
    let mut p = proxy("bank-a");
    for pem in [
        "",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let out = p.send(Request::get("/accounts/1").peer_certificate_pem(pem));
        assert_eq!(out.status(), 403, "{pem:?}: {:?}", out.logs);
    }
    // The VM is still healthy.
    assert_allowed(&p.send(from(A_WEB, "/accounts/1")));
}

#[test]
fn hostile_headers_never_trap_the_filter() {
    let mut p = proxy("bank-a");
    let long = "a".repeat(20_000);
    let quotes = "\"".repeat(1000);
    let commas = ",".repeat(5000);
    let many = vec![format!("By={GW};URI={A_WEB}"); 200].join(",");
    for xfcc in [
        long.as_str(),
        &quotes,
        &commas,
        &many,
        "By=;URI=",
        "=;=,=",
        "\\",
        "URI=\"\\\"",
    ] {
        let out = p.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", xfcc));
        assert_eq!(out.status(), 403, "{:?}", out.logs);
        assert!(out
            .local_reply
            .as_ref()
            .is_some_and(|r| r.details == "meshward_tenant_denied"));
    }
    for path in [
        "",
        "*",
        "/%",
        "/%zz",
        "/\u{7f}",
        "/a?%",
        &format!("/{long}"),
    ] {
        let out = p.send(from(A_WEB, path));
        assert_ne!(out.status(), 503, "{path:?}: {:?}", out.logs);
    }
    assert_allowed(&p.send(from(A_WEB, "/accounts/1")));
}

// ---------------------------------------------------------------- identity cache

#[test]
fn a_keep_alive_connection_checks_its_certificate_once() {
    let mut p = proxy("bank-a");
    assert_allowed(&p.send(from(A_WEB, "/accounts/1").connection_id(7)));
    // Same connection: the cached identity is used, whatever else the request
    // carries (Envoy cannot change the peer certificate of a connection).
    assert_allowed(&p.send(from(B_API, "/accounts/2").connection_id(7)));
    // A new connection is checked afresh.
    assert_denied(
        &p.send(from(B_API, "/accounts/3").connection_id(8)),
        "cross_tenant",
    );
}

#[test]
fn the_cached_identity_still_expires() {
    let mut p = proxy("bank-a");
    let pem = minted(SvidSpec::new(A_WEB).valid_between(NOW - 60, NOW + 60));
    assert_allowed(
        &p.send(
            Request::get("/accounts/1")
                .peer_certificate_pem(pem.clone())
                .connection_id(3),
        ),
    );
    p.advance(Duration::from_secs(120));
    assert_denied(
        &p.send(
            Request::get("/accounts/1")
                .peer_certificate_pem(pem)
                .connection_id(3),
        ),
        "invalid_svid",
    );
}

#[test]
fn the_identity_cache_is_bounded() {
    let mut config = bank_config();
    config["identityCacheSize"] = json!(2);
    let mut p = proxy_with("bank-a", config);
    assert_allowed(&p.send(from(A_WEB, "/").connection_id(1)));
    assert_allowed(&p.send(from(A_WEB, "/").connection_id(2)));
    assert_allowed(&p.send(from(A_WEB, "/").connection_id(3)));
    // Connection 1 was evicted (oldest first): its certificate is parsed again.
    assert_denied(&p.send(from(B_API, "/").connection_id(1)), "cross_tenant");
    // Connection 3 is still cached.
    assert_allowed(&p.send(from(B_API, "/").connection_id(3)));
}

// ---------------------------------------------------------------- configuration

#[track_caller]
fn assert_rejected(config: &[u8], destination: Option<&str>, path_and_reason: &str) {
    let mut builder = Proxy::builder();
    if let Some(ns) = destination {
        builder = builder.node_metadata("NAMESPACE", ns);
    }
    let err = match builder
        .plugin(PluginSpec::new("tenant", wasm()).config(config.to_vec()))
        .build()
    {
        Err(e) => e,
        Ok(_) => panic!("accepted: {}", String::from_utf8_lossy(config)),
    };
    let lines: Vec<&String> = err
        .logs
        .iter()
        .filter(|l| l.contains("invalid config"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", err.logs);
    let want = format!("meshward-tenant: invalid config: {path_and_reason}");
    assert!(
        lines[0].starts_with(&want),
        "{:?} does not start with {want:?}",
        lines[0]
    );
}

#[test]
fn an_unknown_field_is_rejected_at_configure() {
    assert_rejected(
        br#"{"tenants": [], "rulez": []}"#,
        Some("bank-a"),
        "rulez: unknown field `rulez`",
    );
}

#[test]
fn an_unknown_mode_is_rejected_at_configure() {
    assert_rejected(
        br#"{"mode": "audit"}"#,
        Some("bank-a"),
        "mode: unknown variant `audit`",
    );
}

#[test]
fn a_malformed_pattern_is_rejected_at_configure() {
    assert_rejected(
        br#"{"rules": [{"name": "r", "action": "ALLOW", "from": {"principals": ["cluster.local/*/sa/x"]}}]}"#,
        Some("bank-a"),
        "rules[0].from.principals[0]: `cluster.local/*/sa/x`: `*` is allowed only",
    );
    assert_rejected(
        br#"{"publicPaths": ["/health*z"]}"#,
        Some("bank-a"),
        "publicPaths[0]:",
    );
}

#[test]
fn a_malformed_spiffe_id_is_rejected_at_configure() {
    assert_rejected(
        br#"{"trustedForwarders": ["spiffe://cluster.local/ns/istio-system/../sa/gw"]}"#,
        Some("bank-a"),
        "trustedForwarders[0]: path must not contain `.` or `..` segments (rule: dot_segment)",
    );
    assert_rejected(
        br#"{"rules": [{"name": "r", "action": "DENY", "from": {"principals": ["Cluster.local/ns/a/sa/b"]}}]}"#,
        Some("bank-a"),
        "rules[0].from.principals[0]:",
    );
}

#[test]
fn an_allow_rule_without_source_is_rejected_at_configure() {
    assert_rejected(
        br#"{"rules": [{"name": "open", "action": "ALLOW", "paths": ["/x"]}]}"#,
        Some("bank-a"),
        "rules[0].from: an ALLOW rule must name source principals or namespaces",
    );
}

#[test]
fn a_missing_destination_tenant_is_rejected_at_configure() {
    assert_rejected(
        b"{}",
        None,
        "destinationTenant: not set, and node metadata NAMESPACE is absent",
    );
}

#[test]
fn a_bad_reconfiguration_keeps_the_last_good_config() {
    let mut p = proxy("bank-a");
    assert!(p
        .reconfigure("tenant", br#"{"mode": "nope"}"#.to_vec())
        .is_err());
    assert_denied(&p.send(from(B_API, "/accounts/1")), "cross_tenant");
    let mut dry = bank_config();
    dry["mode"] = json!("dryRun");
    p.reconfigure("tenant", serde_json::to_vec(&dry).unwrap())
        .expect("valid config");
    assert_allowed(&p.send(from(B_API, "/accounts/1")));
}

// ---------------------------------------------------------------- manifests

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasmplugins/base/tenant.yaml")
}

fn mesh(namespace: &str) -> Proxy {
    Proxy::builder()
        .node_metadata("NAMESPACE", namespace)
        .manifests(&[manifest()])
        .expect("manifest parses")
        .build()
        .expect("the shipped tenant config loads")
}

#[test]
fn the_shipped_manifest_isolates_the_bank_tenants() {
    let mut a = mesh("bank-a");
    assert_allowed(&a.send(from(A_WEB, "/accounts/1")));
    assert_denied(&a.send(from(B_API, "/accounts/1")), "cross_tenant");
    assert_denied(
        &a.send(from(
            "spiffe://cluster.local/ns/shared/sa/logging",
            "/accounts/1",
        )),
        "deny_rule",
    );
    assert_allowed(&a.send(Request::get("/healthz")));
    assert_denied(&a.send(Request::get("/accounts/1")), "unauthenticated");
    // Through the ingress gateway, with the client's identity in XFCC.
    let xfcc = format!("By={GW};URI={B_API}");
    assert_denied(
        &a.send(from(GW, "/accounts/1").header("x-forwarded-client-cert", &xfcc)),
        "cross_tenant",
    );
    assert_allowed(&a.send(from(GW, "/accounts/1")));
}

#[test]
fn the_shipped_manifest_lets_authenticated_callers_reach_shared() {
    let mut s = mesh("shared");
    assert_allowed(&s.send(from(A_API, "/logs")));
    assert_allowed(&s.send(from(B_API, "/logs")));
    assert_denied(&s.send(Request::get("/logs")), "unauthenticated");
}
