//! The options every command that builds a plugin chain shares.

use meshward_harness::runner::ChainOptions;
use std::path::PathBuf;

#[derive(clap::Args, Clone)]
pub struct ChainArgs {
    /// WasmPlugin manifest files or directories (Istio orders the chain).
    #[arg(long, required = true, num_args = 1..)]
    pub plugins: Vec<PathBuf>,
    /// Worker VMs per plugin (Envoy's `--concurrency`).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Directory of the built filters (default: target/wasm32-wasip1/release).
    #[arg(long)]
    pub wasm_dir: Option<PathBuf>,
    /// A cluster plugins may call (repeatable); its calls fail (no responder).
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// A cluster that answers every HTTP call with 200, e.g. an audit collector.
    #[arg(long = "accept-cluster")]
    pub accepting_clusters: Vec<String>,
}

impl ChainArgs {
    pub fn options(&self) -> ChainOptions {
        ChainOptions {
            plugins: self.plugins.clone(),
            workers: self.workers,
            wasm_dir: self.wasm_dir.clone(),
            clusters: self.clusters.clone(),
            accepting_clusters: self.accepting_clusters.clone(),
        }
    }
}
