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

/// CRS's go-ftw regression suite (`$MESHWARD_CRS_DIR`, else `../shared/crs` beside
/// the repository), loaded once per test binary; a missing CRS is a failure, not a skip.
pub fn crs_suite() -> &'static meshward_harness::ftw::Suite {
    static SUITE: std::sync::OnceLock<meshward_harness::ftw::Suite> = std::sync::OnceLock::new();
    SUITE.get_or_init(|| {
        let dir = std::env::var_os("MESHWARD_CRS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/crs"));
        assert!(
            dir.is_dir(),
            "no CRS at {} (set MESHWARD_CRS_DIR to a CRS v4.28.0 checkout)",
            dir.display()
        );
        meshward_harness::ftw::load_suite(&dir).expect("the CRS test files load")
    })
}

/// The committed CRS overrides (`tests/crs/overrides.yaml`): each test not held to as
/// written, with its reason.
pub fn crs_overrides() -> meshward_harness::ftw::overrides::Overrides {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/crs/overrides.yaml");
    meshward_harness::ftw::overrides::Overrides::load(&path)
        .expect("tests/crs/overrides.yaml loads")
}
