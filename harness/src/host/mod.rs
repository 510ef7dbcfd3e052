//! The host side of proxy-wasm ABI v0.2.1: the state one VM's `Store` holds, and
//! the hostcalls, bound per ABI area (one module each) into a wasmtime `Linker`.

mod buffers;
mod calls;
mod context;
mod foreign;
mod headers;
mod log;
pub(crate) mod mem;
mod metrics;
mod properties;
mod shared;
mod time;
mod wasi;

use crate::abi::{LogLevel, MetricType, StreamType};
use crate::exchange::{Headers, LogLine};
use crate::process::Process;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use wasmtime::{Linker, Memory, TypedFunc};

/// Binds every hostcall and the WASI imports into the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    log::add_to_linker(linker)?;
    time::add_to_linker(linker)?;
    context::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    shared::add_to_linker(linker)?;
    calls::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    foreign::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}

/// Links the WASI preview1 functions this host does not serve as stubs that
/// answer ENOSYS, so a module importing them loads and never traps on them.
pub(crate) fn add_wasi_stubs(
    linker: &mut Linker<HostState>,
    module: &wasmtime::Module,
) -> anyhow::Result<()> {
    wasi::add_stubs(linker, module)
}

/// The plugin a VM runs, as the host sees it.
#[derive(Debug)]
pub(crate) struct PluginInfo {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub configuration: Vec<u8>,
    pub vm_configuration: Vec<u8>,
    /// `KEY=VALUE` entries for WASI `environ_get`.
    pub environ: Vec<Vec<u8>>,
}

/// Which VM in the process: `(plugin index, worker index)`.
pub(crate) type VmKey = (usize, usize);

/// Whether a callback may read or change a header map or body buffer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    None,
    Read,
    ReadWrite,
}

/// What each stream context may touch, per map and buffer (ARCHITECTURE §4).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamAccess {
    pub request_headers: Access,
    pub request_body: Access,
    pub request_trailers: Access,
    pub response_headers: Access,
    pub response_body: Access,
    pub response_trailers: Access,
}

impl StreamAccess {
    pub const NONE: StreamAccess = StreamAccess {
        request_headers: Access::None,
        request_body: Access::None,
        request_trailers: Access::None,
        response_headers: Access::None,
        response_body: Access::None,
        response_trailers: Access::None,
    };
}

/// One HTTP stream as the host holds it: shared by every filter of the chain.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    pub request_headers: Headers,
    pub request_trailers: Headers,
    pub response_headers: Headers,
    pub response_trailers: Headers,
    /// Filter state set with `proxy_set_property`, by path.
    pub filter_state: HashMap<String, Vec<u8>>,
    pub connection_id: u64,
    pub source: String,
    pub destination: String,
    /// The mTLS peer's certificate; `None` for a plaintext connection.
    pub peer: Option<Rc<crate::cert::PeerCert>>,
    pub request_time_nanos: u64,
    pub response_code_details: String,
    /// `request.protocol`; empty reads as `HTTP/1.1`.
    pub protocol: String,
    pub request_body_size: u64,
    pub response_body_size: u64,
}

/// A stream context's state in one VM.
#[derive(Debug)]
pub(crate) struct StreamContext {
    pub exchange: Rc<RefCell<Exchange>>,
    pub access: StreamAccess,
    /// The body this filter sees: what it buffered so far (Pause) plus the new chunk.
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    pub request_end_of_stream: bool,
    pub response_end_of_stream: bool,
}

#[derive(Debug)]
pub(crate) enum ContextKind {
    Root,
    Stream(Box<StreamContext>),
}

/// What the plugin asked for during a callback; the proxy acts on it when the
/// callback returns (Envoy defers these the same way).
#[derive(Debug)]
pub(crate) enum Effect {
    LocalReply {
        context: u32,
        status: u32,
        details: String,
        body: Vec<u8>,
        headers: Headers,
        /// The gRPC status a plugin asked for (0–16), for a gRPC request.
        grpc_status: Option<u32>,
    },
    Continue {
        context: u32,
        stream: StreamType,
    },
    /// `proxy_close_stream`: Envoy resets the whole stream, either direction.
    Close {
        context: u32,
    },
    Done {
        context: u32,
    },
}

/// A call (`proxy_http_call`, `proxy_grpc_call`, a gRPC stream message) the
/// proxy has to answer.
#[derive(Debug)]
pub(crate) struct NewCall {
    pub token: u32,
    pub root_context: u32,
    pub kind: NewCallKind,
    pub cluster: String,
    pub timeout: Duration,
}

#[derive(Debug)]
pub(crate) enum NewCallKind {
    Http {
        headers: Headers,
        body: Vec<u8>,
        trailers: Headers,
    },
    Grpc {
        service: String,
        method: String,
        initial_metadata: Headers,
        message: Vec<u8>,
    },
}

/// Data an HTTP or gRPC call's answer makes available while its callback runs.
#[derive(Debug, Default)]
pub(crate) struct CallScope {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub grpc_initial_metadata: Headers,
    pub grpc_trailing_metadata: Headers,
}

/// The state a VM's `Store` holds: the plugin, its contexts, and handles on the
/// process-wide state (shared data, queues, metrics, clock, logs).
pub(crate) struct HostState {
    pub plugin: Rc<PluginInfo>,
    pub vm: VmKey,
    pub process: Rc<RefCell<Process>>,
    pub memory: Option<Memory>,
    pub allocate: Option<TypedFunc<i32, i32>>,
    /// During `_initialize`/`main` only logging and WASI may be used.
    pub starting: bool,
    pub log_level: LogLevel,
    pub effective_context: u32,
    pub root_context: u32,
    next_context_id: u32,
    pub contexts: HashMap<u32, ContextKind>,
    /// Contexts whose `proxy_on_done` returned false, waiting for `proxy_done`.
    pub awaiting_done: Vec<u32>,
    pub tick_period_ms: u32,
    pub next_tick_nanos: u64,
    pub metric_ids: HashMap<u32, (String, MetricType)>,
    pub metric_by_name: HashMap<(String, u32), u32>,
    next_metric_index: u32,
    next_http_token: u32,
    next_grpc_token: u32,
    next_grpc_stream_token: u32,
    /// Open gRPC streams: token → (cluster, service, method, metadata, timeout).
    pub grpc_streams: HashMap<u32, (String, String, String, Headers, Duration)>,
    /// Streams that have had their initial metadata.
    pub grpc_streams_answered: std::collections::HashSet<u32>,
    /// Tokens of calls in flight, for cancel.
    pub calls_in_flight: Vec<u32>,
    pub effects: Vec<Effect>,
    pub new_calls: Vec<NewCall>,
    /// PLUGIN_CONFIGURATION / VM_CONFIGURATION, only during on_configure / on_vm_start.
    pub configuration_buffer: Option<(crate::abi::BufferType, Vec<u8>)>,
    pub call_scope: Option<CallScope>,
    /// What `proxy_get_status` reports during a gRPC callback.
    pub grpc_status: Option<(u32, String)>,
    pub foreign_arguments: Option<Vec<u8>>,
}

impl HostState {
    pub fn new(plugin: Rc<PluginInfo>, vm: VmKey, process: Rc<RefCell<Process>>) -> Self {
        HostState {
            plugin,
            vm,
            process,
            memory: None,
            allocate: None,
            starting: true,
            log_level: LogLevel::Info,
            effective_context: 0,
            root_context: 0,
            next_context_id: 1,
            contexts: HashMap::new(),
            awaiting_done: Vec::new(),
            tick_period_ms: 0,
            next_tick_nanos: 0,
            metric_ids: HashMap::new(),
            metric_by_name: HashMap::new(),
            next_metric_index: 1,
            next_http_token: 0,
            next_grpc_token: 0,
            next_grpc_stream_token: 0,
            grpc_streams: HashMap::new(),
            grpc_streams_answered: Default::default(),
            calls_in_flight: Vec::new(),
            effects: Vec::new(),
            new_calls: Vec::new(),
            configuration_buffer: None,
            call_scope: None,
            grpc_status: None,
            foreign_arguments: None,
        }
    }

    /// Root and stream contexts share one counter per VM, starting at 1.
    pub fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    /// Envoy's http call tokens: 4, 8, 12…
    pub fn new_http_token(&mut self) -> u32 {
        self.next_http_token += 1;
        self.next_http_token * 4
    }

    /// Envoy's gRPC call tokens: 5, 9, 13… (the low 2 bits tell the kind).
    pub fn new_grpc_token(&mut self) -> u32 {
        self.next_grpc_token += 1;
        self.next_grpc_token * 4 + 1
    }

    /// Envoy's gRPC stream tokens: 6, 10, 14…
    pub fn new_grpc_stream_token(&mut self) -> u32 {
        self.next_grpc_stream_token += 1;
        self.next_grpc_stream_token * 4 + 2
    }

    pub fn new_metric_id(&mut self, kind: MetricType) -> u32 {
        let id = (self.next_metric_index << 2) | kind as u32;
        self.next_metric_index += 1;
        id
    }

    /// The stream behind the effective context, if it is a stream context.
    pub fn stream(&self) -> Option<&StreamContext> {
        match self.contexts.get(&self.effective_context) {
            Some(ContextKind::Stream(s)) => Some(s),
            _ => None,
        }
    }

    pub fn stream_mut(&mut self) -> Option<&mut StreamContext> {
        match self.contexts.get_mut(&self.effective_context) {
            Some(ContextKind::Stream(s)) => Some(s),
            _ => None,
        }
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.process.borrow_mut().push_log(LogLine {
            plugin: self.plugin.name.clone(),
            worker: self.vm.1,
            level,
            message,
        });
    }

    pub fn now_nanos(&self) -> u64 {
        self.process.borrow().clock.wall_nanos
    }
}
