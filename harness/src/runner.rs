//! Runs request files through a plugin chain for the command line: one proxy
//! per receiving sidecar (node metadata), SVIDs minted per caller, outcomes
//! checked against expectations and printed one line each.

use crate::exchange::Outcome;
use crate::manifest::{self, ManifestContext, PluginSpec};
use crate::proxy::{LoadError, Proxy};
use crate::request_file::{Expect, RequestMaker, RequestSpec};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How to build the chain: the same for every proxy of a run.
#[derive(Debug, Clone, Default)]
pub struct ChainOptions {
    /// WasmPlugin files or directories.
    pub plugins: Vec<PathBuf>,
    pub workers: usize,
    pub wasm_dir: Option<PathBuf>,
    /// Clusters plugins may call (e.g. a collector); calls to them fail unless answered.
    pub clusters: Vec<String>,
    /// Clusters that answer every HTTP call with 200 (a collector that accepts all).
    pub accepting_clusters: Vec<String>,
}

impl ChainOptions {
    pub fn specs(&self) -> anyhow::Result<Vec<PluginSpec>> {
        let ctx = ManifestContext {
            wasm_dir: self.wasm_dir.clone(),
            host_env: Vec::new(),
        };
        let specs = manifest::load_manifests(&self.plugins, &ctx)?;
        anyhow::ensure!(
            !specs.is_empty(),
            "no WasmPlugin found in {:?}",
            self.plugins
        );
        Ok(specs)
    }

    /// A proxy with these plugins for a sidecar with this node metadata.
    pub fn build(
        &self,
        specs: &[PluginSpec],
        node: &BTreeMap<String, String>,
    ) -> Result<Proxy, LoadError> {
        let mut builder = Proxy::builder().workers(self.workers.max(1));
        for (k, v) in node {
            builder = builder.node_metadata(k, v);
        }
        for c in self.clusters.iter().chain(&self.accepting_clusters) {
            builder = builder.cluster(c);
        }
        for spec in specs {
            builder = builder.plugin(spec.clone());
        }
        let mut proxy = builder.build()?;
        for c in &self.accepting_clusters {
            proxy.on_http_call(c, |_| {
                crate::exchange::CallReply::response(200, vec![], Vec::new())
            });
        }
        Ok(proxy)
    }
}

/// Sends request specs, keeping one proxy per distinct `node`.
pub struct Runner {
    options: ChainOptions,
    specs: Vec<PluginSpec>,
    proxies: BTreeMap<String, Proxy>,
    maker: RequestMaker,
}

fn node_key(node: &BTreeMap<String, String>) -> String {
    node.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Runner {
    pub fn new(options: ChainOptions) -> anyhow::Result<Self> {
        let specs = options.specs()?;
        Ok(Runner {
            options,
            specs,
            proxies: BTreeMap::new(),
            maker: RequestMaker::new()?,
        })
    }

    pub fn plugin_names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    fn proxy(&mut self, node: &BTreeMap<String, String>) -> anyhow::Result<&mut Proxy> {
        let key = node_key(node);
        if !self.proxies.contains_key(&key) {
            let proxy = self.options.build(&self.specs, node)?;
            self.proxies.insert(key.clone(), proxy);
        }
        self.proxies.get_mut(&key).context("proxy vanished")
    }

    /// Sends the request `repeat` times (after moving the clock by `advanceMs`).
    pub fn send(&mut self, spec: &RequestSpec) -> anyhow::Result<Vec<Outcome>> {
        let request = self.maker.make(spec)?;
        let proxy = self.proxy(&spec.node)?;
        if spec.advance_ms > 0 {
            proxy.advance(Duration::from_millis(spec.advance_ms));
        }
        Ok((0..spec.repeat.max(1))
            .map(|_| proxy.send(request.clone()))
            .collect())
    }

    /// Every proxy of the run, by node.
    pub fn proxies(&self) -> impl Iterator<Item = (&String, &Proxy)> {
        self.proxies.iter()
    }
}

/// What differs from the expectation, one line each (empty: as expected).
pub fn check(expect: &Expect, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(status) = expect.status {
        if outcome.status() != status {
            problems.push(format!("status {} (expected {status})", outcome.status()));
        }
    }
    if let Some(plugin) = &expect.replied_by {
        if outcome.replied_by() != Some(plugin.as_str()) {
            problems.push(format!(
                "answered by {} (expected {plugin})",
                outcome.replied_by().unwrap_or("the upstream")
            ));
        }
    }
    for (name, value) in &expect.upstream_headers {
        match outcome.upstream_header(name) {
            None => problems.push(format!("upstream lacks {name}")),
            Some(v) if !value.is_empty() && v != value => {
                problems.push(format!("upstream {name}: {v} (expected {value})"))
            }
            Some(_) => {}
        }
    }
    for name in &expect.upstream_headers_absent {
        if outcome.upstream_header(name).is_some() {
            problems.push(format!("upstream received {name}"));
        }
    }
    for name in &expect.response_headers {
        if outcome.response.get(name).is_none() {
            problems.push(format!("response lacks {name}"));
        }
    }
    problems
}

/// One line about an outcome: status, who answered and why, what the upstream got.
pub fn describe(outcome: &Outcome) -> String {
    let who = match &outcome.local_reply {
        Some(l) => format!("{} ({})", l.plugin, l.details),
        None if outcome.reset => "stream reset".to_string(),
        None => "upstream".to_string(),
    };
    let body = serde_json::from_slice::<serde_json::Value>(&outcome.response.body).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|e| e.as_str())
            .map(str::to_string)
    };
    match (field("error"), field("reason")) {
        (Some(e), Some(r)) if outcome.local_reply.is_some() => {
            format!("{} {who}: {e}, reason {r}", outcome.status())
        }
        (Some(e), None) if outcome.local_reply.is_some() => {
            format!("{} {who}: {e}", outcome.status())
        }
        _ => format!("{} {who}", outcome.status()),
    }
}
