//! Real-Envoy end-to-end plumbing: an Envoy process tied to the test's lifetime,
//! an upstream that echoes what it received, and an mTLS client that presents an
//! SVID; for CRS's regression tests, an albedo upstream, a raw-bytes client and a
//! go-ftw stage runner. Everything binds to loopback on ports the OS picks.

pub mod albedo;
pub mod client;
pub mod echo;
pub mod envoy;
pub mod ftw;
pub mod loopback;
pub mod raw;

pub use albedo::AlbedoServer;
pub use client::{HttpResponse, MtlsClient, WireRequest};
pub use echo::{EchoServer, Echoed};
pub use envoy::{envoy_binary, EnvoyProcess, TempDir};
