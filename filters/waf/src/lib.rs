//! meshward `waf` filter: a SecLang engine that runs OWASP CRS v4 in Envoy.
//!
//! The engine is plain Rust: [`parser`] reads SecLang, [`ruleset`] compiles
//! it, [`transaction`] evaluates phases 1–5 with [`variable`]s,
//! [`transform`]s, [`operator`]s and the [`body`] processors. This file is
//! the proxy-wasm shell: it maps callbacks onto phases (request headers → 1,
//! request body → 2, response headers → 3, response body → 4, log → 5),
//! carries out interruptions as local replies, logs every matched rule in
//! ModSecurity's format and publishes the outcome in filter state.
//! Configuration: `README.md`.

pub mod body;
pub mod config;
pub mod macros;
pub mod operator;
pub mod parser;
pub mod rule;
pub mod ruleset;
pub mod sources;
pub mod transaction;
pub mod transform;
pub mod variable;

use config::Settings;
use meshward_shared::filter_state::{self, Decision, Outcome};
use meshward_shared::metrics::Counters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use transaction::{Connection, Interruption, Transaction};

const FILTER: &str = "waf";

// Only the .wasm exports `_initialize`: natively, several filter crates link
// into the `meshward` command (which validates their configs).
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// The filter's root context (one per plugin per worker VM).
pub fn root_context(_context_id: u32) -> Box<dyn RootContext> {
    Box::new(Root {
        state: Rc::new(State::default()),
    })
}

/// Validates a `pluginConfig` as `on_configure` would (used by `meshward validate`).
pub fn validate_config(bytes: &[u8]) -> Result<(), meshward_shared::config::ConfigError> {
    Settings::parse(bytes).map(|_| ())
}

/// Per-VM state shared by the root and its streams.
#[derive(Default)]
struct State {
    settings: RefCell<Option<Rc<Settings>>>,
    metrics: Counters,
    requests: Cell<u64>,
}

impl State {
    fn count(&self, name: &str) {
        self.metrics.count(name);
    }
}

struct Root {
    state: Rc<State>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Settings::parse(&bytes) {
            Ok(settings) => {
                let set = settings.default_set();
                let _ = hostcalls::log(
                    LogLevel::Info,
                    &format!(
                        "meshward-{FILTER}: configured: {} rules, engine {:?}{}",
                        set.rule_count(),
                        set.settings.engine,
                        if set.settings.component_signatures.is_empty() {
                            String::new()
                        } else {
                            format!(", {}", set.settings.component_signatures.join(", "))
                        }
                    ),
                );
                for note in settings.notes() {
                    let _ = hostcalls::log(LogLevel::Info, &format!("meshward-{FILTER}: {note}"));
                }
                *self.state.settings.borrow_mut() = Some(Rc::new(settings));
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &e.log_line(FILTER));
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            state: Rc::clone(&self.state),
            tx: None,
            request_id: String::new(),
            buffering_request: false,
            buffering_response: false,
            logged: 0,
            replied: false,
        }))
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

struct Stream {
    state: Rc<State>,
    tx: Option<Transaction>,
    request_id: String,
    buffering_request: bool,
    buffering_response: bool,
    /// How many matched rules have been logged so far.
    logged: usize,
    /// A local reply was sent: later callbacks only finish the bookkeeping.
    replied: bool,
}

impl Context for Stream {}

impl Stream {
    fn new_transaction(&mut self) -> Option<Transaction> {
        let settings = self.state.settings.borrow().clone()?;
        let headers = self.get_http_request_headers_bytes();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let authority = pseudo(":authority");
        let rules = settings.for_authority(&String::from_utf8_lossy(&authority));
        let (remote_addr, remote_port) =
            split_address(self.get_property(vec!["source", "address"]));
        let (server_addr, server_port) =
            split_address(self.get_property(vec!["destination", "address"]));
        let request_id = String::from_utf8_lossy(&pseudo("x-request-id")).into_owned();
        let n = self.state.requests.get().wrapping_add(1);
        self.state.requests.set(n);
        self.request_id = if request_id.is_empty() {
            format!("meshward-waf-{n}")
        } else {
            request_id
        };
        let mut tx = Transaction::new(
            Rc::clone(rules),
            Connection {
                remote_addr,
                remote_port,
                server_addr,
                server_port,
            },
            self.request_id.clone(),
        );
        if let Ok(now) = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
        {
            tx.set_time_epoch(now.as_secs());
        }
        let protocol = self
            .get_property(vec!["request", "protocol"])
            .unwrap_or_else(|| b"HTTP/1.1".to_vec());
        let method = pseudo(":method");
        let has_path = headers.iter().any(|(k, _)| k == ":path");
        // A CONNECT has no :path; its request target is the authority.
        let target = if !has_path && method == b"CONNECT" {
            authority.clone()
        } else {
            pseudo(":path")
        };
        tx.set_request_line(&method, &target, &protocol);
        // Envoy turns `Host` into `:authority`; rules read it as `Host`
        // (an empty one too: CRS 920290 flags it).
        let has_authority = headers.iter().any(|(k, _)| k == ":authority");
        if has_authority && !headers.iter().any(|(k, _)| k == "host") {
            tx.add_request_header("Host", authority);
        }
        for (name, value) in headers {
            if !name.starts_with(':') {
                tx.add_request_header(name, value);
            }
        }
        Some(tx)
    }

    /// Logs the rules matched since the last call, as ModSecurity's error log.
    fn flush_logs(&mut self) {
        let Some(tx) = &self.tx else { return };
        let matched = tx.matched_rules();
        for rule in matched.get(self.logged..).unwrap_or_default() {
            if let Some(line) = &rule.log_line {
                let _ = hostcalls::log(LogLevel::Warn, &format!("meshward-{FILTER}: {line}"));
                self.state.count(&format!(
                    "meshward_waf_rule_matches_total{{rule=\"{}\"}}",
                    rule.id
                ));
            }
        }
        self.logged = matched.len();
    }

    /// Publishes score, matched rules and decision for the filters after us.
    fn publish(&mut self, interruption: Option<&Interruption>) {
        let Some(tx) = &self.tx else { return };
        let score = tx
            .tx("blocking_inbound_anomaly_score")
            .or_else(|| tx.tx("anomaly_score"))
            .map(transaction::atoi)
            .unwrap_or(0);
        // The rules that alerted; `nolog` flow-control rules are left out.
        let rules: Vec<String> = tx
            .matched_rules()
            .iter()
            .filter(|r| r.log_line.is_some())
            .map(|r| r.id.to_string())
            .collect();
        let decision = match (interruption, tx.detected()) {
            (Some(i), _) if i.rule_id == 0 => {
                Decision::new(Outcome::Deny).with_reason("body_too_large")
            }
            (Some(i), _) => Decision::new(Outcome::Deny)
                .with_rule(i.rule_id.to_string())
                .with_reason("waf_rule"),
            (None, Some(d)) => Decision::new(Outcome::DryRunDeny)
                .with_rule(d.rule_id.to_string())
                .with_reason("waf_rule"),
            (None, None) => Decision::new(Outcome::Allow),
        };
        let score = score.to_string();
        let rules = rules.join(",");
        self.set_property(vec![filter_state::WAF_SCORE], Some(score.as_bytes()));
        self.set_property(vec![filter_state::WAF_RULES], Some(rules.as_bytes()));
        self.set_property(vec![filter_state::WAF_DECISION], Some(&decision.encode()));
    }

    /// Answers the stream with the interruption's status and a JSON body.
    fn block(&mut self, interruption: &Interruption) -> Action {
        self.flush_logs();
        self.state.count(&format!(
            "meshward_waf_blocked_total{{phase=\"{}\"}}",
            interruption.phase
        ));
        self.publish(Some(interruption));
        // Rule ids start at 1: 0 is a body past its limit (`reject_oversize`).
        let reason = match (interruption.rule_id, interruption.phase) {
            (0, 2) => "request body too large".to_string(),
            (0, _) => "response body too large".to_string(),
            (id, _) => format!("rule {id}"),
        };
        let body = meshward_shared::local_reply::json_body(
            "request blocked by the WAF",
            Some(&reason),
            &self.request_id,
        );
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(location) = &interruption.redirect {
            headers.push(("location", location.clone()));
        }
        let _ = meshward_shared::local_reply::send(
            u32::from(interruption.status),
            "meshward_waf_denied",
            &headers,
            &body,
        );
        self.replied = true;
        self.buffering_request = false;
        self.buffering_response = false;
        Action::Pause
    }

    fn request_body_done(&mut self) -> Action {
        self.buffering_request = false;
        let interruption = self.tx.as_mut().and_then(Transaction::process_request_body);
        self.flush_logs();
        match interruption {
            // A multipart body whose fields passed the no-files limit.
            Some(i) if i.rule_id == 0 => self.reject_oversize(2),
            Some(i) => self.block(&i),
            None => {
                self.publish(None);
                Action::Continue
            }
        }
    }

    fn response_body_done(&mut self) -> Action {
        self.buffering_response = false;
        let interruption = self
            .tx
            .as_mut()
            .and_then(Transaction::process_response_body);
        self.flush_logs();
        match interruption {
            Some(i) => self.block(&i),
            None => Action::Continue,
        }
    }

    /// After phase 1 or 3: block, run the body phase now (no body, or no body
    /// access), or hold the body for it. Envoy turns a Pause in a headers
    /// callback into "stop all", after which no body callback runs, so the
    /// headers go on and the body is held in the body callbacks instead; a
    /// block in phase 4 then resets the stream and the client never gets the
    /// body.
    fn headers_done(
        &mut self,
        dir: Direction,
        interruption: Option<Interruption>,
        end_of_stream: bool,
    ) -> Action {
        self.flush_logs();
        if let Some(i) = interruption {
            return self.block(&i);
        }
        let wants_body = self.tx.as_ref().is_some_and(|tx| match dir {
            Direction::Request => tx.wants_request_body(),
            Direction::Response => tx.wants_response_body(),
        });
        if end_of_stream || !wants_body {
            return match dir {
                Direction::Request => self.request_body_done(),
                Direction::Response => self.response_body_done(),
            };
        }
        match dir {
            Direction::Request => self.buffering_request = true,
            Direction::Response => self.buffering_response = true,
        }
        Action::Continue
    }

    /// A body callback (or trailers, which end the body): holds the body
    /// until it is complete or past its limit, then runs phase 2 or 4.
    fn body_arrived(&mut self, dir: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let held = match dir {
            Direction::Request => self.buffering_request,
            Direction::Response => self.buffering_response,
        };
        let Some(tx) = self.tx.as_ref().filter(|_| held && !self.replied) else {
            return Action::Continue;
        };
        let limit = match dir {
            Direction::Request => tx.request_body_limit(),
            Direction::Response => tx.response_body_limit(),
        };
        if !end_of_stream && body_size <= limit {
            return Action::Pause;
        }
        // One byte past the limit is enough to know it was passed.
        let size = body_size.min(limit.saturating_add(1));
        let body = match dir {
            Direction::Request => self.get_http_request_body(0, size),
            Direction::Response => self.get_http_response_body(0, size),
        }
        .unwrap_or_default();
        let Some(tx) = self.tx.as_mut() else {
            return Action::Continue;
        };
        let (reject, phase) = match dir {
            Direction::Request => (tx.append_request_body(&body), 2),
            Direction::Response => (tx.append_response_body(&body), 4),
        };
        match (reject, dir) {
            (true, _) => self.reject_oversize(phase),
            (_, Direction::Request) => self.request_body_done(),
            (_, Direction::Response) => self.response_body_done(),
        }
    }

    /// A body past its limit with `Reject`: 413 for requests, 500 for responses.
    fn reject_oversize(&mut self, phase: u8) -> Action {
        let status = if phase == 2 { 413 } else { 500 };
        let (what, limit) = match (&self.tx, phase) {
            (Some(tx), 2) => (
                "Request",
                tx.exceeded_request_limit()
                    .unwrap_or_else(|| tx.request_body_limit()),
            ),
            (Some(tx), _) => ("Response", tx.response_body_limit()),
            (None, _) => ("Body", 0),
        };
        let _ = hostcalls::log(
            LogLevel::Warn,
            &format!(
                "meshward-{FILTER}: ModSecurity: {what} body is larger than the configured limit ({limit}); answered {status} [unique_id \"{}\"]",
                self.request_id
            ),
        );
        self.block(&Interruption {
            rule_id: 0,
            status,
            phase,
            redirect: None,
        })
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(tx) = self.new_transaction() else {
            return Action::Continue;
        };
        self.tx = Some(tx);
        self.state.count("meshward_waf_requests_total");
        let interruption = self
            .tx
            .as_mut()
            .and_then(Transaction::process_request_headers);
        self.headers_done(Direction::Request, interruption, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_arrived(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body_arrived(Direction::Request, usize::MAX, true)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let headers = self.get_http_response_headers_bytes();
        let Some(tx) = self.tx.as_mut() else {
            return Action::Continue;
        };
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        tx.set_response_status(status, b"HTTP/1.1");
        for (name, value) in headers {
            if !name.starts_with(':') {
                tx.add_response_header(name, value);
            }
        }
        let interruption = tx.process_response_headers();
        self.headers_done(Direction::Response, interruption, end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_arrived(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body_arrived(Direction::Response, usize::MAX, true)
    }

    fn on_log(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.process_logging();
            if let Some(d) = tx.detected() {
                let phase = d.phase;
                self.state
                    .count(&format!("meshward_waf_detected_total{{phase=\"{phase}\"}}"));
            }
        }
        self.flush_logs();
    }
}

/// `10.0.0.1:4000` / `[::1]:4000` → (address, port).
fn split_address(value: Option<Vec<u8>>) -> (String, u16) {
    let text = value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    match text.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (host.to_string(), port.parse().unwrap_or(0))
        }
        _ => (text, 0),
    }
}
