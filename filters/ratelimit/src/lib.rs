//! meshward `ratelimit`: quotas per tenant and caller that hold for the whole
//! Envoy process (state in proxy-wasm shared data, GCRA updated with CAS), and
//! optionally for the whole mesh (Envoy's rate limit service over gRPC).
//!
//! The core is plain Rust — [`config`], [`rules`], [`gcra`], [`store`],
//! [`limiter`], [`headers`], [`rls`] — tested natively; this file is the
//! proxy-wasm shell that feeds it request facts and applies its decisions.
//! It does not authenticate anyone: identity comes from the `tenant` filter
//! through filter state (`meshward.tenant`, `meshward.principal`).

pub mod config;
pub mod gcra;
pub mod headers;
pub mod limiter;
pub mod rls;
pub mod rules;
pub mod store;

/// The filter's name in log lines and metric names.
pub const FILTER: &str = "ratelimit";

/// Response-code details of the 429 local reply.
pub const DETAILS_LIMITED: &str = "meshward_ratelimit_limited";
/// Response-code details when the rate limit service failed and
/// `failureModeDeny` is set.
pub const DETAILS_SERVICE_ERROR: &str = "meshward_ratelimit_service_error";

/// A stable name for a configuration: shared-data keys carry it, so state
/// kept under one configuration is never read under another.
pub fn generation(config_bytes: &[u8]) -> String {
    let mut h = rules::KeyHasher::new();
    h.bytes(config_bytes);
    format!("{:016x}", h.finish())
}

/// The JSON body of a local reply.
pub fn reply_body(error: &str, request_id: &str) -> Vec<u8> {
    meshward_shared::local_reply::json_body(error, None, request_id)
}

/// Metric names, one place: Envoy-style dotted names like the other
/// meshward filters (Envoy exposes them as `wasmcustom.<name>`).
pub mod metric_names {
    pub const REQUESTS: &str = "meshward_ratelimit.requests";
    pub const CAS_RETRIES: &str = "meshward_ratelimit.cas_retries";
    pub const CAS_EXHAUSTED: &str = "meshward_ratelimit.cas_exhausted";
    pub const SERVICE_ERRORS: &str = "meshward_ratelimit.service_errors";
    pub const CONFIG_RELOADS: &str = "meshward_ratelimit.config_reloads";

    /// Per rule: `allowed` (the rule admitted the request), `limited` (it
    /// caused a 429), `dry_run_limited` (it would have), `overflow` (its key
    /// found no slot and used the overflow bucket).
    pub fn per_rule(outcome: &str, rule: &str) -> String {
        format!("meshward_ratelimit.rule.{rule}.{outcome}")
    }
}

// ---------------------------------------------------------------------------
// The proxy-wasm shell.
// ---------------------------------------------------------------------------

use config::Config;
use limiter::{Limiter, Outcome};
use meshward_shared::filter_state::{self, Decision, Outcome as DecisionOutcome};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::{Cell, OnceCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use store::{CasMismatch, SharedStore};

// Only the .wasm exports `_initialize`: a native build (unit tests, or a test
// crate linking several filters) must not define it once per filter.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// The filter's root context (one per plugin per worker VM).
pub fn root_context(_context_id: u32) -> Box<dyn RootContext> {
    Box::new(Root {
        runtime: None,
        plugin: String::new(),
    })
}

/// Shared data through the host (`proxy_get_shared_data` / `proxy_set_shared_data`).
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(v), cas)) => Some((v, cas.unwrap_or(0))),
            // A key without bytes (never written by meshward) reads as empty.
            Ok((None, Some(cas))) => Some((Vec::new(), cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        hostcalls::set_shared_data(key, Some(value), Some(cas)).map_err(|_| CasMismatch)
    }
}

/// Metric ids, defined in `on_configure` (per worker VM).
struct Metrics {
    requests: u32,
    cas_retries: u32,
    cas_exhausted: u32,
    service_errors: u32,
    /// Per rule: allowed, limited, dry-run limited, overflow.
    rules: Vec<[u32; 4]>,
}

const ALLOWED: usize = 0;
const LIMITED: usize = 1;
const DRY_RUN_LIMITED: usize = 2;
const OVERFLOW: usize = 3;

fn counter(name: &str) -> u32 {
    hostcalls::define_metric(MetricType::Counter, name).unwrap_or(u32::MAX)
}

fn bump(id: u32) {
    if id != u32::MAX {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    fn define(config: &Config) -> Metrics {
        Metrics {
            requests: counter(metric_names::REQUESTS),
            cas_retries: counter(metric_names::CAS_RETRIES),
            cas_exhausted: counter(metric_names::CAS_EXHAUSTED),
            service_errors: counter(metric_names::SERVICE_ERRORS),
            rules: config
                .rules
                .iter()
                .map(|r| {
                    ["allowed", "limited", "dry_run_limited", "overflow"]
                        .map(|o| counter(&metric_names::per_rule(o, &r.name)))
                })
                .collect(),
        }
    }

    fn rule(&self, rule: usize, which: usize) {
        if let Some(ids) = self.rules.get(rule) {
            bump(ids.get(which).copied().unwrap_or(u32::MAX));
        }
    }
}

/// What every stream of one configuration shares.
struct Runtime {
    limiter: Limiter,
    metrics: Metrics,
    needed_headers: Vec<String>,
    /// `Decision{outcome: allow}`, encoded once.
    allow_bytes: Vec<u8>,
}

struct Root {
    runtime: Option<Rc<Runtime>>,
    plugin: String,
}

impl Context for Root {}

fn property(path: Vec<&str>) -> Option<Vec<u8>> {
    hostcalls::get_property(path).ok().flatten()
}

fn property_string(path: Vec<&str>) -> Option<String> {
    property(path)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(c) => c,
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &e.log_line(FILTER));
                return false;
            }
        };
        if self.plugin.is_empty() {
            self.plugin = property_string(vec!["plugin_name"])
                .or_else(|| property_string(vec!["plugin_root_id"]))
                .unwrap_or_else(|| FILTER.to_string());
        }
        let table = store::SlotTable::new(&self.plugin, &generation(&bytes), config.max_keys);
        let metrics = Metrics::define(&config);
        bump(counter(metric_names::CONFIG_RELOADS));
        let _ = hostcalls::log(
            LogLevel::Info,
            &format!(
                "meshward-{FILTER}: configured {} rules, {} keys, shared data under {}",
                config.rules.len(),
                config.max_keys,
                table.prefix()
            ),
        );
        self.runtime = Some(Rc::new(Runtime {
            needed_headers: config.needed_headers(),
            allow_bytes: Decision::new(DecisionOutcome::Allow).encode(),
            limiter: Limiter::new(config, table),
            metrics,
        }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            runtime: self.runtime.clone(),
            pending: None,
            local_decision: None,
            response_headers: Vec::new(),
            replied: Cell::new(false),
        }))
    }
}

/// A call to the rate limit service in flight.
struct Pending {
    token: u32,
    /// Rule index of each descriptor sent.
    rules: Vec<usize>,
}

struct Stream {
    runtime: Option<Rc<Runtime>>,
    pending: Option<Pending>,
    /// A local dry-run verdict, published once the service admits.
    local_decision: Option<Decision>,
    /// Added to the response of an admitted request.
    response_headers: Vec<(String, String)>,
    /// This filter sent a local reply (its own response callbacks then run
    /// for that reply and must not add headers again).
    replied: Cell<bool>,
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(rt) = self.runtime.clone() else {
            return;
        };
        let Some(pending) = self.pending.take_if(|p| p.token == token_id) else {
            return;
        };
        let body = if status_code == 0 {
            hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        match (
            status_code,
            rls::decode_response(&body, pending.rules.len()),
        ) {
            (0, Ok(answer)) => self.apply_global(&rt, &pending, answer),
            (code, decoded) => {
                let why = match decoded {
                    Err(e) if code == 0 => format!("undecodable response: {e}"),
                    _ => format!("gRPC status {code}"),
                };
                self.service_failed(&rt, &why, true);
            }
        }
    }
}

/// A request header; non-UTF-8 bytes are read lossily (the SDK's
/// `get_http_request_header` would panic on them).
fn request_header(name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Request facts read from the host on first use.
struct LazyFacts<'r> {
    rt: &'r Runtime,
    tenant: OnceCell<Option<String>>,
    principal: OnceCell<Option<String>>,
    method: OnceCell<String>,
    path: OnceCell<String>,
    source_ip: OnceCell<Option<IpAddr>>,
    /// Parallel to `Runtime::needed_headers`.
    headers: Vec<OnceCell<Option<String>>>,
}

impl<'r> LazyFacts<'r> {
    fn new(rt: &'r Runtime) -> Self {
        LazyFacts {
            rt,
            tenant: OnceCell::new(),
            principal: OnceCell::new(),
            method: OnceCell::new(),
            path: OnceCell::new(),
            source_ip: OnceCell::new(),
            headers: rt.needed_headers.iter().map(|_| OnceCell::new()).collect(),
        }
    }
}

impl rules::Facts for LazyFacts<'_> {
    fn tenant(&self) -> Option<&str> {
        self.tenant
            .get_or_init(|| property_string(filter_state::path(filter_state::TENANT)))
            .as_deref()
    }

    fn principal(&self) -> Option<&str> {
        self.principal
            .get_or_init(|| property_string(filter_state::path(filter_state::PRINCIPAL)))
            .as_deref()
    }

    fn method(&self) -> &str {
        self.method
            .get_or_init(|| request_header(":method").unwrap_or_default())
    }

    fn path(&self) -> &str {
        self.path
            .get_or_init(|| request_header(":path").unwrap_or_default())
    }

    fn source_ip(&self) -> Option<IpAddr> {
        *self.source_ip.get_or_init(|| {
            property_string(vec!["source", "address"]).and_then(|a| parse_source(&a))
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        let i = self.rt.needed_headers.iter().position(|n| n == name)?;
        self.headers
            .get(i)?
            .get_or_init(|| request_header(name))
            .as_deref()
    }
}

impl Stream {
    fn request_id(&self) -> String {
        request_header("x-request-id")
            .or_else(|| property_string(vec!["request", "id"]))
            .unwrap_or_default()
    }

    fn publish(&self, decision: Decision) {
        self.publish_bytes(&decision.encode());
    }

    fn publish_bytes(&self, bytes: &[u8]) {
        let _ = hostcalls::set_property(
            filter_state::path(filter_state::RATELIMIT_DECISION),
            Some(bytes),
        );
    }

    /// Sends a local reply with response-code details. The SDK's
    /// `send_http_response` passes no details (Envoy would record its
    /// default), so this calls `proxy_send_local_response` itself.
    fn local_reply(&self, status: u32, details: &str, headers: &[(String, String)], body: &[u8]) {
        self.replied.set(true);
        let _ = meshward_shared::local_reply::send(status, details, headers, body);
    }

    fn reply_limited(&self, headers: Vec<(String, String)>) {
        let mut all = vec![("content-type".to_string(), "application/json".to_string())];
        all.extend(headers);
        let body = reply_body("rate limited", &self.request_id());
        self.local_reply(429, DETAILS_LIMITED, &all, &body);
    }

    fn apply_local(&mut self, rt: &Runtime, outcome: &Outcome) -> Option<Decision> {
        let m = &rt.metrics;
        let rules = &rt.limiter.config.rules;
        if outcome.cas_retries > 0 {
            let _ = hostcalls::increment_metric(m.cas_retries, i64::from(outcome.cas_retries));
        }
        if outcome.cas_exhausted > 0 {
            let _ = hostcalls::increment_metric(m.cas_exhausted, i64::from(outcome.cas_exhausted));
        }
        for (i, r) in outcome.results.iter().enumerate() {
            if r.overflow {
                m.rule(r.rule, OVERFLOW);
            }
            if r.verdict.is_allow() {
                m.rule(r.rule, ALLOWED);
            } else if Some(i) == outcome.limited_by {
                m.rule(r.rule, LIMITED);
            } else if r.dry_run {
                m.rule(r.rule, DRY_RUN_LIMITED);
            }
        }
        let name = |i: usize| rules.get(i).map(|r| r.name.clone()).unwrap_or_default();
        if let Some(by) = outcome.limited() {
            let h = headers::limited(&rt.limiter.config.headers, rules, outcome);
            self.reply_limited(h.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            return Some(
                Decision::new(DecisionOutcome::Deny)
                    .with_rule(name(by.rule))
                    .with_reason("over_limit"),
            );
        }
        self.response_headers = headers::allowed(&rt.limiter.config.headers, rules, outcome)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        outcome.dry_run_limited().next().map(|r| {
            Decision::new(DecisionOutcome::DryRunDeny)
                .with_rule(name(r.rule))
                .with_reason("over_limit")
        })
    }

    /// Starts the rate limit service call for the global rules that applied;
    /// `true` when the request must wait for it.
    fn start_global(&mut self, rt: &Runtime, req: &impl rules::Facts) -> bool {
        let Some(opts) = &rt.limiter.config.rls else {
            return false;
        };
        let mut descriptors = Vec::new();
        let mut rule_ids = Vec::new();
        for (i, rule) in rt.limiter.config.rules.iter().enumerate() {
            if !rule.global {
                continue;
            }
            if let Some(d) = rule.descriptor(req) {
                descriptors.push(d);
                rule_ids.push(i);
            }
        }
        if descriptors.is_empty() {
            return false;
        }
        let message = rls::encode_request(&opts.domain, descriptors);
        match hostcalls::dispatch_grpc_call(
            &opts.cluster,
            rls::SERVICE,
            rls::METHOD,
            Vec::new(),
            Some(&message),
            Duration::from_millis(opts.timeout_ms),
        ) {
            Ok(token) => {
                self.pending = Some(Pending {
                    token,
                    rules: rule_ids,
                });
                true
            }
            Err(status) => {
                // Envoy answers ParseFailure for an unknown cluster. The
                // stream is not paused yet: no resume, just go on (or reply).
                self.service_failed(rt, &format!("call not started: {status:?}"), false);
                self.replied.get()
            }
        }
    }

    fn resume(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn apply_global(&mut self, rt: &Runtime, pending: &Pending, answer: rls::Answer) {
        let rules = &rt.limiter.config.rules;
        let mut enforcing: Option<usize> = None;
        let mut dry: Option<usize> = None;
        for &d in &answer.over_limit_descriptors {
            let Some(&rule) = pending.rules.get(d) else {
                continue;
            };
            let is_dry = rt.limiter.config.dry_run || rules.get(rule).is_some_and(|r| r.dry_run);
            if is_dry {
                rt.metrics.rule(rule, DRY_RUN_LIMITED);
                dry.get_or_insert(rule);
            } else {
                enforcing.get_or_insert(rule);
            }
        }
        let name = |i: usize| rules.get(i).map(|r| r.name.clone()).unwrap_or_default();
        if let Some(rule) = enforcing {
            rt.metrics.rule(rule, LIMITED);
            let mut h = vec![(
                "retry-after".to_string(),
                answer.retry_after_secs.to_string(),
            )];
            h.extend(answer.response_headers);
            self.reply_limited(h);
            self.publish(
                Decision::new(DecisionOutcome::Deny)
                    .with_rule(name(rule))
                    .with_reason("over_limit_global"),
            );
            return;
        }
        for (k, v) in &answer.request_headers {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, k, Some(v));
        }
        self.response_headers.extend(answer.response_headers);
        let decision = match dry {
            Some(rule) => Decision::new(DecisionOutcome::DryRunDeny)
                .with_rule(name(rule))
                .with_reason("over_limit_global"),
            None => self
                .local_decision
                .take()
                .unwrap_or_else(|| Decision::new(DecisionOutcome::Allow)),
        };
        self.publish(decision);
        self.resume();
    }

    /// The service failed (error, timeout, bad answer, call not started):
    /// `failureModeDeny` decides. `paused`: the request waits for us.
    fn service_failed(&mut self, rt: &Runtime, why: &str, paused: bool) {
        bump(rt.metrics.service_errors);
        let _ = hostcalls::log(
            LogLevel::Warn,
            &format!("meshward-{FILTER}: rate limit service: {why}"),
        );
        let deny = rt
            .limiter
            .config
            .rls
            .as_ref()
            .is_some_and(|o| o.failure_mode_deny);
        if deny {
            let body = reply_body("rate limit service unavailable", &self.request_id());
            let headers = [("content-type".to_string(), "application/json".to_string())];
            self.local_reply(500, DETAILS_SERVICE_ERROR, &headers, &body);
            self.publish(
                Decision::new(DecisionOutcome::Deny).with_reason("rate_limit_service_error"),
            );
        } else if paused {
            let d = self
                .local_decision
                .take()
                .unwrap_or_else(|| Decision::new(DecisionOutcome::Allow));
            self.publish(d);
            self.resume();
        }
    }
}

fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `source.address` is `ip:port` (`[v6]:port`), or a bare IP.
fn parse_source(addr: &str) -> Option<IpAddr> {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    addr.parse().ok()
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(rt) = self.runtime.clone() else {
            return Action::Continue;
        };
        bump(rt.metrics.requests);
        // Facts are read from the host on first use: matching stops at the
        // first failing condition, so a request costs only the reads its
        // decision needs (every host call is per-request cost).
        let req = LazyFacts::new(&rt);
        let outcome = rt.limiter.check(&HostStore, &req, now_nanos());
        let decision = self.apply_local(&rt, &outcome);
        if self.replied.get() {
            if let Some(d) = decision {
                self.publish(d);
            }
            return Action::Pause;
        }
        if rt.limiter.config.has_global_rules() && self.start_global(&rt, &req) {
            if self.replied.get() {
                return Action::Pause;
            }
            // A local dry-run verdict is published if the service admits.
            self.local_decision = decision;
            return Action::Pause;
        }
        match decision {
            Some(d) => self.publish(d),
            None => self.publish_bytes(&rt.allow_bytes),
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.replied.get() {
            return Action::Continue;
        }
        for (k, v) in &self.response_headers {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, k, v);
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_depends_on_the_config_bytes_only() {
        assert_eq!(generation(b"{\"a\":1}"), generation(b"{\"a\":1}"));
        assert_ne!(generation(b"{\"a\":1}"), generation(b"{\"a\":2}"));
        assert_eq!(generation(b"").len(), 16);
    }

    #[test]
    fn reply_body_escapes_the_request_id() {
        assert_eq!(
            reply_body("rate limited", "a\"b"),
            br#"{"error":"rate limited","request_id":"a\"b"}"#.to_vec()
        );
    }

    #[test]
    fn per_rule_metric_name() {
        assert_eq!(
            metric_names::per_rule("limited", "per-tenant"),
            "meshward_ratelimit.rule.per-tenant.limited"
        );
    }
}
