//! `meshward envoy-config`: an Envoy bootstrap (YAML) that runs the filters of
//! the given WasmPlugin manifests behind an mTLS listener, without Istio.

use anyhow::{bail, Context as _};
use meshward_harness::envoy_config::{self, Bootstrap, Cluster, ListenerTls};
use meshward_harness::manifest::ManifestContext;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  meshward envoy-config --plugins wasmplugins/base --ca ca.pem --cert server.pem --key server.key \\\n    --upstream 127.0.0.1:8080 --node-metadata NAMESPACE=bank-a -o envoy.yaml\n  envoy -c envoy.yaml --concurrency 2"
)]
pub struct Args {
    /// WasmPlugin manifests: files or directories of *.yaml (loaded in Istio's order).
    #[arg(long, required = true, num_args = 1..)]
    plugins: Vec<PathBuf>,
    /// Directory of the built .wasm files that oci:// URLs map to
    /// (default: $MESHWARD_WASM_DIR, else target/wasm32-wasip1/release).
    #[arg(long)]
    wasm_dir: Option<PathBuf>,
    /// Address of the mTLS listener (port 0: Envoy picks one; see its /listeners).
    #[arg(long, default_value = "127.0.0.1:15006")]
    listen: SocketAddr,
    /// Address of Envoy's admin interface.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// The application every request is forwarded to (HTTP/1.1).
    #[arg(long)]
    upstream: SocketAddr,
    /// CA bundle (PEM) that client certificates must chain to.
    #[arg(long, required_unless_present = "plaintext")]
    ca: Option<PathBuf>,
    /// The listener's certificate chain (PEM).
    #[arg(long, required_unless_present = "plaintext")]
    cert: Option<PathBuf>,
    /// The listener's private key (PEM).
    #[arg(long, required_unless_present = "plaintext")]
    key: Option<PathBuf>,
    /// Listen without TLS (no peer certificate reaches the filters: local tries only).
    #[arg(long, conflicts_with_all = ["ca", "cert", "key"])]
    plaintext: bool,
    /// An HTTP/1.1 cluster for `http_call`, e.g. `audit-collector=127.0.0.1:9001` (repeatable).
    #[arg(long = "cluster", value_name = "NAME=ADDR")]
    clusters: Vec<String>,
    /// An HTTP/2 cluster for `grpc_call`, e.g. `rls=127.0.0.1:8081` (repeatable).
    #[arg(long = "grpc-cluster", value_name = "NAME=ADDR")]
    grpc_clusters: Vec<String>,
    /// `node.metadata` entry, e.g. `NAMESPACE=bank-a` (repeatable); filters read it as the
    /// property `xds.node.metadata.<KEY>`.
    #[arg(long = "node-metadata", value_name = "KEY=VALUE")]
    node_metadata: Vec<String>,
    /// `node.id`.
    #[arg(long, default_value = "meshward")]
    node_id: String,
    /// Write one JSON access-log line per request to this file (code, response-code details, peer).
    #[arg(long, value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// Write the bootstrap here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = ManifestContext {
        wasm_dir: args.wasm_dir.clone(),
        host_env: Vec::new(),
    };
    let filters = envoy_config::filters_from_manifests(&args.plugins, &ctx)?;

    let mut bootstrap = Bootstrap::new(args.listen, args.admin, args.upstream);
    bootstrap.node_id = args.node_id.clone();
    bootstrap.access_log = args.access_log.clone();
    if let (Some(ca), Some(cert), Some(key)) = (&args.ca, &args.cert, &args.key) {
        bootstrap.tls = Some(ListenerTls {
            ca: absolute(ca)?,
            cert: absolute(cert)?,
            key: absolute(key)?,
        });
    }
    for spec in &args.clusters {
        let (name, addr) = name_addr(spec)?;
        bootstrap.clusters.push(Cluster::http1(name, addr));
    }
    for spec in &args.grpc_clusters {
        let (name, addr) = name_addr(spec)?;
        bootstrap.clusters.push(Cluster::http2(name, addr));
    }
    for entry in &args.node_metadata {
        let Some((key, value)) = entry.split_once('=') else {
            bail!("--node-metadata {entry:?}: expected KEY=VALUE");
        };
        bootstrap
            .node_metadata
            .insert(key.to_string(), value.to_string());
    }
    for filter in &filters {
        for name in envoy_config::referenced_clusters(filter) {
            if !bootstrap.clusters.iter().any(|c| c.name == name) {
                bail!(
                    "WasmPlugin {} names cluster {name:?}: define it with --cluster {name}=HOST:PORT \
                     (HTTP) or --grpc-cluster {name}=HOST:PORT (gRPC)",
                    filter.name
                );
            }
        }
    }
    bootstrap.filters = filters;

    let yaml = bootstrap.to_yaml()?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn name_addr(spec: &str) -> anyhow::Result<(String, SocketAddr)> {
    let Some((name, addr)) = spec.split_once('=') else {
        bail!("{spec:?}: expected NAME=HOST:PORT");
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{spec:?}: {addr:?} is not an IP:PORT"))?;
    if name.is_empty() {
        bail!("{spec:?}: empty cluster name");
    }
    Ok((name.to_string(), addr))
}

/// Envoy resolves relative paths against its own working directory, not ours.
fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))
}
