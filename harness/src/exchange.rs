//! What a test sends and what it reads back: requests, responses, outcomes,
//! and the calls a plugin makes to other clusters.

use crate::abi::LogLevel;
use std::time::Duration;

/// Header pairs in order; names are lower-case as Envoy stores them.
pub type Headers = Vec<(String, String)>;

/// Finds the first value of a header, case-insensitively.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The client side of one HTTP request, and the connection it arrives on.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// `:path`; empty sends none (a CONNECT request).
    pub path: String,
    pub authority: String,
    pub scheme: String,
    /// The HTTP version Envoy's codec reports (`request.protocol`): `HTTP/1.1` unless set.
    pub protocol: String,
    pub headers: Headers,
    pub body_chunks: Vec<Vec<u8>>,
    pub trailers: Headers,
    pub connection: Connection,
    /// The worker (VM index) that handles the request.
    pub worker: usize,
}

/// The downstream connection a request arrives on.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// `connection.id`; `None` gives each request a connection of its own.
    pub id: Option<u64>,
    pub source: String,
    pub destination: String,
    /// PEM of the client certificate for an mTLS connection; `None` is plaintext.
    pub peer_certificate_pem: Option<String>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            authority: "service.local".to_string(),
            scheme: "https".to_string(),
            protocol: "HTTP/1.1".to_string(),
            headers: Vec::new(),
            body_chunks: Vec::new(),
            trailers: Vec::new(),
            connection: Connection {
                id: None,
                source: "10.0.0.1:40000".to_string(),
                destination: "10.0.0.2:8080".to_string(),
                peer_certificate_pem: None,
            },
            worker: 0,
        }
    }

    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    /// The framing an HTTP/1.1 client writes and Envoy hands to the filters: a
    /// `content-length` for a body, and for an empty POST/PUT/PATCH. Not when the
    /// request frames itself already, nor with trailers (chunked coding, which
    /// Envoy decodes and drops). The WAF's CRS checks for it (920180).
    pub fn http1_framing(self) -> Self {
        let framed = self.headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        });
        let len: usize = self.body_chunks.iter().map(Vec::len).sum();
        let wants = len > 0 || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if framed || !self.trailers.is_empty() || !wants {
            return self;
        }
        self.header("content-length", &len.to_string())
    }

    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Request::new("POST", path).body(body)
    }

    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_string();
        self
    }

    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_string();
        self
    }

    /// `request.protocol`, e.g. `HTTP/1.0` (Envoy reports `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`).
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = protocol.to_string();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The whole body in one chunk.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body_chunks = vec![body.into()];
        self
    }

    /// The body as it arrives from the network, chunk by chunk.
    pub fn body_chunks(mut self, chunks: Vec<Vec<u8>>) -> Self {
        self.body_chunks = chunks;
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// An mTLS connection whose client presented this certificate (PEM).
    pub fn peer_certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.connection.peer_certificate_pem = Some(pem.into());
        self
    }

    pub fn connection_id(mut self, id: u64) -> Self {
        self.connection.id = Some(id);
        self
    }

    /// `source.address`, `ip:port`.
    pub fn source(mut self, address: &str) -> Self {
        self.connection.source = address.to_string();
        self
    }

    /// `destination.address`, `ip:port`.
    pub fn destination(mut self, address: &str) -> Self {
        self.connection.destination = address.to_string();
        self
    }

    pub fn worker(mut self, worker: usize) -> Self {
        self.worker = worker;
        self
    }

    pub(crate) fn body_len(&self) -> usize {
        self.body_chunks.iter().map(Vec::len).sum()
    }
}

/// What reached the upstream service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub method: String,
    pub path: String,
    /// Every header, pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`) included.
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl Upstream {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response: from the upstream, or a local reply, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of a header (the `header` builder adds one).
    pub fn get(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A local reply: which plugin sent it, and its response-code details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub plugin: String,
    pub details: String,
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub plugin: String,
    pub worker: usize,
    pub level: LogLevel,
    pub message: String,
}

/// Everything a test can observe about one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What reached the upstream; `None` when a filter answered or the stream stalled.
    pub upstream: Option<Upstream>,
    /// What the client got. A reset stream has status 0.
    pub response: Response,
    /// Set when a plugin (or the host on its behalf) sent a local reply.
    pub local_reply: Option<LocalReply>,
    /// The stream was reset (`proxy_close_stream`) or never completed.
    pub reset: bool,
    /// Log lines emitted while this request was handled.
    pub logs: Vec<LogLine>,
    /// The stream's filter state at its end (`meshward.tenant`, …), by key.
    pub filter_state: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Outcome {
    pub fn status(&self) -> u16 {
        self.response.status
    }

    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream.as_ref().and_then(|u| u.header(name))
    }

    /// A filter-state value as UTF-8 text, e.g. `filter_state_text("meshward.tenant")`.
    pub fn filter_state_text(&self, key: &str) -> Option<String> {
        self.filter_state
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Name of the plugin that answered locally, if any.
    pub fn replied_by(&self) -> Option<&str> {
        self.local_reply.as_ref().map(|l| l.plugin.as_str())
    }
}

/// An HTTP call a plugin made with `proxy_http_call`.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub plugin: String,
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub timeout: Duration,
}

impl CallRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// How a programmed cluster answers an HTTP call.
#[derive(Debug, Clone)]
pub enum CallReply {
    Response {
        headers: Headers,
        body: Vec<u8>,
        trailers: Headers,
    },
    /// Connection failure: the plugin sees a response with no headers.
    Failure,
    /// No answer: the plugin sees a failure once the call's timeout elapses.
    Timeout,
}

impl CallReply {
    /// A response with `:status` and the given headers and body.
    pub fn response(status: u16, headers: Headers, body: impl Into<Vec<u8>>) -> Self {
        let mut all = vec![(":status".to_string(), status.to_string())];
        all.extend(headers);
        CallReply::Response {
            headers: all,
            body: body.into(),
            trailers: Vec::new(),
        }
    }
}

/// A gRPC call a plugin made with `proxy_grpc_call` (or a message on a stream).
#[derive(Debug, Clone)]
pub struct GrpcCallRequest {
    pub plugin: String,
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub initial_metadata: Headers,
    pub message: Vec<u8>,
    pub timeout: Duration,
}

/// How a programmed cluster answers a gRPC call.
#[derive(Debug, Clone)]
pub enum GrpcReply {
    /// A successful reply with this (protobuf-encoded) message.
    Message(Vec<u8>),
    /// The call failed with this gRPC status code and message.
    Status(u32, String),
    /// No answer: DEADLINE_EXCEEDED once the call's timeout elapses.
    Timeout,
}
