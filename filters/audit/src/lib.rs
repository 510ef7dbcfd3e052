//! meshward `audit` filter: strips forged audit headers, adds signed audit
//! headers for the upstream service, and writes one chained, signed audit
//! record per request (Envoy's log and, optionally, OTLP/HTTP export).
//!
//! This file is the proxy-wasm shell only: it reads headers and properties,
//! calls the plain modules below, and applies what they return. Formats and
//! verification live in `meshward_shared::audit`.

pub mod config;
pub mod export;
pub mod otlp;
pub mod record;
pub mod redact;
pub mod stamp;

use config::Settings;
use export::{ExportQueue, Push, Queued, Reply};
use meshward_shared::audit::{sign_header, LOG_PREFIX};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use record::{Chain, Observed};
use stamp::{Facts, RequestLine};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

const FILTER: &str = "audit";
const REQUEST_ID: &str = "x-request-id";

// Only the .wasm exports `_initialize`: natively, several filter crates link
// into the `meshward` command (which validates their configs).
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// The filter's root context (one per plugin per worker VM).
pub fn root_context(_context_id: u32) -> Box<dyn RootContext> {
    Box::new(Root::new())
}

/// Metric ids; 0 (never a valid id) when definition failed, which makes the
/// updates no-ops instead of traps.
#[derive(Default, Clone, Copy)]
struct Metrics {
    records: u32,
    headers_signed: u32,
    forged_headers_removed: u32,
    request_ids_generated: u32,
    export_records_sent: u32,
    export_failed: u32,
    export_dropped: u32,
    export_queue_depth: u32,
    config_reloads: u32,
    config_errors: u32,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name).unwrap_or(0);
        Metrics {
            records: counter("meshward_audit.records"),
            headers_signed: counter("meshward_audit.headers_signed"),
            forged_headers_removed: counter("meshward_audit.forged_headers_removed"),
            request_ids_generated: counter("meshward_audit.request_ids_generated"),
            export_records_sent: counter("meshward_audit.export_records_sent"),
            export_failed: counter("meshward_audit.export_failed"),
            export_dropped: counter("meshward_audit.export_dropped"),
            export_queue_depth: gauge("meshward_audit.export_queue_depth"),
            config_reloads: counter("meshward_audit.config_reloads"),
            config_errors: counter("meshward_audit.config_errors"),
        }
    }
}

fn add(metric: u32, n: usize) {
    if metric != 0 && n > 0 {
        let _ = hostcalls::increment_metric(metric, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Moves this VM's share of a process-wide gauge from `*reported` to `value`.
/// A gauge is one stat per name for all of Envoy's VMs, so each VM adds its
/// change instead of setting its own value over the others'.
fn report_gauge(metric: u32, value: usize, reported: &mut usize) {
    if metric != 0 && value != *reported {
        let delta =
            i64::try_from(value).unwrap_or(i64::MAX) - i64::try_from(*reported).unwrap_or(i64::MAX);
        if hostcalls::increment_metric(metric, delta).is_ok() {
            *reported = value;
        }
    }
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

fn property_string(path: &[&str]) -> Option<String> {
    property(path)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

fn property_int(path: &[&str]) -> Option<u64> {
    let bytes: [u8; 8] = property(path)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Per-VM state shared by the root context and its streams (one thread).
struct Shared {
    settings: Option<Rc<Settings>>,
    chain: Chain,
    export: Option<ExportQueue>,
    metrics: Metrics,
    /// Fallback for ids when WASI randomness fails.
    counter: u64,
    /// Records dropped from export by this VM (for log rate limiting).
    dropped_since_log: u64,
    /// Where each record line is written (reused: one allocation per VM, not
    /// several per record).
    record_buf: Vec<u8>,
    /// The export-queue depth this VM last added to the process-wide gauge.
    reported_depth: usize,
}

/// A record buffer grown beyond this by an unusually large record is let go
/// rather than kept for the life of the VM.
const RECORD_BUF_KEEP: usize = 64 * 1024;

impl Shared {
    fn random_id(&mut self) -> Option<[u8; 16]> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).ok()?;
        Some(bytes)
    }

    /// A fresh request id: a v4 UUID, or — if WASI randomness fails — the
    /// stream id and a counter, still unique within this proxy.
    fn new_request_id(&mut self) -> String {
        self.counter += 1;
        match self.random_id() {
            Some(bytes) => stamp::uuid_v4(bytes),
            None => format!("{}-{}", self.chain.stream(), self.counter),
        }
    }

    fn flush(&mut self) {
        let now = now_ms();
        let stream = self.chain.stream().to_string();
        let metrics = self.metrics;
        let Some(queue) = self.export.as_mut() else {
            return;
        };
        if queue.expire(now) {
            add(metrics.export_failed, 1);
            log(
                LogLevel::Warn,
                "meshward-audit: export call got no reply in time; will retry",
            );
        }
        let Some(batch) = queue.next_batch(now, &stream) else {
            return;
        };
        let s = queue.settings();
        let headers = vec![
            (":method", "POST"),
            (":path", s.path.as_str()),
            (":authority", s.authority.as_str()),
            ("content-type", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            &s.cluster,
            headers,
            Some(&batch.body),
            vec![],
            s.timeout,
        ) {
            Ok(token) => queue.dispatched(token, batch.count, now),
            Err(status) => {
                let cluster = s.cluster.clone();
                queue.dispatch_failed(now);
                add(metrics.export_failed, 1);
                log(
                    LogLevel::Warn,
                    &format!(
                        "meshward-audit: export to cluster {cluster:?} could not be sent ({status:?}); will retry"
                    ),
                );
            }
        }
    }
}

struct Root {
    shared: Rc<RefCell<Shared>>,
}

impl Root {
    fn new() -> Self {
        let mut shared = Shared {
            settings: None,
            chain: Chain::new(String::new()),
            export: None,
            metrics: Metrics::default(),
            counter: 0,
            dropped_since_log: 0,
            record_buf: Vec::new(),
            reported_depth: 0,
        };
        let stream = match shared.random_id() {
            Some(bytes) => meshward_shared::audit::hex_encode(&bytes),
            // Without randomness, time still separates this VM's chain from
            // the chains of VMs started earlier.
            None => format!("t{}", now_ms()),
        };
        shared.chain = Chain::new(stream);
        Root {
            shared: Rc::new(RefCell::new(shared)),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, _: usize, _: usize) {
        let mut shared = self.shared.borrow_mut();
        let metrics = shared.metrics;
        let Some(queue) = shared.export.as_mut() else {
            return;
        };
        // A failed call (connection failure, timeout) arrives with no headers.
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u16>().ok())
        };
        let cluster = queue.settings().cluster.clone();
        match queue.on_reply(token, status, now_ms()) {
            Reply::Delivered(n) => add(metrics.export_records_sent, n),
            Reply::Retry => {
                add(metrics.export_failed, 1);
                let what = status.map_or("failed or timed out".to_string(), |s| {
                    format!("answered {s}")
                });
                log(
                    LogLevel::Warn,
                    &format!("meshward-audit: export to cluster {cluster:?} {what}; will retry"),
                );
            }
            Reply::Rejected(n) => {
                add(metrics.export_failed, 1);
                add(metrics.export_dropped, n);
                log(
                    LogLevel::Error,
                    &format!(
                        "meshward-audit: collector {cluster:?} refused a batch with status {}; {n} record(s) dropped",
                        status.unwrap_or(0)
                    ),
                );
            }
            Reply::Unknown => {}
        }
        let depth = queue.len();
        report_gauge(
            metrics.export_queue_depth,
            depth,
            &mut shared.reported_depth,
        );
        shared.flush();
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        self.shared.borrow_mut().metrics = Metrics::define();
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut shared = self.shared.borrow_mut();
        let metrics = shared.metrics;
        let settings = match config::load(&bytes, |var| std::env::var(var).ok()) {
            Ok(s) => s,
            Err(err) => {
                add(metrics.config_errors, 1);
                log(LogLevel::Error, &err.log_line(FILTER));
                return false;
            }
        };
        let tick = match (&settings.export, shared.export.take()) {
            (None, old) => {
                if let Some(old) = old.filter(|q| !q.is_empty()) {
                    add(metrics.export_dropped, old.len());
                    log(
                        LogLevel::Warn,
                        &format!(
                            "meshward-audit: export turned off; {} queued record(s) dropped",
                            old.len()
                        ),
                    );
                }
                Duration::ZERO
            }
            (Some(e), Some(mut queue)) => {
                add(metrics.export_dropped, queue.reconfigure(e.clone()));
                shared.export = Some(queue);
                e.flush_interval
            }
            (Some(e), None) => {
                shared.export = Some(ExportQueue::new(e.clone()));
                e.flush_interval
            }
        };
        let _ = hostcalls::set_tick_period(tick);
        shared.settings = Some(Rc::new(settings));
        add(metrics.config_reloads, 1);
        true
    }

    fn on_tick(&mut self) {
        let mut shared = self.shared.borrow_mut();
        shared.flush();
        if let Some(depth) = shared.export.as_ref().map(ExportQueue::len) {
            let gauge = shared.metrics.export_queue_depth;
            report_gauge(gauge, depth, &mut shared.reported_depth);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let settings = self.shared.borrow().settings.clone();
        Some(Box::new(Stream {
            shared: self.shared.clone(),
            settings,
            request_id: None,
            start_ms: None,
            line: None,
            facts: None,
            request_headers: None,
            request_bytes: 0,
            response_bytes: 0,
        }))
    }
}

struct Stream {
    shared: Rc<RefCell<Shared>>,
    /// The settings this stream started with (a reconfiguration mid-stream
    /// does not change them).
    settings: Option<Rc<Settings>>,
    request_id: Option<String>,
    start_ms: Option<u64>,
    line: Option<RequestLine>,
    facts: Option<Facts>,
    /// The request headers as they arrived (kept for the record: reading
    /// them again in `on_log` would cost a host call and a copy).
    request_headers: Option<Vec<(String, Vec<u8>)>>,
    request_bytes: u64,
    response_bytes: u64,
}

impl Stream {
    fn read_facts() -> Facts {
        Facts::read(|key| property(&[key]))
    }

    /// The request id; when `on_http_request_headers` did not run (an
    /// earlier filter replied locally): Envoy's, or a fresh one.
    fn request_id(&mut self) -> &str {
        if self.request_id.is_none() {
            let id = property_string(&["request", "id"])
                .filter(|id| stamp::valid_request_id(id.as_bytes()))
                .unwrap_or_else(|| {
                    let mut shared = self.shared.borrow_mut();
                    add(shared.metrics.request_ids_generated, 1);
                    shared.new_request_id()
                });
            self.request_id = Some(id);
        }
        self.request_id.as_deref().unwrap_or_default()
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let Some(settings) = self.settings.clone() else {
            return Action::Continue;
        };
        let now = now_ms();
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let mut shared = self.shared.borrow_mut();
        let metrics = shared.metrics;

        // 1. Nothing in the namespace survives from the client.
        let forged = stamp::forged_header_names(&headers, &settings.header_prefix);
        for name in &forged {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
        if !forged.is_empty() {
            add(metrics.forged_headers_removed, forged.len());
            log(
                LogLevel::Info,
                &format!(
                    "meshward-audit: removed {} forged header(s) in {}*: {}",
                    forged.len(),
                    settings.header_prefix,
                    forged.join(", ")
                ),
            );
        }

        // 2. Request id: Envoy's, or a new one.
        let request_id = match header(&headers, REQUEST_ID) {
            Some(v) if stamp::valid_request_id(v) => String::from_utf8_lossy(v).into_owned(),
            _ => {
                let id = shared.new_request_id();
                let _ = hostcalls::set_map_value_bytes(
                    MapType::HttpRequestHeaders,
                    REQUEST_ID,
                    Some(id.as_bytes()),
                );
                add(metrics.request_ids_generated, 1);
                id
            }
        };
        drop(shared);

        // 3. The signed audit headers.
        let line = RequestLine::from_headers(&headers);
        let facts = Self::read_facts();
        let value = stamp::claims_ref(&request_id, now, &line, &facts).encode();
        let _ = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            &settings.audit_header,
            Some(value.as_bytes()),
        );
        if let Some(key) = &settings.signing_key {
            let signature = sign_header(&value, key);
            let _ = hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                &settings.signature_header,
                Some(signature.as_bytes()),
            );
            add(metrics.headers_signed, 1);
        }

        self.request_id = Some(request_id);
        self.start_ms = Some(now);
        self.line = Some(line);
        self.facts = Some(facts);
        if settings.record_request_headers {
            self.request_headers = Some(headers);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _: bool) -> Action {
        self.request_bytes = self.request_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if self.settings.is_some() {
            let id = self.request_id();
            let _ = hostcalls::set_map_value_bytes(
                MapType::HttpResponseHeaders,
                REQUEST_ID,
                Some(id.as_bytes()),
            );
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _: bool) -> Action {
        self.response_bytes = self.response_bytes.saturating_add(body_size as u64);
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        let end_ms = now_ms();
        // In `on_log` the request headers are readable again (ARCHITECTURE §4);
        // they are read only when `on_http_request_headers` did not run.
        let request_headers = match self.request_headers.take() {
            Some(headers) => headers,
            None if self.line.is_none() || settings.record_request_headers => {
                hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let response_headers =
            hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        self.request_id();
        let request_id = self.request_id.take().unwrap_or_default();
        let line = self
            .line
            .take()
            .unwrap_or_else(|| RequestLine::from_headers(&request_headers));
        let facts = self.facts.take().unwrap_or_else(Self::read_facts);
        let start_ms = self.start_ms.unwrap_or_else(|| {
            // Envoy's request.time is a timestamp in nanoseconds.
            property_int(&["request", "time"]).map_or(end_ms, |ns| ns / 1_000_000)
        });
        let status = header(&response_headers, ":status")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .or_else(|| property_int(&["response", "code"]).and_then(|c| u16::try_from(c).ok()))
            .filter(|c| *c != 0);
        let observed = Observed {
            request_id,
            start_ms,
            end_ms,
            line,
            facts,
            request_headers,
            response_headers,
            status,
            details: property_string(&["response", "code_details"]),
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            upstream: property_string(&["upstream", "address"]),
        };
        let body = record::build(&observed, &settings);

        let mut guard = self.shared.borrow_mut();
        let shared = &mut *guard;
        let metrics = shared.metrics;
        let mut buf = std::mem::take(&mut shared.record_buf);
        buf.clear();
        buf.extend_from_slice(LOG_PREFIX.as_bytes());
        let seq = shared
            .chain
            .seal_next(body, settings.signing_key.as_ref(), &mut buf);
        add(metrics.records, 1);
        // A record is JSON of strings: always UTF-8 (so this borrows).
        let log_line = String::from_utf8_lossy(&buf);
        if settings.log_records {
            log(LogLevel::Info, &log_line);
        }
        let mut dropped = false;
        if let Some(queue) = shared.export.as_mut() {
            // The depth gauge is written when batches leave (on each reply)
            // and on every tick, not per request: one host call less.
            dropped = queue.is_full()
                || queue.push(Queued {
                    line: log_line
                        .get(LOG_PREFIX.len()..)
                        .unwrap_or_default()
                        .to_string(),
                    seq,
                    request_id: observed.request_id,
                    time_unix_nanos: start_ms.saturating_mul(1_000_000),
                    observed_unix_nanos: end_ms.saturating_mul(1_000_000),
                }) == Push::Dropped;
        }
        drop(log_line);
        if buf.capacity() <= RECORD_BUF_KEEP {
            shared.record_buf = buf;
        }
        if dropped {
            add(metrics.export_dropped, 1);
            shared.dropped_since_log += 1;
            // First drop, then every 1000th: a full queue must not flood the log.
            if shared.dropped_since_log % 1000 == 1 {
                log(
                    LogLevel::Warn,
                    &format!(
                        "meshward-audit: export queue full; record seq {seq} dropped from export ({} dropped so far, see meshward_audit.export_dropped)",
                        shared.dropped_since_log
                    ),
                );
            }
        }
    }
}
