//! End-to-end: the scenario suite through a real Envoy 1.40 (V8) and through the
//! harness, from the same `wasmplugins/` manifests; plus what only real worker
//! threads can show. Needs the built filters (`make build`) and Envoy (`make envoy`);
//! `make e2e` does both.

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

#[test]
fn envoy_refuses_a_client_without_certificate_and_frees_its_port_when_stopped() {
    let mesh = mesh();
    let rig = scenarios::EnvoyRig::start(mesh, scenarios::BANK_A_API, 1).expect("Envoy starts");
    let listener = rig.envoy.listener();
    let admin = rig.envoy.admin();
    let anonymous = MtlsClient::new(mesh.ca.pem(), None, "localhost").unwrap();
    let request = WireRequest {
        method: "GET".into(),
        path: "/accounts/1".into(),
        authority: "api.bank-a.svc.cluster.local".into(),
        headers: vec![],
        body: vec![],
    };
    assert!(
        anonymous.send(listener, &request).is_err(),
        "a client without certificate got an answer"
    );
    assert_eq!(rig.upstream.count(), 0);
    drop(rig);
    for addr in [listener, admin] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still accepts after Envoy stopped"
        );
    }
    // The guard type is what the scenarios use; keep it in the public API.
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
