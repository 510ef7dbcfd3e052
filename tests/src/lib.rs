//! Helpers shared by the integration tests.

pub mod e2e;
pub mod scenarios;

use std::path::PathBuf;

/// The built `.wasm` of a filter or test plugin: `wasm("tenant")` is
/// `target/wasm32-wasip1/release/meshward_tenant.wasm` (`make build` writes it);
/// `$MESHWARD_WASM_DIR` overrides the directory.
pub fn wasm(name: &str) -> PathBuf {
    meshward_harness::manifest::default_wasm_dir()
        .join(format!("meshward_{}.wasm", name.replace('-', "_")))
}

/// The repository's mesh-wide WasmPlugin manifests (`wasmplugins/base`).
pub fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasmplugins/base")
}
