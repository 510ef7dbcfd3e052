//! A proxy-wasm ABI v0.2.1 host on wasmtime that behaves like Envoy, for
//! testing meshward's filters: load real `.wasm` plugins (or Istio WasmPlugin
//! manifests), drive HTTP requests through them, read what came out.
//!
//! ```no_run
//! use meshward_harness::{PluginSpec, Proxy, Request};
//! let mut proxy = Proxy::builder()
//!     .plugin(PluginSpec::new("tenant", "target/wasm32-wasip1/release/meshward_tenant.wasm"))
//!     .build()?;
//! let outcome = proxy.send(Request::get("/accounts"));
//! assert_eq!(outcome.status(), 200);
//! # Ok::<(), meshward_harness::LoadError>(())
//! ```
//!
//! Each [`Proxy`] owns its VMs (one wasmtime `Store` each) and its process
//! state; nothing is global but the compiled-module cache, so tests run in
//! parallel. Envoy behaviours reproduced are listed in ARCHITECTURE §4; what is
//! not reproduced: network (TCP) filters, foreign functions, and streams that
//! outlive [`Proxy::send`] (a paused stream is resumed by answering its calls).

pub mod abi;
pub mod cert;
pub mod certs;
pub mod envoy_config;
mod exchange;
pub mod ftw;
mod host;
pub mod manifest;
pub mod oci;
mod process;
mod proxy;
pub mod request_file;
pub mod runner;
pub mod validate;
mod vm;

pub use abi::LogLevel;
pub use exchange::{
    find_header, CallReply, CallRequest, Connection, GrpcCallRequest, GrpcReply, Headers,
    LocalReply, LogLine, Outcome, Request, Response, Upstream,
};
pub use manifest::{FailStrategy, Phase, PluginSpec};
pub use process::Node;
pub use proxy::{LoadError, Proxy, ProxyBuilder, DEFAULT_START_NANOS};
