//! Real-Envoy end-to-end plumbing: an Envoy process tied to the test's lifetime,
//! an upstream that echoes what it received, and an mTLS client that presents an
//! SVID. Everything binds to loopback on ports the OS picks.

pub mod client;
pub mod echo;
pub mod envoy;

pub use client::{HttpResponse, MtlsClient, WireRequest};
pub use echo::{EchoServer, Echoed};
pub use envoy::{envoy_binary, EnvoyProcess, TempDir};
