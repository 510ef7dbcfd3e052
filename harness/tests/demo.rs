//! `make demo`'s replay, run as the Makefile runs it: every request of
//! `scenarios/bank-mesh.jsonl` through the mesh's WasmPlugins
//! (`wasmplugins/base`) in the harness meets its `expect`, so the demo cannot
//! drift from what the filters do. Needs the built `.wasm` filters (`make build`).

use std::path::Path;
use std::process::Command;

#[test]
fn every_request_of_the_demo_scenario_meets_its_expectation() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO_BIN_EXE_meshward"))
        .current_dir(&repo)
        .env("MESHWARD_AUDIT_KEY_K1", "demo-test-key-0123456789")
        .args([
            "replay",
            "--plugins",
            "wasmplugins/base",
            "--requests",
            "scenarios/bank-mesh.jsonl",
            "--group-repeats",
        ])
        .output()
        .expect("meshward runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The scenario's attacks, as the README's demo promises: blocked by the WAF
    // with their rule ids, and the gRPC scanner refused the gRPC way.
    for expected in [
        "403 meshward-waf (meshward_waf_denied): request blocked by the WAF, reason rule 949110",
        "200 meshward-waf (meshward_waf_denied)",
        "403 meshward-tenant (meshward_tenant_denied): tenant_denied, reason cross_tenant",
        "429 meshward-ratelimit (meshward_ratelimit_limited)",
    ] {
        assert!(stdout.contains(expected), "missing `{expected}`:\n{stdout}");
    }
}
