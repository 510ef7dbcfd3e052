//! The proxy: a chain of plugins, each with a VM per worker, driving HTTP
//! streams through them the way Envoy's filter manager does (ARCHITECTURE §4).

use crate::abi::{grpc_status, Action, StreamType};
use crate::cert::PeerCert;
use crate::exchange::{
    find_header, CallReply, CallRequest, GrpcCallRequest, GrpcReply, Headers, LocalReply, LogLine,
    Outcome, Request, Response, Upstream,
};
use crate::host::{
    Access, CallScope, ContextKind, Effect, Exchange, HostState, NewCall, NewCallKind, PluginInfo,
    StreamAccess, StreamContext,
};
use crate::manifest::{self, FailStrategy, ManifestContext, PluginSpec};
use crate::process::{Node, Process};
use crate::vm::{self, Trap, Vm};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use wasmtime::{Linker, Module};

/// 2026-01-01T00:00:00Z: where the virtual clock starts unless a test says otherwise.
pub const DEFAULT_START_NANOS: u64 = 1_767_225_600 * 1_000_000_000;

/// A plugin that Envoy would have rejected: its module did not load, or
/// `proxy_on_vm_start` / `proxy_on_configure` returned false or trapped.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub plugin: String,
    pub reason: String,
    /// What the plugin logged while loading (its reason for refusing, usually).
    pub logs: Vec<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {} was rejected: {}", self.plugin, self.reason)?;
        for line in &self.logs {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

type UpstreamFn = Box<dyn FnMut(&Upstream) -> Response>;
type HttpResponder = Box<dyn FnMut(&CallRequest) -> CallReply>;
type GrpcResponder = Box<dyn FnMut(&GrpcCallRequest) -> GrpcReply>;

/// Builds a [`Proxy`]: workers, node, clusters, plugins.
pub struct ProxyBuilder {
    workers: usize,
    node: Node,
    clusters: Vec<String>,
    plugins: Vec<PluginSpec>,
    manifest_context: ManifestContext,
    start_nanos: u64,
    generate_request_id: bool,
    log_limit: usize,
    local_identity: Option<String>,
    upstream_cluster: String,
    normalize_path: bool,
}

impl ProxyBuilder {
    /// Worker threads, each with its own VM per plugin (Envoy's `--concurrency`).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// `node.metadata.<key>`; Istio sets `NAMESPACE`, `WORKLOAD_NAME`, `CLUSTER_ID`…
    pub fn node_metadata(mut self, key: &str, value: &str) -> Self {
        self.node.metadata.retain(|(k, _)| k != key);
        self.node
            .metadata
            .push((key.to_string(), value.to_string()));
        self
    }

    pub fn node_id(mut self, id: &str) -> Self {
        self.node.id = id.to_string();
        self
    }

    /// A cluster that `proxy_http_call` / `proxy_grpc_call` may name.
    pub fn cluster(mut self, name: &str) -> Self {
        self.clusters.push(name.to_string());
        self
    }

    /// A value Envoy's own environment holds, for `vmConfig.env` `valueFrom: HOST`.
    pub fn host_env(mut self, key: &str, value: &str) -> Self {
        self.manifest_context
            .host_env
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Where `oci://…/meshward-<name>` images are found (default: the build output).
    pub fn wasm_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.manifest_context.wasm_dir = Some(dir.into());
        self
    }

    pub fn plugin(mut self, spec: PluginSpec) -> Self {
        self.plugins.push(spec);
        self
    }

    /// Adds the WasmPlugins of these files or directories.
    pub fn manifests<P: Into<PathBuf> + Clone>(mut self, paths: &[P]) -> anyhow::Result<Self> {
        let paths: Vec<PathBuf> = paths.iter().cloned().map(Into::into).collect();
        let specs = manifest::load_manifests(&paths, &self.manifest_context)?;
        self.plugins.extend(specs);
        Ok(self)
    }

    pub fn start_time_nanos(mut self, nanos: u64) -> Self {
        self.start_nanos = nanos;
        self
    }

    /// This proxy's own SPIFFE ID (its server certificate's URI SAN): the `By=`
    /// of the XFCC element it adds for mTLS callers. Default:
    /// `spiffe://cluster.local/ns/<NAMESPACE>/sa/default` when the node metadata
    /// names a namespace.
    pub fn local_identity(mut self, spiffe_id: &str) -> Self {
        self.local_identity = Some(spiffe_id.to_string());
        self
    }

    /// Whether `:path` has its dot segments resolved before any filter sees it
    /// (Envoy's `normalize_path`, on in Istio by default).
    pub fn normalize_path(mut self, on: bool) -> Self {
        self.normalize_path = on;
        self
    }

    /// The route's upstream cluster, `xds.cluster_name` (default `app`).
    pub fn upstream_cluster(mut self, name: &str) -> Self {
        self.upstream_cluster = name.to_string();
        self
    }

    /// How many log lines the proxy keeps (the oldest half is dropped past it).
    pub fn log_limit(mut self, lines: usize) -> Self {
        self.log_limit = lines;
        self
    }

    /// Whether the proxy adds `x-request-id` when a request has none (Envoy's
    /// `generate_request_id`, on by default).
    pub fn generate_request_id(mut self, on: bool) -> Self {
        self.generate_request_id = on;
        self
    }

    /// Loads every plugin in Istio's order: a canary VM first (start and
    /// configure), then one VM per worker.
    pub fn build(self) -> Result<Proxy, LoadError> {
        let mut plugins = self.plugins;
        manifest::istio_order(&mut plugins);
        let mut process = Process::new(self.start_nanos, self.node);
        process.clusters = self.clusters;
        process.log_limit = self.log_limit;
        process.upstream_cluster = self.upstream_cluster;
        let local_identity = self.local_identity.or_else(|| {
            process
                .node
                .metadata
                .iter()
                .find(|(k, _)| k == "NAMESPACE")
                .map(|(_, ns)| format!("spiffe://cluster.local/ns/{ns}/sa/default"))
        });
        let process = Rc::new(RefCell::new(process));
        let mut modules = Vec::new();
        for spec in &plugins {
            let module = vm::load_module(&spec.wasm).map_err(|e| LoadError {
                plugin: spec.name.clone(),
                reason: format!("{e:#}"),
                logs: Vec::new(),
            })?;
            modules.push(module);
        }
        let linker =
            vm::linker_for(&modules.iter().collect::<Vec<_>>()).map_err(|e| LoadError {
                plugin: plugins.first().map(|p| p.name.clone()).unwrap_or_default(),
                reason: format!("{e:#}"),
                logs: Vec::new(),
            })?;
        let mut proxy = Proxy {
            linker,
            process,
            plugins: Vec::new(),
            workers: self.workers,
            generate_request_id: self.generate_request_id,
            local_identity,
            normalize_path: self.normalize_path,
            peer_certs: HashMap::new(),
            upstream: Box::new(echo_upstream),
            http_responders: HashMap::new(),
            grpc_responders: HashMap::new(),
            http_calls: Vec::new(),
            grpc_calls: Vec::new(),
            pending_calls: VecDeque::new(),
            effects: Vec::new(),
            next_connection_id: 1000,
        };
        for (index, (spec, module)) in plugins.into_iter().zip(modules).enumerate() {
            let info = plugin_info(&spec, &spec.configuration);
            proxy.plugins.push(Plugin {
                spec,
                info,
                module,
                vms: Vec::new(),
            });
            proxy.start_plugin(index)?;
        }
        Ok(proxy)
    }
}

fn plugin_info(spec: &PluginSpec, configuration: &[u8]) -> Rc<PluginInfo> {
    Rc::new(PluginInfo {
        name: spec.name.clone(),
        root_id: spec.root_id.clone(),
        vm_id: spec.vm_id.clone(),
        configuration: configuration.to_vec(),
        vm_configuration: spec.vm_configuration.clone(),
        environ: spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect(),
    })
}

/// The default upstream: 200, echoing the request body (and its content type).
fn echo_upstream(request: &Upstream) -> Response {
    let mut response = Response::new(200).body(request.body.clone());
    if let Some(ct) = request.header("content-type") {
        response = response.header("content-type", ct);
    }
    response
}

struct Plugin {
    spec: PluginSpec,
    info: Rc<PluginInfo>,
    module: Module,
    vms: Vec<Vm>,
}

/// One filter of a stream: the plugin, its stream context in the worker's VM,
/// and whether it still takes part (a FAIL_OPEN plugin whose VM failed does not).
struct Slot {
    plugin: usize,
    context: u32,
    active: bool,
}

struct Stream {
    worker: usize,
    exchange: Rc<RefCell<Exchange>>,
    slots: Vec<Slot>,
}

/// A local reply on its way to the client.
struct Reply {
    plugin: String,
    status: u32,
    details: String,
    body: Vec<u8>,
    headers: Headers,
    grpc_status: Option<u32>,
}

/// How one direction of a stream ended.
enum Flow {
    /// Iteration went through every filter.
    Through,
    LocalReply(Reply),
    /// A local reply sent after the response headers went downstream: Envoy
    /// cannot replace what the client already has, so it resets the stream.
    LateLocalReply(Reply),
    Reset,
    /// A filter paused and nothing left could resume it.
    Stalled,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

#[derive(Clone, Copy)]
enum Stage {
    Headers,
    Trailers,
}

/// A proxy-wasm host that behaves like Envoy: see the crate docs.
pub struct Proxy {
    linker: Linker<HostState>,
    process: Rc<RefCell<Process>>,
    plugins: Vec<Plugin>,
    workers: usize,
    generate_request_id: bool,
    local_identity: Option<String>,
    normalize_path: bool,
    /// Peer certificates already parsed, by PEM.
    peer_certs: HashMap<String, Rc<PeerCert>>,
    upstream: UpstreamFn,
    http_responders: HashMap<String, HttpResponder>,
    grpc_responders: HashMap<String, GrpcResponder>,
    http_calls: Vec<CallRequest>,
    grpc_calls: Vec<GrpcCallRequest>,
    /// Calls made by plugins, waiting for the cluster's answer: (plugin, worker, call).
    pending_calls: VecDeque<(usize, usize, NewCall)>,
    /// Stream effects harvested after callbacks: (plugin, worker, effect).
    effects: Vec<(usize, usize, Effect)>,
    next_connection_id: u64,
}

impl Proxy {
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder {
            workers: 1,
            node: Node {
                id: "sidecar~10.0.0.2~app.default~default.svc.cluster.local".into(),
                cluster: "app.default".into(),
                metadata: Vec::new(),
            },
            clusters: Vec::new(),
            plugins: Vec::new(),
            manifest_context: ManifestContext::default(),
            start_nanos: DEFAULT_START_NANOS,
            generate_request_id: true,
            log_limit: crate::process::DEFAULT_LOG_LIMIT,
            local_identity: None,
            upstream_cluster: "app".to_string(),
            normalize_path: true,
        }
    }

    // ----- loading -------------------------------------------------------

    fn new_vm(&self, index: usize, worker: usize, info: Rc<PluginInfo>) -> Result<Vm, LoadError> {
        let plugin = &self.plugins[index];
        let log_start = self.process.borrow().log_mark();
        let host = HostState::new(info, (index, worker), self.process.clone());
        let mut vm =
            Vm::instantiate(&self.linker, &plugin.module, host).map_err(|e| LoadError {
                plugin: plugin.spec.name.clone(),
                reason: format!("{e:#}"),
                logs: Vec::new(),
            })?;
        vm.start().map_err(|reason| LoadError {
            plugin: plugin.spec.name.clone(),
            reason,
            logs: self
                .process
                .borrow()
                .logs_since(log_start)
                .iter()
                .filter(|l| l.plugin == plugin.spec.name)
                .map(|l| l.message.clone())
                .collect(),
        })?;
        Ok(vm)
    }

    /// Envoy first starts and configures a throw-away canary VM, then one VM
    /// per worker and one for the main thread. The main thread's VM (kept last,
    /// at index `workers`) serves no stream, but its root context ticks.
    fn start_plugin(&mut self, index: usize) -> Result<(), LoadError> {
        let info = self.plugins[index].info.clone();
        let canary = self.new_vm(index, self.workers + 1, info.clone())?;
        drop(canary);
        let mut vms = Vec::with_capacity(self.workers + 1);
        for worker in 0..=self.workers {
            vms.push(self.new_vm(index, worker, info.clone())?);
        }
        self.plugins[index].vms = vms;
        self.pump_all();
        Ok(())
    }

    /// Gives a plugin a new configuration. As in Envoy, a rejected configuration
    /// leaves the running one in place.
    pub fn reconfigure(
        &mut self,
        plugin: &str,
        configuration: impl Into<Vec<u8>>,
    ) -> Result<(), LoadError> {
        let index = self.plugin_index(plugin).ok_or_else(|| LoadError {
            plugin: plugin.to_string(),
            reason: "no such plugin".into(),
            logs: Vec::new(),
        })?;
        let configuration = configuration.into();
        let info = plugin_info(&self.plugins[index].spec, &configuration);
        let old = std::mem::replace(&mut self.plugins[index].info, info);
        match self.start_plugin(index) {
            Ok(()) => {
                self.plugins[index].spec.configuration = configuration;
                Ok(())
            }
            Err(e) => {
                self.plugins[index].info = old;
                Err(e)
            }
        }
    }

    fn plugin_index(&self, name: &str) -> Option<usize> {
        self.plugins
            .iter()
            .position(|p| p.spec.name == name)
            .or_else(|| self.plugins.iter().position(|p| p.spec.root_id == name))
    }

    // ----- what tests program and read ----------------------------------

    /// Replaces the upstream service (default: 200 echoing the body).
    pub fn set_upstream(&mut self, upstream: impl FnMut(&Upstream) -> Response + 'static) {
        self.upstream = Box::new(upstream);
    }

    /// Programs how `cluster` answers HTTP calls (default: connection failure).
    pub fn on_http_call(
        &mut self,
        cluster: &str,
        responder: impl FnMut(&CallRequest) -> CallReply + 'static,
    ) {
        self.http_responders
            .insert(cluster.to_string(), Box::new(responder));
    }

    /// Programs how `cluster` answers gRPC calls (default: UNAVAILABLE).
    pub fn on_grpc_call(
        &mut self,
        cluster: &str,
        responder: impl FnMut(&GrpcCallRequest) -> GrpcReply + 'static,
    ) {
        self.grpc_responders
            .insert(cluster.to_string(), Box::new(responder));
    }

    pub fn http_calls(&self) -> &[CallRequest] {
        &self.http_calls
    }

    pub fn grpc_calls(&self) -> &[GrpcCallRequest] {
        &self.grpc_calls
    }

    /// Every log line kept so far (the newest 200 000 unless [`ProxyBuilder::log_limit`] says otherwise).
    pub fn logs(&self) -> Vec<LogLine> {
        self.process.borrow().logs_since(0).to_vec()
    }

    /// A metric by the exact name the plugin defined, over all workers.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.process.borrow().metric_value(name)
    }

    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.process
            .borrow()
            .metrics
            .iter()
            .map(|(k, m)| (k.clone(), m.value))
            .collect()
    }

    /// A shared-data entry (value, cas) in the default `vm_id` "", as Istio uses.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.process.borrow().get_shared("", key)
    }

    pub fn shared_data_in(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.process.borrow().get_shared(vm_id, key)
    }

    /// Every shared-data key of a `vm_id`, sorted.
    pub fn shared_data_keys(&self, vm_id: &str) -> Vec<String> {
        self.process.borrow().shared_keys(vm_id)
    }

    /// The next `n` writes with a non-zero cas to an existing key answer
    /// CAS_MISMATCH, as if another worker had written first.
    pub fn inject_cas_mismatches(&mut self, n: usize) {
        self.process.borrow_mut().injected_cas_mismatches = n;
    }

    /// Linear memory of each VM that serves streams, by plugin name: one
    /// entry per worker VM (the main-thread VM is left out).
    pub fn vm_memory_bytes(&self) -> Vec<(String, usize)> {
        self.plugins
            .iter()
            .flat_map(|p| {
                p.vms
                    .iter()
                    .take(self.workers)
                    .map(|vm| (p.spec.name.clone(), vm.memory_bytes()))
            })
            .collect()
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Plugin names in chain order.
    pub fn plugin_names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.spec.name.clone()).collect()
    }

    pub fn now_nanos(&self) -> u64 {
        self.process.borrow().clock.wall_nanos
    }

    /// Moves the virtual clock forward, firing every tick that falls due on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now_nanos().saturating_add(by.as_nanos() as u64);
        loop {
            let next = self
                .plugins
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    p.vms.iter().enumerate().filter_map(move |(w, vm)| {
                        let host = vm.host();
                        (host.tick_period_ms > 0 && !vm.failed && host.next_tick_nanos <= target)
                            .then_some((host.next_tick_nanos, i, w))
                    })
                })
                .min();
            let Some((at, i, w)) = next else { break };
            self.set_clock(at);
            let vm = &mut self.plugins[i].vms[w];
            let period = u64::from(vm.host().tick_period_ms) * 1_000_000;
            vm.host_mut().next_tick_nanos = at + period.max(1);
            let root = vm.host().root_context;
            let _ = vm.call(|c| c.tick.as_ref(), root, root as i32);
            self.harvest(i, w);
            self.pump_all();
        }
        self.set_clock(target);
    }

    fn set_clock(&self, wall: u64) {
        let mut process = self.process.borrow_mut();
        let delta = wall.saturating_sub(process.clock.wall_nanos);
        process.clock.wall_nanos = wall;
        process.clock.monotonic_nanos += delta;
    }

    // ----- callbacks, effects and calls ---------------------------------

    /// Moves what a callback asked for out of the VM: stream effects, new calls.
    fn harvest(&mut self, i: usize, w: usize) {
        let host = self.plugins[i].vms[w].host_mut();
        let effects = std::mem::take(&mut host.effects);
        let calls = std::mem::take(&mut host.new_calls);
        for effect in effects {
            if let Effect::Done { context } = effect {
                self.finish_context(i, w, context);
            } else {
                self.effects.push((i, w, effect));
            }
        }
        for call in calls {
            self.pending_calls.push_back((i, w, call));
        }
    }

    /// `proxy_done` from a context that answered false to `proxy_on_done`.
    fn finish_context(&mut self, i: usize, w: usize, context: u32) {
        let vm = &mut self.plugins[i].vms[w];
        vm.host_mut().awaiting_done.retain(|c| *c != context);
        let _ = vm.call(|c| c.delete.as_ref(), context, context as i32);
        vm.host_mut().contexts.remove(&context);
    }

    /// Delivers one pending call answer or queue notification; false when idle.
    fn pump_one(&mut self) -> bool {
        if let Some((i, w, call)) = self.pending_calls.pop_front() {
            self.answer_call(i, w, call);
            return true;
        }
        let ready = {
            let mut process = self.process.borrow_mut();
            if process.queue_ready.is_empty() {
                None
            } else {
                Some(process.queue_ready.remove(0))
            }
        };
        if let Some(((i, w), context, queue)) = ready {
            if let Some(vm) = self.plugins.get_mut(i).and_then(|p| p.vms.get_mut(w)) {
                if !vm.failed {
                    let _ = vm.call(
                        |c| c.queue_ready.as_ref(),
                        context,
                        (context as i32, queue as i32),
                    );
                    self.harvest(i, w);
                }
            }
            return true;
        }
        false
    }

    fn pump_all(&mut self) {
        // Bounded, in case plugins keep calling each other forever.
        for _ in 0..100_000 {
            if !self.pump_one() {
                return;
            }
        }
    }

    fn answer_call(&mut self, i: usize, w: usize, call: NewCall) {
        let plugin = self.plugins[i].spec.name.clone();
        match call.kind {
            NewCallKind::Http {
                headers,
                body,
                trailers,
            } => {
                let request = CallRequest {
                    plugin,
                    cluster: call.cluster.clone(),
                    headers,
                    body,
                    trailers,
                    timeout: call.timeout,
                };
                let reply = match self.http_responders.get_mut(&call.cluster) {
                    Some(responder) => responder(&request),
                    None => CallReply::Failure,
                };
                self.http_calls.push(request);
                let scope = match reply {
                    CallReply::Response {
                        headers,
                        body,
                        trailers,
                    } => CallScope {
                        headers,
                        body,
                        trailers,
                        ..Default::default()
                    },
                    CallReply::Failure => CallScope::default(),
                    CallReply::Timeout => {
                        self.advance(call.timeout);
                        CallScope::default()
                    }
                };
                let vm = &mut self.plugins[i].vms[w];
                if vm.failed || !vm.host().calls_in_flight.contains(&call.token) {
                    return; // cancelled, or the VM is gone
                }
                vm.host_mut().calls_in_flight.retain(|t| *t != call.token);
                let args = (
                    call.root_context as i32,
                    call.token as i32,
                    scope.headers.len() as i32,
                    scope.body.len() as i32,
                    scope.trailers.len() as i32,
                );
                vm.host_mut().call_scope = Some(scope);
                let _ = vm.call(|c| c.http_call_response.as_ref(), call.root_context, args);
                vm.host_mut().call_scope = None;
                self.harvest(i, w);
            }
            NewCallKind::Grpc {
                service,
                method,
                initial_metadata,
                message,
            } => {
                let request = GrpcCallRequest {
                    plugin,
                    cluster: call.cluster.clone(),
                    service,
                    method,
                    initial_metadata,
                    message,
                    timeout: call.timeout,
                };
                let reply = match self.grpc_responders.get_mut(&call.cluster) {
                    Some(responder) => responder(&request),
                    None => {
                        GrpcReply::Status(grpc_status::UNAVAILABLE, "no healthy upstream".into())
                    }
                };
                self.grpc_calls.push(request);
                if let GrpcReply::Timeout = reply {
                    self.advance(call.timeout);
                }
                let vm = &mut self.plugins[i].vms[w];
                let is_stream = vm.host().grpc_streams.contains_key(&call.token);
                if vm.failed || !(is_stream || vm.host().calls_in_flight.contains(&call.token)) {
                    return;
                }
                let root = call.root_context as i32;
                let token = call.token as i32;
                match reply {
                    GrpcReply::Message(message) => {
                        if !is_stream {
                            vm.host_mut().calls_in_flight.retain(|t| *t != call.token);
                        }
                        let len = message.len() as i32;
                        vm.host_mut().call_scope = Some(CallScope::default());
                        if is_stream && vm.host_mut().grpc_streams_answered.insert(call.token) {
                            // A stream's first answer starts with its initial metadata.
                            let _ = vm.call(
                                |c| c.grpc_receive_initial_metadata.as_ref(),
                                call.root_context,
                                (root, token, 0),
                            );
                        }
                        vm.host_mut().call_scope = Some(CallScope {
                            body: message,
                            ..Default::default()
                        });
                        vm.host_mut().grpc_status = Some((grpc_status::OK, String::new()));
                        let _ = vm.call(
                            |c| c.grpc_receive.as_ref(),
                            call.root_context,
                            (root, token, len),
                        );
                    }
                    GrpcReply::Status(code, message) => {
                        self.close_grpc(i, w, call.token, root, code, message);
                    }
                    GrpcReply::Timeout => {
                        self.close_grpc(
                            i,
                            w,
                            call.token,
                            root,
                            grpc_status::DEADLINE_EXCEEDED,
                            "upstream request timeout".into(),
                        );
                    }
                }
                let vm = &mut self.plugins[i].vms[w];
                vm.host_mut().call_scope = None;
                vm.host_mut().grpc_status = None;
                self.harvest(i, w);
            }
        }
    }

    fn close_grpc(
        &mut self,
        i: usize,
        w: usize,
        token: u32,
        root: i32,
        code: u32,
        message: String,
    ) {
        let vm = &mut self.plugins[i].vms[w];
        vm.host_mut().calls_in_flight.retain(|t| *t != token);
        vm.host_mut().call_scope = Some(CallScope::default());
        if vm.host_mut().grpc_streams.remove(&token).is_some() {
            // A stream the server ends sends its trailing metadata first.
            vm.host_mut().grpc_streams_answered.remove(&token);
            let _ = vm.call(
                |c| c.grpc_receive_trailing_metadata.as_ref(),
                root as u32,
                (root, token as i32, 0),
            );
        }
        vm.host_mut().grpc_status = Some((code, message));
        let _ = vm.call(
            |c| c.grpc_close.as_ref(),
            root as u32,
            (root, token as i32, code as i32),
        );
    }

    // ----- streams ------------------------------------------------------

    /// Sends one request through the chain to the upstream and back, and
    /// returns everything observable about it.
    pub fn send(&mut self, request: Request) -> Outcome {
        let log_start = self.process.borrow().log_mark();
        let worker = request.worker % self.workers;
        let connection_id = request.connection.id.unwrap_or_else(|| {
            self.next_connection_id += 1;
            self.next_connection_id
        });
        let path = if self.normalize_path {
            normalize_path(&request.path)
        } else {
            request.path.clone()
        };
        let mut headers: Headers = vec![
            (":authority".into(), request.authority.clone()),
            (":path".into(), path),
            (":method".into(), request.method.clone()),
            (":scheme".into(), request.scheme.clone()),
        ];
        // A CONNECT request reaches the filters with :authority and no :path.
        if request.path.is_empty() {
            headers.retain(|(k, _)| k != ":path");
        }
        headers.extend(request.headers.iter().cloned());
        if find_header(&headers, "x-forwarded-proto").is_none() {
            headers.push(("x-forwarded-proto".into(), request.scheme.clone()));
        }
        if self.generate_request_id && find_header(&headers, "x-request-id").is_none() {
            headers.push(("x-request-id".into(), uuid_v4()));
        }
        let peer = request
            .connection
            .peer_certificate_pem
            .as_deref()
            .map(|pem| self.peer_cert(pem));
        self.forward_client_cert(&mut headers, peer.as_deref());
        let exchange = Rc::new(RefCell::new(Exchange {
            request_headers: headers,
            request_trailers: request.trailers.clone(),
            connection_id,
            source: request.connection.source.clone(),
            destination: request.connection.destination.clone(),
            peer,
            request_time_nanos: self.now_nanos(),
            protocol: request.protocol.clone(),
            request_body_size: request.body_len() as u64,
            ..Default::default()
        }));
        let mut stream = self.open_stream(worker, exchange.clone());

        let mut upstream_seen = None;
        let mut reset = false;
        let flow = self.run_direction(
            &mut stream,
            Dir::Request,
            request.body_chunks.clone(),
            !request.trailers.is_empty(),
        );
        let (response, local) = match flow {
            // A sidecar's routes match paths; a CONNECT (no :path) matches none, so
            // Envoy's router answers 404 `route_not_found` once the filters have run.
            (Flow::Through, _)
                if find_header(&exchange.borrow().request_headers, ":path").is_none() =>
            {
                exchange.borrow_mut().response_code_details = "route_not_found".into();
                self.respond(&mut stream, Response::new(404), None)
            }
            (Flow::Through, body) => {
                let upstream = {
                    let x = exchange.borrow();
                    Upstream {
                        method: find_header(&x.request_headers, ":method")
                            .unwrap_or("")
                            .to_string(),
                        path: find_header(&x.request_headers, ":path")
                            .unwrap_or("")
                            .to_string(),
                        headers: x.request_headers.clone(),
                        body,
                        trailers: x.request_trailers.clone(),
                    }
                };
                let mut answer = (self.upstream)(&upstream);
                // The router adds this before the response filters run.
                answer
                    .headers
                    .push(("x-envoy-upstream-service-time".into(), "0".into()));
                upstream_seen = Some(upstream);
                exchange.borrow_mut().response_code_details = "via_upstream".into();
                self.respond(&mut stream, answer, None)
            }
            // On the request path nothing has gone downstream yet.
            (Flow::LocalReply(reply) | Flow::LateLocalReply(reply), _) => {
                self.local_reply(&mut stream, reply)
            }
            (Flow::Reset, _) | (Flow::Stalled, _) => {
                reset = true;
                (Response::new(0), None)
            }
        };
        let reset = reset || response.status == 0;
        let mut response = response;
        if !reset {
            self.codec_headers(&exchange, &mut response);
        }
        self.close_stream(&mut stream);
        self.pump_all();
        let logs = self.process.borrow().logs_since(log_start).to_vec();
        let filter_state = exchange
            .borrow()
            .filter_state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Outcome {
            filter_state,
            upstream: upstream_seen,
            response,
            local_reply: local,
            reset,
            logs,
        }
    }

    /// What Envoy's TLS stack knows of a peer certificate, parsed once per
    /// certificate (Envoy parses once per connection).
    fn peer_cert(&mut self, pem: &str) -> Rc<PeerCert> {
        if let Some(known) = self.peer_certs.get(pem) {
            return known.clone();
        }
        if self.peer_certs.len() >= 1024 {
            self.peer_certs.clear();
        }
        let parsed = Rc::new(PeerCert::parse(pem));
        self.peer_certs.insert(pem.to_string(), parsed.clone());
        parsed
    }

    /// Istio's sidecar (`forward_client_cert_details: APPEND_FORWARD`,
    /// `set_current_client_cert_details: {subject, uri, dns}`): an mTLS
    /// caller's request gets this proxy's element appended to
    /// `x-forwarded-client-cert`; a plaintext caller's XFCC is removed, as
    /// Envoy sanitizes it.
    fn forward_client_cert(&self, headers: &mut Headers, peer: Option<&PeerCert>) {
        let Some(peer) = peer else {
            headers.retain(|(k, _)| k != "x-forwarded-client-cert");
            return;
        };
        let mut element = Vec::new();
        if let Some(by) = &self.local_identity {
            element.push(format!("By={by}"));
        }
        element.push(format!("Hash={}", peer.der_sha256_hex));
        element.push(format!("Subject=\"{}\"", peer.subject.replace('"', "\\\"")));
        for uri in &peer.uri_sans {
            element.push(format!("URI={uri}"));
        }
        for dns in &peer.dns_sans {
            element.push(format!("DNS={dns}"));
        }
        let element = element.join(";");
        match headers
            .iter_mut()
            .find(|(k, _)| k == "x-forwarded-client-cert")
        {
            Some((_, value)) => {
                value.push(',');
                value.push_str(&element);
            }
            None => headers.push(("x-forwarded-client-cert".into(), element)),
        }
    }

    /// What Envoy's codec sets on every response after the filters ran:
    /// `date` and `server: envoy` (in `proxy_on_log` they are there).
    fn codec_headers(&self, exchange: &Rc<RefCell<Exchange>>, response: &mut Response) {
        let wall = std::time::UNIX_EPOCH + Duration::from_nanos(self.now_nanos());
        let date = httpdate::fmt_http_date(wall);
        let mut x = exchange.borrow_mut();
        for (name, value) in [("date", date.as_str()), ("server", "envoy")] {
            for map in [&mut x.response_headers, &mut response.headers] {
                map.retain(|(k, _)| k != name);
                map.push((name.to_string(), value.to_string()));
            }
        }
    }

    /// Creates the stream's context in each plugin's VM on this worker, applying
    /// each failed plugin's fail strategy.
    fn open_stream(&mut self, worker: usize, exchange: Rc<RefCell<Exchange>>) -> Stream {
        let mut slots = Vec::with_capacity(self.plugins.len());
        for i in 0..self.plugins.len() {
            if self.plugins[i].vms[worker].failed
                && self.plugins[i].spec.fail_strategy == FailStrategy::FailReload
            {
                let info = self.plugins[i].info.clone();
                if let Ok(vm) = self.new_vm(i, worker, info) {
                    self.plugins[i].vms[worker] = vm;
                }
            }
            let vm = &mut self.plugins[i].vms[worker];
            if vm.failed {
                slots.push(Slot {
                    plugin: i,
                    context: 0,
                    active: false,
                });
                continue;
            }
            let host = vm.host_mut();
            let context = host.new_context_id();
            let root = host.root_context;
            host.contexts.insert(
                context,
                ContextKind::Stream(Box::new(StreamContext {
                    exchange: exchange.clone(),
                    access: StreamAccess::NONE,
                    request_body: Vec::new(),
                    response_body: Vec::new(),
                    request_end_of_stream: false,
                    response_end_of_stream: false,
                })),
            );
            let ok = vm
                .call(
                    |c| c.context_create.as_ref(),
                    context,
                    (context as i32, root as i32),
                )
                .is_ok();
            self.harvest(i, worker);
            slots.push(Slot {
                plugin: i,
                context,
                active: ok,
            });
        }
        Stream {
            worker,
            exchange,
            slots,
        }
    }

    fn stream_ctx(&mut self, i: usize, w: usize, context: u32) -> Option<&mut StreamContext> {
        match self.plugins[i].vms[w].host_mut().contexts.get_mut(&context) {
            Some(ContextKind::Stream(s)) => Some(s),
            _ => None,
        }
    }

    /// A plugin whose VM failed before this stream reached it: FAIL_CLOSE and
    /// FAIL_RELOAD answer 503 `wasm_fail_stream`; FAIL_OPEN skips it.
    fn failed_slot(&self, slot: &Slot) -> Option<Reply> {
        let plugin = &self.plugins[slot.plugin];
        match plugin.spec.fail_strategy {
            FailStrategy::FailOpen => None,
            _ => Some(Reply {
                plugin: plugin.spec.name.clone(),
                status: 503,
                details: "wasm_fail_stream".into(),
                body: Vec::new(),
                headers: Vec::new(),
                grpc_status: None,
            }),
        }
    }

    /// Runs one direction: headers, body chunks, trailers, through the filters
    /// in order (request) or reverse order (response). Returns how it ended and
    /// the body that came out of the last filter.
    fn run_direction(
        &mut self,
        stream: &mut Stream,
        dir: Dir,
        chunks: Vec<Vec<u8>>,
        has_trailers: bool,
    ) -> (Flow, Vec<u8>) {
        let order: Vec<usize> = match dir {
            Dir::Request => (0..stream.slots.len()).collect(),
            Dir::Response => (0..stream.slots.len()).rev().collect(),
        };
        let no_body = chunks.iter().all(Vec::is_empty);
        // Headers.
        let mut paused_in_headers = false;
        for &s in &order {
            let end = no_body && !has_trailers;
            match self.run_stage(stream, s, dir, Stage::Headers, end) {
                StageResult::Next { paused } => paused_in_headers |= paused,
                StageResult::Stop(flow) => return (flow, Vec::new()),
            }
        }
        // Body: while a filter was paused in its headers Envoy buffered the
        // body, and delivers what arrived as one chunk.
        let chunks: Vec<Vec<u8>> = if no_body {
            Vec::new()
        } else if paused_in_headers {
            vec![chunks.concat()]
        } else {
            chunks.into_iter().filter(|c| !c.is_empty()).collect()
        };
        let mut out = Vec::new();
        let last = chunks.len();
        // Past this point the response headers are downstream.
        let late = |flow: Flow| match (dir, flow) {
            (Dir::Response, Flow::LocalReply(reply)) => Flow::LateLocalReply(reply),
            (_, flow) => flow,
        };
        for (k, chunk) in chunks.into_iter().enumerate() {
            let end = k + 1 == last && !has_trailers;
            let mut data = Some(chunk);
            for &s in &order {
                let Some(input) = data.take() else { break };
                match self.run_body(stream, s, dir, input, end) {
                    BodyResult::Passed(bytes) => data = Some(bytes),
                    BodyResult::Held => break,
                    BodyResult::Stop(flow) => return (late(flow), Vec::new()),
                }
            }
            if let Some(bytes) = data {
                out.extend_from_slice(&bytes);
            }
        }
        // Trailers: a filter still holding body data gets it back out now.
        if has_trailers {
            let mut carried = Vec::new();
            for &s in &order {
                let active = stream.slots[s].active;
                if active {
                    self.hold_for_trailers(stream, s, dir, std::mem::take(&mut carried));
                }
                match self.run_stage(stream, s, dir, Stage::Trailers, true) {
                    StageResult::Next { .. } => {}
                    StageResult::Stop(flow) => return (late(flow), Vec::new()),
                }
                if active {
                    carried = self.release_body(stream, s, dir);
                }
            }
            out.extend_from_slice(&carried);
        }
        (Flow::Through, out)
    }

    /// Appends `incoming` to what slot `s` holds, so its trailers callback
    /// can read the whole body.
    fn hold_for_trailers(&mut self, stream: &mut Stream, s: usize, dir: Dir, incoming: Vec<u8>) {
        let (i, w, ctx) = (
            stream.slots[s].plugin,
            stream.worker,
            stream.slots[s].context,
        );
        if let Some(sc) = self.stream_ctx(i, w, ctx) {
            match dir {
                Dir::Request => {
                    sc.request_body.extend_from_slice(&incoming);
                    sc.access.request_body = Access::ReadWrite;
                }
                Dir::Response => {
                    sc.response_body.extend_from_slice(&incoming);
                    sc.access.response_body = Access::ReadWrite;
                }
            }
        }
    }

    /// Takes the body a slot held and closes its access.
    fn release_body(&mut self, stream: &mut Stream, s: usize, dir: Dir) -> Vec<u8> {
        let slot = &stream.slots[s];
        let (i, w, ctx) = (slot.plugin, stream.worker, slot.context);
        match self.stream_ctx(i, w, ctx) {
            Some(sc) => match dir {
                Dir::Request => {
                    sc.access.request_body = Access::None;
                    std::mem::take(&mut sc.request_body)
                }
                Dir::Response => {
                    sc.access.response_body = Access::None;
                    std::mem::take(&mut sc.response_body)
                }
            },
            None => Vec::new(),
        }
    }

    fn set_access(&mut self, stream: &Stream, s: usize, dir: Dir, stage: Stage, access: Access) {
        let slot = &stream.slots[s];
        let (i, w, ctx) = (slot.plugin, stream.worker, slot.context);
        if let Some(sc) = self.stream_ctx(i, w, ctx) {
            let field = match (dir, stage) {
                (Dir::Request, Stage::Headers) => &mut sc.access.request_headers,
                (Dir::Request, Stage::Trailers) => &mut sc.access.request_trailers,
                (Dir::Response, Stage::Headers) => &mut sc.access.response_headers,
                (Dir::Response, Stage::Trailers) => &mut sc.access.response_trailers,
            };
            *field = access;
        }
    }

    /// Runs a headers or trailers callback of one filter, waiting for it if it pauses.
    fn run_stage(
        &mut self,
        stream: &mut Stream,
        s: usize,
        dir: Dir,
        stage: Stage,
        end: bool,
    ) -> StageResult {
        let slot = &stream.slots[s];
        if !slot.active {
            // Only on the way in: the 503 itself must pass the failed filter on
            // its way out (Envoy skips a failed context's encode callbacks).
            if slot.context == 0 && dir == Dir::Request {
                if let Some(reply) = self.failed_slot(slot) {
                    return StageResult::Stop(Flow::LocalReply(reply));
                }
            }
            return StageResult::Next { paused: false };
        }
        let (i, w, ctx) = (slot.plugin, stream.worker, slot.context);
        let count = {
            let x = stream.exchange.borrow();
            match (dir, stage) {
                (Dir::Request, Stage::Headers) => x.request_headers.len(),
                (Dir::Request, _) => x.request_trailers.len(),
                (Dir::Response, Stage::Headers) => x.response_headers.len(),
                (Dir::Response, _) => x.response_trailers.len(),
            }
        } as i32;
        self.set_access(stream, s, dir, stage, Access::ReadWrite);
        let vm = &mut self.plugins[i].vms[w];
        let result = match (dir, stage) {
            (Dir::Request, Stage::Headers) => vm.call(
                |c| c.request_headers.as_ref(),
                ctx,
                (ctx as i32, count, i32::from(end)),
            ),
            (Dir::Response, Stage::Headers) => vm.call(
                |c| c.response_headers.as_ref(),
                ctx,
                (ctx as i32, count, i32::from(end)),
            ),
            (Dir::Request, _) => vm.call(|c| c.request_trailers.as_ref(), ctx, (ctx as i32, count)),
            (Dir::Response, _) => {
                vm.call(|c| c.response_trailers.as_ref(), ctx, (ctx as i32, count))
            }
        };
        let step = self.settle(stream, s, dir, result);
        self.set_access(stream, s, dir, stage, Access::None);
        match step {
            Settled::Continue { paused } => StageResult::Next { paused },
            Settled::Skip => StageResult::Next { paused: false },
            Settled::Stop(flow) => StageResult::Stop(flow),
        }
    }

    /// Runs a body callback: the filter sees what it held plus the new chunk.
    fn run_body(
        &mut self,
        stream: &mut Stream,
        s: usize,
        dir: Dir,
        input: Vec<u8>,
        end: bool,
    ) -> BodyResult {
        let slot = &stream.slots[s];
        if !slot.active {
            // Only on the way in: the 503 itself must pass the failed filter on
            // its way out (Envoy skips a failed context's encode callbacks).
            if slot.context == 0 && dir == Dir::Request {
                if let Some(reply) = self.failed_slot(slot) {
                    return BodyResult::Stop(Flow::LocalReply(reply));
                }
            }
            return BodyResult::Passed(input);
        }
        let (i, w, ctx) = (slot.plugin, stream.worker, slot.context);
        let size = match self.stream_ctx(i, w, ctx) {
            Some(sc) => {
                let (body, eos, access) = match dir {
                    Dir::Request => (
                        &mut sc.request_body,
                        &mut sc.request_end_of_stream,
                        &mut sc.access.request_body,
                    ),
                    Dir::Response => (
                        &mut sc.response_body,
                        &mut sc.response_end_of_stream,
                        &mut sc.access.response_body,
                    ),
                };
                body.extend_from_slice(&input);
                *eos = end;
                *access = Access::ReadWrite;
                body.len() as i32
            }
            None => return BodyResult::Passed(input),
        };
        let vm = &mut self.plugins[i].vms[w];
        let pick: vm::Pick<(i32, i32, i32), i32> = match dir {
            Dir::Request => |c| c.request_body.as_ref(),
            Dir::Response => |c| c.response_body.as_ref(),
        };
        let result = vm.call(pick, ctx, (ctx as i32, size, i32::from(end)));
        let trapped = result.is_err();
        let paused_now = matches!(result, Ok(Some(r)) if Action::from_raw(r) == Action::Pause);
        if paused_now && !end {
            // Pause on a body chunk buffers: the next call sees all of it.
            if let Some(flow) = self.stream_effects(stream, s) {
                return BodyResult::Stop(flow);
            }
            return BodyResult::Held;
        }
        match self.settle(stream, s, dir, result) {
            Settled::Continue { .. } => BodyResult::Passed(self.release_body(stream, s, dir)),
            Settled::Skip if trapped => {
                // FAIL_OPEN: the data goes on as it was before this filter.
                self.release_body(stream, s, dir);
                BodyResult::Passed(input)
            }
            Settled::Skip => BodyResult::Passed(self.release_body(stream, s, dir)),
            Settled::Stop(flow) => BodyResult::Stop(flow),
        }
    }

    /// Local replies and resets a filter asked for during its callback.
    fn stream_effects(&mut self, stream: &Stream, s: usize) -> Option<Flow> {
        let slot = &stream.slots[s];
        let (i, w, ctx) = (slot.plugin, stream.worker, slot.context);
        self.harvest(i, w);
        let mut flow = None;
        let effects = std::mem::take(&mut self.effects);
        for (ei, ew, effect) in effects {
            let mine = ei == i && ew == w;
            match effect {
                Effect::LocalReply {
                    context,
                    status,
                    details,
                    body,
                    headers,
                    grpc_status,
                } if mine && context == ctx => {
                    if flow.is_none() {
                        flow = Some(Flow::LocalReply(Reply {
                            plugin: self.plugins[i].spec.name.clone(),
                            status,
                            details,
                            body,
                            headers,
                            grpc_status,
                        }));
                    }
                }
                Effect::Close { context, .. } if mine && context == ctx => {
                    flow.get_or_insert(Flow::Reset);
                }
                other => self.effects.push((ei, ew, other)),
            }
        }
        flow
    }

    /// After a callback: handle a trap by the fail strategy, a local reply or
    /// reset, and a Pause by waiting (answering calls) until the filter resumes.
    fn settle(
        &mut self,
        stream: &mut Stream,
        s: usize,
        dir: Dir,
        result: Result<Option<i32>, Trap>,
    ) -> Settled {
        let (i, w, ctx) = (
            stream.slots[s].plugin,
            stream.worker,
            stream.slots[s].context,
        );
        let action = match result {
            Err(_) => {
                self.harvest(i, w);
                self.effects.retain(|(ei, ew, _)| !(*ei == i && *ew == w));
                stream.slots[s].active = false;
                return match self.plugins[i].spec.fail_strategy {
                    FailStrategy::FailOpen => Settled::Skip,
                    _ => Settled::Stop(Flow::LocalReply(Reply {
                        plugin: self.plugins[i].spec.name.clone(),
                        status: 503,
                        details: "wasm_fail_stream".into(),
                        body: Vec::new(),
                        headers: Vec::new(),
                        grpc_status: None,
                    })),
                };
            }
            Ok(None) => Action::Continue,
            Ok(Some(r)) => Action::from_raw(r),
        };
        // A local reply forces the callback to Stop, whatever it returned.
        if let Some(flow) = self.stream_effects(stream, s) {
            return Settled::Stop(flow);
        }
        if action == Action::Continue {
            self.effects.retain(|(ei, ew, e)| {
                !(*ei == i
                    && *ew == w
                    && matches!(e, Effect::Continue { context, .. } if *context == ctx))
            });
            return Settled::Continue { paused: false };
        }
        let wanted = match dir {
            Dir::Request => StreamType::HttpRequest,
            Dir::Response => StreamType::HttpResponse,
        };
        loop {
            let resumed = self.effects.iter().position(|(ei, ew, e)| {
                *ei == i && *ew == w && matches!(e, Effect::Continue { context, stream } if *context == ctx && *stream == wanted)
            });
            if let Some(p) = resumed {
                self.effects.remove(p);
                return Settled::Continue { paused: true };
            }
            if !self.pump_one() {
                return Settled::Stop(Flow::Stalled);
            }
            if let Some(flow) = self.stream_effects(stream, s) {
                return Settled::Stop(flow);
            }
            if self.plugins[i].vms[w].failed {
                return self.settle(stream, s, dir, Err(Trap));
            }
        }
    }

    /// The response path for an upstream answer or a local reply. A local reply
    /// sent from a response callback replaces the response once.
    fn respond(
        &mut self,
        stream: &mut Stream,
        answer: Response,
        local: Option<LocalReply>,
    ) -> (Response, Option<LocalReply>) {
        {
            let mut x = stream.exchange.borrow_mut();
            let mut headers = vec![(":status".to_string(), answer.status.to_string())];
            headers.extend(answer.headers.iter().cloned());
            x.response_headers = headers;
            x.response_trailers = answer.trailers.clone();
            x.response_body_size = answer.body.len() as u64;
        }
        let chunks = if answer.body.is_empty() {
            Vec::new()
        } else {
            vec![answer.body.clone()]
        };
        let (flow, body) =
            self.run_direction(stream, Dir::Response, chunks, !answer.trailers.is_empty());
        match flow {
            Flow::Through => {
                let x = stream.exchange.borrow();
                let status = find_header(&x.response_headers, ":status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(answer.status);
                let response = Response {
                    status,
                    headers: x
                        .response_headers
                        .iter()
                        .filter(|(k, _)| !k.starts_with(':'))
                        .cloned()
                        .collect(),
                    body,
                    trailers: x.response_trailers.clone(),
                };
                (response, local)
            }
            Flow::LocalReply(reply) if local.is_none() => self.local_reply(stream, reply),
            Flow::LateLocalReply(reply) => {
                stream.exchange.borrow_mut().response_code_details = reply.details.clone();
                let late = LocalReply {
                    plugin: reply.plugin,
                    details: reply.details,
                };
                (Response::new(0), local.or(Some(late)))
            }
            Flow::LocalReply(_) | Flow::Stalled | Flow::Reset => (Response::new(0), local),
        }
    }

    /// Envoy's local reply: `:status`, `content-length`, `content-type: text/plain`
    /// for a body, then the plugin's headers (replacing), and the response
    /// callbacks of every filter run for it.
    fn local_reply(&mut self, stream: &mut Stream, reply: Reply) -> (Response, Option<LocalReply>) {
        stream.exchange.borrow_mut().response_code_details = reply.details.clone();
        let mut headers: Headers = vec![("content-length".into(), reply.body.len().to_string())];
        if !reply.body.is_empty() {
            headers.push(("content-type".into(), "text/plain".into()));
        }
        let set = |headers: &mut Headers, k: String, v: String| {
            headers.retain(|(name, _)| *name != k);
            headers.push((k, v));
        };
        for (k, v) in reply.headers {
            set(&mut headers, k.to_ascii_lowercase(), v);
        }
        let is_grpc = is_grpc_content_type(
            find_header(&stream.exchange.borrow().request_headers, "content-type").unwrap_or(""),
        );
        let answer = if is_grpc {
            // Envoy answers a gRPC request's local reply the gRPC way: HTTP 200,
            // trailers-only, the status in `grpc-status` and the body, percent-
            // encoded, in `grpc-message` (Http::Utility::sendLocalReply).
            let status = reply
                .grpc_status
                .unwrap_or_else(|| http_to_grpc_status(reply.status));
            set(
                &mut headers,
                "content-type".into(),
                "application/grpc".into(),
            );
            if find_header(&headers, "grpc-status").is_none() {
                headers.push(("grpc-status".into(), status.to_string()));
            }
            let message = reply.body.strip_suffix(b"\n").unwrap_or(&reply.body);
            if !message.is_empty() {
                set(
                    &mut headers,
                    "grpc-message".into(),
                    grpc_percent_encode(message),
                );
            }
            headers.retain(|(k, _)| k != "content-length");
            Response {
                status: 200,
                headers,
                body: Vec::new(),
                trailers: Vec::new(),
            }
        } else {
            Response {
                status: reply.status as u16,
                headers,
                body: reply.body,
                trailers: Vec::new(),
            }
        };
        let local = LocalReply {
            plugin: reply.plugin,
            details: reply.details,
        };
        self.respond(stream, answer, Some(local))
    }

    /// Stream end: `proxy_on_log` for every filter (maps readable again), then
    /// `proxy_on_done` and `proxy_on_delete`.
    fn close_stream(&mut self, stream: &mut Stream) {
        let w = stream.worker;
        for s in 0..stream.slots.len() {
            let (i, ctx) = (stream.slots[s].plugin, stream.slots[s].context);
            if ctx == 0 || self.plugins[i].vms[w].failed {
                continue;
            }
            if let Some(sc) = self.stream_ctx(i, w, ctx) {
                sc.access = StreamAccess {
                    request_headers: Access::Read,
                    request_body: Access::None,
                    request_trailers: Access::Read,
                    response_headers: Access::Read,
                    response_body: Access::None,
                    response_trailers: Access::Read,
                };
            }
            let vm = &mut self.plugins[i].vms[w];
            let _ = vm.call(|c| c.log.as_ref(), ctx, ctx as i32);
            self.harvest(i, w);
        }
        for s in 0..stream.slots.len() {
            let (i, ctx) = (stream.slots[s].plugin, stream.slots[s].context);
            if ctx == 0 {
                continue;
            }
            let vm = &mut self.plugins[i].vms[w];
            if vm.failed {
                vm.host_mut().contexts.remove(&ctx);
                continue;
            }
            if let Some(sc) = match vm.host_mut().contexts.get_mut(&ctx) {
                Some(ContextKind::Stream(sc)) => Some(sc),
                _ => None,
            } {
                sc.access = StreamAccess::NONE;
            }
            let done = vm.call(|c| c.done.as_ref(), ctx, ctx as i32);
            if matches!(done, Ok(Some(0))) {
                vm.host_mut().awaiting_done.push(ctx);
                self.harvest(i, w);
                continue;
            }
            let _ = vm.call(|c| c.delete.as_ref(), ctx, ctx as i32);
            vm.host_mut().contexts.remove(&ctx);
            self.harvest(i, w);
        }
        // Effects of this stream's contexts are moot now.
        self.effects.retain(|(_, ew, e)| {
            *ew != w
                || !matches!(
                    e,
                    Effect::Continue { .. } | Effect::LocalReply { .. } | Effect::Close { .. }
                )
        });
    }
}

enum StageResult {
    Next { paused: bool },
    Stop(Flow),
}

enum BodyResult {
    Passed(Vec<u8>),
    Held,
    Stop(Flow),
}

enum Settled {
    Continue {
        paused: bool,
    },
    /// The plugin trapped and FAIL_OPEN skips it.
    Skip,
    Stop(Flow),
}

/// RFC 3986 §5.2.4 dot-segment removal on the path (the query is kept), as
/// Envoy's `normalize_path` does; `%2e` counts as a dot, as in Envoy's
/// URL canonicalizer.
fn normalize_path(raw: &str) -> String {
    let (path, query) = match raw.find('?') {
        Some(i) => (&raw[..i], &raw[i..]),
        None => (raw, ""),
    };
    let is_dot = |seg: &str| seg == "." || seg.eq_ignore_ascii_case("%2e");
    let is_dotdot = |seg: &str| {
        let lower = seg.to_ascii_lowercase();
        matches!(lower.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        if is_dot(seg) {
            if i == last {
                out.push("");
            }
        } else if is_dotdot(seg) {
            out.pop();
            if i == last {
                out.push("");
            }
        } else {
            out.push(seg);
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// A random (version 4) UUID, as Envoy generates for `x-request-id`.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 15)] as char);
    }
    out
}

/// Envoy's test for a gRPC request (`Grpc::Common::hasGrpcContentType`):
/// `application/grpc`, alone or followed by `+codec` or `;params`. gRPC-Web
/// is not gRPC here.
fn is_grpc_content_type(content_type: &str) -> bool {
    content_type
        .strip_prefix("application/grpc")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`, for a local reply without a
/// gRPC status of its own.
fn http_to_grpc_status(http: u32) -> u32 {
    match http {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// Envoy's percent-encoding of `grpc-message` (`PercentEncoding::encode`):
/// bytes below space, from `~` up, and `%` become `%XX`.
fn grpc_percent_encode(message: &[u8]) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message {
        if (b' '..b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{grpc_percent_encode, http_to_grpc_status, is_grpc_content_type, normalize_path};

    #[test]
    fn dot_segments_are_resolved_like_envoys_normalize_path() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/healthz/../accounts/1", "/accounts/1"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../x", "/x"),
            ("/a/%2e%2E/b?q=/../", "/b?q=/../"),
            ("/", "/"),
            ("/a//b", "/a//b"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn grpc_local_replies_are_recognised_and_encoded_like_envoys() {
        for (content_type, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpcx", false),
            ("application/json", false),
        ] {
            assert_eq!(is_grpc_content_type(content_type), grpc, "{content_type}");
        }
        assert_eq!(
            [400, 401, 403, 404, 429, 503, 500].map(http_to_grpc_status),
            [13, 16, 7, 12, 14, 14, 2]
        );
        assert_eq!(
            grpc_percent_encode(b"{\"e\": \"100%\"}\n\xc3\xa9~"),
            "{\"e\": \"100%25\"}%0A%C3%A9%7E"
        );
    }
}
