//! End-to-end: the scenario suite through a real Envoy 1.40 (V8) and through the
//! harness, from the same `wasmplugins/base` manifests; plus what only real worker
//! threads can show. Needs the built filters (`make build`) and Envoy (`make envoy`);
//! `make e2e` does both.

use meshward_harness::envoy_config;
use meshward_harness::CallReply;
use meshward_tests::e2e::{EnvoyProcess, MtlsClient, WireRequest};
use meshward_tests::scenarios::{self, assert_scenario, Mesh, Scenario};
use std::sync::OnceLock;

fn mesh() -> &'static Mesh {
    static MESH: OnceLock<Mesh> = OnceLock::new();
    // MESHWARD_E2E_MANIFESTS runs the suite against another set of WasmPlugins.
    let manifests = std::env::var_os("MESHWARD_E2E_MANIFESTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(meshward_tests::manifests_dir);
    MESH.get_or_init(|| Mesh::new(&manifests).expect("test mesh"))
}

fn run(scenario: Scenario) {
    assert_scenario(mesh(), &scenario);
}

#[test]
fn same_tenant_call_is_allowed() {
    run(scenarios::same_tenant_call_is_allowed());
}

#[test]
fn cross_tenant_call_is_denied() {
    run(scenarios::cross_tenant_call_is_denied());
}

#[test]
fn forged_identity_is_not_believed() {
    run(scenarios::forged_identity_is_not_believed());
}

#[test]
fn forged_meshward_headers_do_not_reach_the_upstream() {
    run(scenarios::forged_meshward_headers_do_not_reach_the_upstream());
}

/// A manifests directory with one WasmPlugin: `name`'s module, `pluginConfig` given.
fn single_plugin_manifests(
    dir: &meshward_tests::e2e::TempDir,
    name: &str,
    plugin_config: serde_json::Value,
) -> std::path::PathBuf {
    let manifest = serde_json::json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name},
        "spec": {
            "url": format!("file://{}", meshward_tests::wasm(name).display()),
            "pluginName": name,
            "phase": "AUTHN",
            "pluginConfig": plugin_config,
        }
    });
    dir.write(
        &format!("{name}.yaml"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    dir.path().to_path_buf()
}

/// The plumbing itself, with a pass-through filter: mTLS is required, the
/// client's SVID reaches the upstream in XFCC, and a stopped Envoy leaves no
/// port open.
#[test]
fn envoy_requires_client_certificates_and_frees_its_ports_when_stopped() {
    let dir = meshward_tests::e2e::TempDir::new("passthrough").unwrap();
    let mesh = Mesh::new(&single_plugin_manifests(
        &dir,
        "passthrough",
        serde_json::json!({}),
    ))
    .unwrap();
    let _one_at_a_time = scenarios::envoy_lock();
    let mut rig =
        scenarios::EnvoyRig::start(&mesh, scenarios::BANK_A_API, 1).expect("Envoy starts");
    let (listener, admin) = (rig.envoy.listener(), rig.envoy.admin());
    let request = WireRequest {
        method: "GET".into(),
        path: "/accounts/1".into(),
        authority: "api.bank-a.svc.cluster.local".into(),
        headers: vec![],
        body: vec![],
    };
    let anonymous = MtlsClient::new(mesh.ca.pem(), None, "localhost").unwrap();
    assert!(
        anonymous.send(listener, &request).is_err(),
        "a client without certificate got an answer"
    );
    assert_eq!(rig.upstream.count(), 0);

    let client = rig.client(&mesh, scenarios::BANK_A_WEB).unwrap();
    let response = client.send(listener, &request).expect("mTLS request");
    assert_eq!(response.status, 200);
    let echoed = meshward_tests::e2e::Echoed::from_json(&response.body).unwrap();
    let xfcc = echoed.header("x-forwarded-client-cert").unwrap_or_default();
    assert!(
        xfcc.contains(&format!("URI={}", scenarios::BANK_A_WEB.spiffe_id())),
        "XFCC names the client: {xfcc}"
    );

    rig.envoy.stop();
    for addr in [listener, admin] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still accepts after Envoy stopped"
        );
    }
    let _: Option<EnvoyProcess> = None;
}

#[test]
fn gateway_forwarded_identity_is_trusted() {
    run(scenarios::gateway_forwarded_identity_is_trusted());
}

#[test]
fn burst_beyond_the_limit_is_rejected() {
    run(scenarios::burst_beyond_the_limit_is_rejected());
}

#[test]
fn audit_headers_are_signed_and_verifiable() {
    run(scenarios::audit_headers_are_signed_and_verifiable());
}

/// Item: rate limits hold across real Envoy worker threads. Two workers (two
/// Wasm VMs), eight concurrent clients, one caller and one account: the burst
/// admitted stays within the rule's limit plus the documented cross-worker
/// bound (filters/ratelimit/README.md, "Cross-worker exactness": at most
/// `workers − 1` extra admissions), and is at least the limit, so the test
/// cannot pass by rejecting everything. Per-VM counters would admit up to a
/// limit per worker.
#[test]
fn concurrent_burst_across_two_workers_stays_within_the_limit() {
    const WORKERS: u32 = 2;
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 5;
    let mesh = mesh();
    let _one_at_a_time = scenarios::envoy_lock();
    let rig =
        scenarios::EnvoyRig::start(mesh, scenarios::BANK_A_API, WORKERS).expect("Envoy starts");
    let svid = mesh.svid(scenarios::BANK_A_WEB).unwrap();
    let client = MtlsClient::new(
        mesh.ca.pem(),
        Some((&svid.cert_pem, &svid.key_pem)),
        "localhost",
    )
    .unwrap();
    let listener = rig.envoy.listener();
    let request = WireRequest {
        method: "POST".into(),
        path: "/accounts/9001/transfers".into(),
        authority: "api.bank-a.svc.cluster.local".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"amount":"1.00"}"#.to_vec(),
    };

    let start = std::time::Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    (0..PER_CLIENT)
                        .map(|_| client.send(listener, &request).expect("request").status)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    let window = start.elapsed();

    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let refills = (window.as_nanos() / scenarios::PAYMENTS_REFILL.as_nanos()) as usize;
    let bound = WORKERS as usize - 1;
    let stats = rig.envoy.stats().expect("stats");
    let worker_connections: Vec<i64> = (0..WORKERS)
        .map(|w| {
            stats
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("listener.127.0.0.1_")
                        && k.ends_with(&format!(".worker_{w}.downstream_cx_total"))
                })
                .map(|(_, v)| *v)
                .sum()
        })
        .collect();
    let cas_exhausted = stats
        .get("wasmcustom.meshward_ratelimit.cas_exhausted")
        .copied()
        .unwrap_or(0);
    eprintln!(
        "concurrent burst: {} requests in {window:?}: {admitted} admitted, {limited} limited; \
         connections per worker {worker_connections:?}; cas_exhausted {cas_exhausted}",
        statuses.len()
    );
    assert_eq!(
        admitted + limited,
        CLIENTS * PER_CLIENT,
        "every request is admitted or limited: {statuses:?}"
    );
    assert_eq!(
        admitted,
        rig.upstream.count(),
        "admitted requests are exactly those the upstream saw"
    );
    assert!(
        worker_connections.iter().all(|c| *c > 0),
        "both workers must take connections for this to test shared state: {worker_connections:?}"
    );
    assert!(
        scenarios::PAYMENTS_BURST + refills + bound < 2 * scenarios::PAYMENTS_BURST,
        "the burst took {window:?}: too slow to tell shared counters from per-worker ones"
    );
    assert!(
        admitted >= scenarios::PAYMENTS_BURST,
        "admitted {admitted} < burst {}",
        scenarios::PAYMENTS_BURST
    );
    assert!(
        admitted <= scenarios::PAYMENTS_BURST + refills + bound,
        "admitted {admitted} > burst {} + {refills} refilled in {window:?} + bound {bound}",
        scenarios::PAYMENTS_BURST
    );
}

/// The ABI probe (`tests/abi-probe`) asks the same questions — properties and
/// headers a filter reads — in the harness and in Envoy; every answer must be
/// the same (values that differ per connection or per run: the status only).
/// This is where harness behaviour that Envoy contradicts shows up first.
#[test]
fn abi_probe_answers_agree_between_harness_and_envoy() {
    const PROPERTIES: &[(&str, bool)] = &[
        // (path, compare the value too)
        ("request path", true),
        ("request url_path", true),
        ("request host", true),
        ("request method", true),
        ("request scheme", true),
        ("request protocol", true),
        ("request query", true),
        ("request id", false),
        ("request time", false),
        ("source address", false),
        ("destination address", false),
        ("connection id", false),
        ("connection mtls", true),
        ("connection uri_san_peer_certificate", true),
        ("connection subject_peer_certificate", true),
        ("connection peer_certificate", true),
        ("node metadata NAMESPACE", true),
        ("xds node metadata NAMESPACE", true),
        ("plugin_name", true),
        ("plugin_root_id", true),
        ("plugin_vm_id", true),
        ("xds cluster_name", true),
        ("response code", true),
        ("filter_state", true),
    ];
    const HEADERS: &[(&str, bool)] = &[
        ("x-forwarded-proto", true),
        ("x-request-id", false),
        ("x-forwarded-client-cert", true),
    ];

    let mut request_script: Vec<String> = PROPERTIES
        .iter()
        .map(|(p, _)| format!("get_property {p}"))
        .collect();
    request_script.extend(
        HEADERS
            .iter()
            .map(|(h, _)| format!("get_header HTTP_REQUEST_HEADERS {h}")),
    );
    let script = format!(
        "configure: get_property node metadata NAMESPACE; get_property xds node metadata NAMESPACE; \
         tick_period 100\n\
         request_headers: {}",
        request_script.join("; ")
    );
    let dir = meshward_tests::e2e::TempDir::new("probe").unwrap();
    let manifests =
        single_plugin_manifests(&dir, "abi_probe", serde_json::json!({"script": script}));
    let probe_mesh = Mesh::new(&manifests).expect("probe mesh");
    let caller = probe_mesh.svid(scenarios::BANK_A_WEB).unwrap();
    let path = "/probe/x?y=1";
    let authority = "api.bank-a.svc.cluster.local";

    let mut proxy = meshward_harness::Proxy::builder()
        .workers(2)
        .node_metadata("NAMESPACE", "bank-a")
        .local_identity(&scenarios::BANK_A_API.spiffe_id())
        .manifests(std::slice::from_ref(&manifests))
        .unwrap()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    proxy.send(
        meshward_harness::Request::get(path)
            .authority(authority)
            .peer_certificate_pem(caller.cert_pem.clone()),
    );
    proxy.advance(std::time::Duration::from_millis(350));
    let harness_logs = proxy.logs();
    let harness_lines: Vec<String> = harness_logs.iter().map(|l| l.message.clone()).collect();

    let _one_at_a_time = scenarios::envoy_lock();
    let mut rig =
        scenarios::EnvoyRig::start(&probe_mesh, scenarios::BANK_A_API, 2).expect("Envoy starts");
    let client = rig.client(&probe_mesh, scenarios::BANK_A_WEB).unwrap();
    let request = WireRequest {
        method: "GET".into(),
        path: path.into(),
        authority: authority.into(),
        headers: vec![],
        body: vec![],
    };
    client
        .send(rig.envoy.listener(), &request)
        .expect("request through Envoy");
    // Let every root context's 100 ms timer fire a few times.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let envoy_raw = rig.envoy.wasm_log_lines();
    let envoy_lines: Vec<String> = envoy_raw
        .iter()
        .filter_map(|l| l.find(": probe ").map(|at| l[at + 2..].to_string()))
        .collect();

    // Every answer each side gave to one call, deduplicated (several VMs answer `configure`).
    fn answers(lines: &[String], call: &str) -> std::collections::BTreeSet<String> {
        let prefix = format!("probe {call} = ");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .collect()
    }
    let status = |set: &std::collections::BTreeSet<String>| -> std::collections::BTreeSet<String> {
        set.iter()
            .map(|a| a.split(' ').next().unwrap_or_default().to_string())
            .collect()
    };
    let calls = PROPERTIES
        .iter()
        .map(|(p, v)| {
            (
                format!("proxy_get_property({:?})", p.replace(' ', "\0")),
                *v,
            )
        })
        .chain(HEADERS.iter().map(|(h, v)| {
            (
                format!("proxy_get_header_map_value(HTTP_REQUEST_HEADERS, {h:?})"),
                *v,
            )
        }));
    let mut differ = Vec::new();
    let mut asked = 0;
    for (call, compare_value) in calls {
        // The probe escapes NUL as \x00 (Rust's {:?} writes \0).
        let call = call.replace("\\0", "\\x00");
        let (h, e) = (answers(&harness_lines, &call), answers(&envoy_lines, &call));
        assert!(
            !h.is_empty() && !e.is_empty(),
            "{call}: no answer (harness {h:?}, Envoy {e:?})"
        );
        asked += 1;
        let same = if compare_value {
            h == e
        } else {
            status(&h) == status(&e)
        };
        if !same {
            differ.push(format!("{call}:\n      harness {h:?}\n      Envoy   {e:?}"));
        }
    }
    assert!(
        asked >= PROPERTIES.len(),
        "the probe answered {asked} calls"
    );

    // Life cycle with 2 workers: how many VMs run on_configure, and how many
    // root contexts tick. Envoy's log lines carry the thread id: `[time][tid][level]`.
    let configured_harness = harness_lines
        .iter()
        .filter(|l| l.starts_with("probe on_configure"))
        .count();
    let configured_envoy = envoy_lines
        .iter()
        .filter(|l| l.starts_with("probe on_configure"))
        .count();
    asked += 1;
    if configured_harness != configured_envoy {
        differ.push(format!(
            "on_configure runs with 2 workers: harness {configured_harness} / Envoy {configured_envoy} \
             (Envoy: a canary VM, the main thread's VM and one VM per worker)"
        ));
    }
    let ticking_harness: std::collections::BTreeSet<usize> = harness_logs
        .iter()
        .filter(|l| l.message.starts_with("probe on_tick"))
        .map(|l| l.worker)
        .collect();
    let ticking_envoy: std::collections::BTreeSet<&str> = envoy_raw
        .iter()
        .filter(|l| l.contains(": probe on_tick"))
        .filter_map(|l| l.split('[').nth(2).and_then(|t| t.split(']').next()))
        .collect();
    asked += 1;
    if ticking_harness.len() != ticking_envoy.len() {
        differ.push(format!(
            "root contexts whose timer fires with 2 workers: harness {} / Envoy {} (Envoy threads {ticking_envoy:?}: \
             the main thread's VM ticks too)",
            ticking_harness.len(),
            ticking_envoy.len()
        ));
    }
    assert!(
        differ.is_empty(),
        "the harness answers {} of {asked} probe checks differently from Envoy 1.40:\n  {}",
        differ.len(),
        differ.join("\n  ")
    );
}

#[test]
fn web_attacks_are_blocked_by_the_waf() {
    run(scenarios::web_attacks_are_blocked_by_the_waf());
}

#[test]
fn a_benign_json_transfer_passes_the_waf() {
    run(scenarios::a_benign_json_transfer_passes_the_waf());
}

#[test]
fn grpc_calls_pass_the_waf_and_their_metadata_is_inspected() {
    run(scenarios::grpc_calls_pass_the_waf_and_their_metadata_is_inspected());
}

#[test]
fn shared_service_accepts_an_authenticated_caller() {
    run(scenarios::shared_service_accepts_an_authenticated_caller());
}

#[test]
fn shared_workload_calling_a_bank_is_denied() {
    run(scenarios::shared_workload_calling_a_bank_is_denied());
}

#[test]
fn public_path_is_open_but_cannot_be_stretched() {
    run(scenarios::public_path_is_open_but_cannot_be_stretched());
}

/// The audit record of a request goes to the collector cluster the manifest
/// names (`http_call`, OTLP/HTTP JSON): the export request and the record —
/// signed, chained, describing the request as the proxy saw it — are the same
/// in the harness and in Envoy.
#[test]
fn audit_record_export_agrees_between_harness_and_envoy() {
    use meshward_shared::audit::{check_record, Keyring};
    let mesh = mesh();
    let collector = mesh
        .filters()
        .unwrap()
        .iter()
        .filter(|f| f.root_id == "audit")
        .flat_map(envoy_config::referenced_clusters)
        .next()
        .expect("the audit manifest names its collector cluster");
    let send = scenarios::Send::get(scenarios::BANK_A_WEB, "/accounts/5");

    let mut proxy = scenarios::harness_proxy(mesh, scenarios::BANK_A_API).unwrap();
    proxy.on_http_call(&collector, |_| {
        CallReply::response(200, vec![], b"{}".to_vec())
    });
    let out = proxy.send(scenarios::harness_request(mesh, &send, 0).unwrap());
    assert_eq!(out.status(), 200);
    proxy.advance(std::time::Duration::from_secs(2));
    let calls: Vec<_> = proxy
        .http_calls()
        .iter()
        .filter(|c| c.cluster == collector)
        .cloned()
        .collect();
    assert_eq!(calls.len(), 1, "harness export calls: {calls:?}");
    let h = &calls[0];

    let _one_at_a_time = scenarios::envoy_lock();
    let mut rig = scenarios::EnvoyRig::start(mesh, scenarios::BANK_A_API, 2).expect("Envoy starts");
    let client = rig.client(mesh, send.caller).unwrap();
    let request = WireRequest {
        method: send.method.into(),
        path: send.path.clone(),
        authority: send.authority.clone(),
        headers: vec![],
        body: vec![],
    };
    assert_eq!(
        client.send(rig.envoy.listener(), &request).unwrap().status,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rig.collector.count() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let received = rig.collector.received();
    assert_eq!(received.len(), 1, "Envoy export requests: {received:?}");
    let e = &received[0];

    let mut differ = Vec::new();
    let pairs = [
        ("method", h.header(":method"), Some(e.method.as_str())),
        ("path", h.header(":path"), Some(e.path.as_str())),
        ("authority", h.header(":authority"), e.header("host")),
        (
            "content-type",
            h.header("content-type"),
            e.header("content-type"),
        ),
    ];
    for (what, hv, ev) in pairs {
        if hv != ev {
            differ.push(format!("export {what}: harness {hv:?} / Envoy {ev:?}"));
        }
    }

    let mut keys = Keyring::new();
    keys.insert(
        "k1",
        mesh.host_value("MESHWARD_AUDIT_KEY_K1").unwrap().as_bytes(),
    )
    .unwrap();
    let record = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).expect("OTLP JSON");
        let records = v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(records.len(), 1, "one log record: {v}");
        let line = records[0]["body"]["stringValue"]
            .as_str()
            .expect("record line")
            .to_string();
        let checked = check_record(&line, &keys).expect("a record");
        assert!(
            checked.hash_matches && format!("{:?}", checked.signature) == "Valid",
            "record verifies: {line}"
        );
        (checked.body, line)
    };
    let (hr, h_line) = record(&h.body);
    let (er, e_line) = record(&e.body);
    let fields = [
        (
            "method",
            format!("{:?}", hr.method),
            format!("{:?}", er.method),
        ),
        ("path", format!("{:?}", hr.path), format!("{:?}", er.path)),
        (
            "status",
            format!("{:?}", hr.status),
            format!("{:?}", er.status),
        ),
        (
            "response_details",
            format!("{:?}", hr.response_details),
            format!("{:?}", er.response_details),
        ),
        (
            "principal",
            format!("{:?}", hr.principal),
            format!("{:?}", er.principal),
        ),
        (
            "tenant",
            format!("{:?}", hr.tenant),
            format!("{:?}", er.tenant),
        ),
        (
            "destination",
            format!("{:?}", hr.destination),
            format!("{:?}", er.destination),
        ),
        (
            "decisions",
            format!("{:?}", hr.decisions),
            format!("{:?}", er.decisions),
        ),
        (
            "request_bytes",
            format!("{:?}", hr.request_bytes),
            format!("{:?}", er.request_bytes),
        ),
        // Not response_bytes: each side's upstream echoes the headers it got, which differ.
        (
            "request header names",
            format!(
                "{:?}",
                hr.request_headers
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            ),
            format!(
                "{:?}",
                er.request_headers
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            ),
        ),
        (
            "response header names",
            format!(
                "{:?}",
                hr.response_headers
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            ),
            // `connection: close` answers the client's own `connection: close` (HTTP/1.1
            // downstream); the harness has no downstream protocol.
            format!(
                "{:?}",
                er.response_headers
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| *k != "connection")
                    .collect::<Vec<_>>()
            ),
        ),
    ];
    for (what, hv, ev) in fields {
        if hv != ev {
            differ.push(format!("record {what}: harness {hv} / Envoy {ev}"));
        }
    }
    assert!(
        differ.is_empty(),
        "audit export differs between the harness and Envoy:\n  {}\nharness record: {h_line}\nEnvoy record:   {e_line}",
        differ.join("\n  ")
    );
}

/// A client may send header values that are not UTF-8 (obs-text). Envoy passes
/// them to the filters; the proxy-wasm SDK's String accessors would panic on
/// them and trap the VM (every later request on that worker then 503s under
/// FAIL_CLOSE). The filters read header values as bytes: the request is
/// answered as usual, and so is the next one on the same workers.
#[test]
fn a_header_value_that_is_not_utf8_traps_no_filter() {
    let mesh = mesh();
    let _one_at_a_time = scenarios::envoy_lock();
    let mut rig = scenarios::EnvoyRig::start(mesh, scenarios::BANK_A_API, 2).expect("Envoy starts");
    let client = rig.client(mesh, scenarios::BANK_A_WEB).unwrap();
    let request = WireRequest {
        method: "GET".into(),
        path: "/accounts/7".into(),
        authority: "api.bank-a.svc.cluster.local".into(),
        headers: vec![],
        body: vec![],
    };
    for _ in 0..4 {
        let response = client
            .send_with_raw_header(
                rig.envoy.listener(),
                &request,
                Some(("x-legacy-name", b"caf\xe9 \xff")),
            )
            .expect("request through Envoy");
        // Envoy may refuse obs-text itself (400); what must never happen is a
        // filter trap (503 wasm_fail_stream).
        assert!(
            response.status == 200 || response.status == 400,
            "status {}: {:#?}",
            response.status,
            rig.envoy.wasm_log_lines()
        );
    }
    let plain = client.send(rig.envoy.listener(), &request).unwrap();
    assert_eq!(plain.status, 200, "the workers still serve");
    let traps: Vec<String> = rig
        .envoy
        .wasm_log_lines()
        .into_iter()
        .filter(|l| l.contains("panicked") || l.contains("wasm trap") || l.contains("unreachable"))
        .collect();
    assert!(traps.is_empty(), "{traps:#?}");
}

/// Every how many tests of the suite (in suite order) one goes into the sample.
const CRS_SAMPLE_EVERY: usize = 25;

/// A sample of CRS's go-ftw regression tests — every 25th test of the suite, and every
/// response test (RESPONSE-95x, answered by albedo's `/reflect`) — as go-ftw's raw
/// request bytes through a real Envoy 1.40 with the WAF configured as for the CRS
/// run (DetectionOnly, paranoia level 4, `waf_config::crs_run`), decided by the rule
/// ids the WAF logged to Envoy's log. Each test passes, as it does in the harness's
/// go-ftw runner (with the committed overrides), and the two agree stage by stage on
/// the status and on the exact set of rule ids logged.
#[test]
fn a_crs_sample_through_envoy_logs_the_same_rules_as_the_harness_runner() {
    use meshward_harness::ftw::{self, waf_config, FrontEnd, Options};
    use meshward_tests::e2e::ftw::EnvoyFtw;

    let suite = meshward_tests::crs_suite();
    let overrides = meshward_tests::crs_overrides();
    let config = waf_config::crs_run(&waf_config::Rules::Embedded).unwrap();

    // The sample, with each test's expected outputs after the overrides.
    let mut sample = Vec::new();
    let (mut ignored, mut position) = (0, 0);
    for file in &suite.files {
        for (index, test) in file.tests.iter().enumerate() {
            let picked = position % CRS_SAMPLE_EVERY == 0 || file.name.starts_with("RESPONSE-95");
            position += 1;
            if !picked {
                continue;
            }
            let id = test.id_or_position(index);
            let written: Vec<_> = test.stages.iter().map(|s| s.output.clone()).collect();
            let outputs = match overrides.resolve(file.rule_id, id, &written) {
                ftw::overrides::Resolution::Ignored { .. } => {
                    ignored += 1;
                    continue;
                }
                ftw::overrides::Resolution::AsWritten => written,
                ftw::overrides::Resolution::Replaced { outputs, .. } => outputs,
            };
            sample.push((format!("{}-{id}", file.rule_id), test, outputs));
        }
    }
    let responses = sample
        .iter()
        .filter(|(id, _, _)| id.starts_with("95"))
        .count();

    let started = std::time::Instant::now();
    let mut runner = ftw::Runner::new(&Options {
        wasm: meshward_tests::wasm("waf"),
        config: config.clone(),
        front_end: FrontEnd::Envoy,
        normalize_path: false,
    })
    .unwrap_or_else(|e| panic!("the WAF did not load in the harness: {e}"));
    let harness: Vec<_> = sample
        .iter()
        .map(|(_, test, outputs)| runner.run_test(test, outputs))
        .collect();
    let harness_time = started.elapsed();

    let _one_at_a_time = scenarios::envoy_lock();
    let started = std::time::Instant::now();
    let mut envoy =
        EnvoyFtw::start(&meshward_tests::wasm("waf"), &config).expect("Envoy starts with the WAF");
    let envoy_start = started.elapsed();
    let envoy_results: Vec<_> = sample
        .iter()
        .map(|(id, test, outputs)| {
            envoy
                .run_test(test, outputs)
                .unwrap_or_else(|e| panic!("{id}: {e:#}"))
        })
        .collect();
    let envoy_time = started.elapsed() - envoy_start;

    let mut differ = Vec::new();
    let mut failed = Vec::new();
    let (mut stages, mut rule_hits, mut not_upstream) = (0, 0, Vec::new());
    for ((id, _, _), (h, e)) in sample.iter().zip(harness.iter().zip(&envoy_results)) {
        if !e.passed() {
            let first = e.stages.iter().find(|s| !s.failures.is_empty());
            failed.push(format!(
                "{id}: {:?}",
                first.map(|s| (
                    s.failures
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                    s.status,
                    &s.details,
                    &s.error
                ))
            ));
        }
        if h.passed() != e.passed() {
            differ.push(format!(
                "{id}: harness {}, Envoy {}",
                if h.passed() { "passes" } else { "fails" },
                if e.passed() { "passes" } else { "fails" }
            ));
        }
        for (n, (hs, es)) in h.stages.iter().zip(&e.stages).enumerate() {
            stages += 1;
            rule_hits += es.triggered.len();
            if es.details.as_deref() != Some("via_upstream") {
                not_upstream.push(format!("{id}: {:?} {:?}", es.status, es.details));
            }
            if hs.status != es.status || hs.triggered != es.triggered {
                differ.push(format!(
                    "{id} stage {n}: harness status {:?} ids {:?} / Envoy status {:?} ({:?}{}) ids {:?}",
                    hs.status,
                    hs.triggered,
                    es.status,
                    es.details,
                    es.error.as_deref().map(|e| format!(", {e}")).unwrap_or_default(),
                    es.triggered
                ));
            }
        }
    }
    let passed = envoy_results.iter().filter(|e| e.passed()).count();
    eprintln!(
        "CRS sample through Envoy: {} tests ({responses} response tests; {ignored} more ignored by \
         the overrides), {stages} stages; passed {passed} in Envoy, {} in the harness; {rule_hits} \
         rule ids logged; stages not answered via the upstream: {not_upstream:?}; {} WAF log lines in \
         Envoy's log (longest {} bytes, {} without a request id). Harness {harness_time:?}, Envoy \
         start {envoy_start:?} + {envoy_time:?}",
        sample.len(),
        harness.iter().filter(|h| h.passed()).count(),
        envoy.waf_line_count,
        envoy.longest_line,
        envoy.lines_without_id.len(),
    );
    assert!(
        sample.len() >= 250,
        "only {} tests in the sample",
        sample.len()
    );
    assert!(
        envoy.lines_without_id.is_empty(),
        "WAF log lines without their request id (cut?): {:#?}",
        envoy.lines_without_id
    );
    assert!(
        differ.is_empty(),
        "the harness and Envoy disagree on {} stages:\n  {}",
        differ.len(),
        differ.join("\n  ")
    );
    assert!(
        failed.is_empty(),
        "{} tests fail through Envoy:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
}

/// A response that leaks a database error is blocked in phase 4 by the mesh's WAF
/// configuration (`wasmplugins/base/waf.yaml`: CRS at paranoia level 1, blocking,
/// response bodies of text types inspected), and none of its body reaches the client.
///
/// What Envoy 1.40 does: the WAF lets the response headers go on (a Pause in a headers
/// callback would stop its body callbacks too) and holds the body until the end of the
/// stream; phase 4 then blocks, and its local reply comes after the headers went
/// downstream, so Envoy cuts the stream instead: the client reads `200` and the headers
/// (with the upstream's `content-length`), then the connection closes without a byte of
/// the body. The access log says `code 200`, details `meshward_waf_denied`. The
/// harness resets the stream likewise, and logs the same rules.
#[test]
fn a_response_leaking_a_sql_error_is_cut_off_before_its_body() {
    use meshward_harness::ftw::{self, schema, FrontEnd, Options};
    use meshward_tests::e2e::ftw::EnvoyFtw;

    let waf = mesh()
        .filters()
        .unwrap()
        .into_iter()
        .find(|f| f.root_id == "waf")
        .expect("the mesh runs the WAF");
    let config: serde_json::Value = serde_json::from_str(&waf.configuration).unwrap();
    const LEAK: &str = "[Microsoft][ODBC Microsoft Access Driver] Syntax error (missing operator) in query expression";
    // albedo answers a POST to /reflect with the body it names (text/plain).
    let input = schema::Input {
        method: Some("POST".into()),
        uri: Some("/reflect".into()),
        headers: Some(vec![
            ("Host".into(), "localhost".into()),
            ("User-Agent".into(), "meshward-e2e".into()),
            ("Accept".into(), "*/*".into()),
            ("Content-Type".into(), "application/json".into()),
        ]),
        data: Some(serde_json::json!({ "body": LEAK }).to_string()),
        ..Default::default()
    };
    let output = schema::Output::default();

    let mut runner = ftw::Runner::new(&Options {
        wasm: waf.wasm.clone(),
        config: config.clone(),
        front_end: FrontEnd::Envoy,
        normalize_path: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let harness = runner.run_stage(&input, &output, &[]);

    let _one_at_a_time = scenarios::envoy_lock();
    let mut envoy = EnvoyFtw::start(&waf.wasm, &config).expect("Envoy starts with the WAF");
    let stage = envoy.run_stage(&input, &output).expect("the stage runs");
    let received = String::from_utf8_lossy(&stage.received).into_owned();
    eprintln!(
        "phase-4 block: harness status {:?} ids {:?}; Envoy ids {:?}, access log {}, client read {received:?} ({})",
        harness.status,
        harness.triggered,
        stage.triggered,
        stage.access_log.clone().unwrap_or_default(),
        stage.error.as_deref().unwrap_or("complete response"),
    );
    for id in [951110, 959100] {
        assert!(
            stage.triggered.contains(&id),
            "Envoy: rule {id} not logged: {:?}",
            stage.triggered
        );
    }
    assert_eq!(
        harness.triggered, stage.triggered,
        "the harness and Envoy log different rules"
    );
    assert_eq!(stage.details.as_deref(), Some("meshward_waf_denied"));
    assert!(
        !received.contains("ODBC"),
        "the leaking body reached the client: {received:?}"
    );
    assert!(
        stage.response.is_none() && received.starts_with("HTTP/1.1 200 "),
        "Envoy sent the response headers, then cut the stream: {received:?}"
    );
    assert_eq!(
        harness.status,
        None,
        "the harness answers what Envoy cuts off: {:?}",
        harness.observed.map(|o| o.response)
    );
}
