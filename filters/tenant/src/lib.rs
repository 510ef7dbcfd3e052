//! meshward `tenant` filter: SPIFFE tenant isolation.
//!
//! Decides who is calling (the SPIFFE ID of the mTLS peer certificate, or of a
//! trusted forwarder's XFCC), which tenant that is, and whether it may call
//! this workload's tenant; denies with a 403 JSON local reply (or only records
//! in dry-run) and publishes `meshward.principal`, `meshward.tenant` and
//! `meshward.authz.decision` for later filters. Configuration: `README.md`.
//!
//! This file is the proxy-wasm shell only; decisions live in [`engine`] and
//! the modules it calls, which take and return plain values.

pub mod config;
pub mod engine;
pub mod identity;
pub mod path;
pub mod policy;

use config::Settings;
use engine::{Engine, Evaluation};
use identity::{IdentityCache, PeerIdentity};
use meshward_shared::filter_state;
use meshward_shared::metrics::Counters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

const FILTER: &str = "tenant";

// Only the .wasm exports `_initialize`: natively, several filter crates link
// into the `meshward` command (which validates their configs).
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// The filter's root context (one per plugin per worker VM).
pub fn root_context(_context_id: u32) -> Box<dyn RootContext> {
    Box::new(TenantRoot {
        state: Rc::new(State::default()),
    })
}

/// What the root context and its streams share (one VM is single-threaded).
struct State {
    engine: RefCell<Option<Rc<Engine>>>,
    cache: RefCell<IdentityCache>,
    metrics: Counters,
}

impl Default for State {
    fn default() -> Self {
        State {
            engine: RefCell::new(None),
            cache: RefCell::new(IdentityCache::new(config::DEFAULT_IDENTITY_CACHE_SIZE)),
            metrics: Counters::default(),
        }
    }
}

impl State {
    /// Increments a counter; names come from a bounded set (`engine::metric_names`).
    fn count(&self, name: &str) {
        self.metrics.count(name);
    }
}

struct TenantRoot {
    state: Rc<State>,
}

impl Context for TenantRoot {}

impl RootContext for TenantRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        // Envoy 1.40 serves node metadata as `xds.node.metadata.*` (and
        // `node.metadata.*` is NOT_FOUND there); older hosts use `node.metadata.*`.
        let node_namespace = self
            .get_property(vec!["xds", "node", "metadata", "NAMESPACE"])
            .or_else(|| self.get_property(vec!["node", "metadata", "NAMESPACE"]))
            .filter(|v| !v.is_empty())
            .and_then(|v| String::from_utf8(v).ok());
        match configure(&bytes, node_namespace) {
            Ok(engine) => {
                let _ = hostcalls::log(
                    LogLevel::Info,
                    &format!(
                        "meshward-{FILTER}: configured: destination tenant {}, mode {:?}, {} rules",
                        engine.destination_tenant,
                        engine.settings.mode,
                        engine.settings.policy.rules.len()
                    ),
                );
                *self.state.cache.borrow_mut() =
                    IdentityCache::new(engine.settings.identity_cache_size);
                *self.state.engine.borrow_mut() = Some(Rc::new(engine));
                self.state.count("meshward_tenant.config_reloads");
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &e.log_line(FILTER));
                self.state.count("meshward_tenant.config_errors");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TenantStream {
            state: Rc::clone(&self.state),
        }))
    }
}

/// Parses the config and settles the destination tenant (config first, then
/// the node's `NAMESPACE` metadata).
fn configure(
    bytes: &[u8],
    node_namespace: Option<String>,
) -> Result<Engine, meshward_shared::config::ConfigError> {
    let settings = Settings::parse(bytes)?;
    let destination_tenant = match (&settings.destination_tenant, node_namespace) {
        (Some(t), _) => t.clone(),
        (None, Some(ns)) => {
            config::validate_tenant_name(&ns).map_err(|e| {
                meshward_shared::config::ConfigError::new(
                    "destinationTenant",
                    format!("node metadata NAMESPACE is not a tenant name: {e}"),
                )
            })?;
            ns
        }
        (None, None) => {
            return Err(meshward_shared::config::ConfigError::new(
                "destinationTenant",
                "not set, and node metadata NAMESPACE is absent",
            ))
        }
    };
    Ok(Engine {
        settings,
        destination_tenant,
    })
}

struct TenantStream {
    state: Rc<State>,
}

impl Context for TenantStream {}

impl TenantStream {
    /// The peer's identity, from the per-connection cache or parsed once.
    fn peer_identity(&self) -> PeerIdentity {
        let connection = self
            .get_property(vec!["connection", "id"])
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes);
        if let Some(conn) = connection {
            if let Some(hit) = self.state.cache.borrow().get(conn) {
                return hit.clone();
            }
        }
        let cert = self.get_property(vec!["connection", "peer_certificate"]);
        let identity = PeerIdentity::from_peer_certificate(cert.as_deref());
        if let Some(conn) = connection {
            self.state.cache.borrow_mut().insert(conn, identity.clone());
        }
        identity
    }

    fn apply(&mut self, engine: &Engine, headers: &[(String, String)], ev: Evaluation) -> Action {
        for name in &ev.remove_headers {
            self.set_http_request_header(name, None);
        }
        if let Some(principal) = &ev.principal {
            self.set_property(
                vec![filter_state::PRINCIPAL],
                Some(principal.as_str().as_bytes()),
            );
        }
        if let Some(tenant) = &ev.caller_tenant {
            self.set_property(vec![filter_state::TENANT], Some(tenant.as_bytes()));
        }
        self.set_property(
            vec![filter_state::AUTHZ_DECISION],
            Some(&ev.decision.encode()),
        );
        self.state.count(&ev.metric);

        if ev.decision.outcome == filter_state::Outcome::Allow {
            return Action::Continue;
        }
        let request_id = engine::request_id(headers);
        let reason = ev.decision.reason.as_deref().unwrap_or_default();
        let _ = hostcalls::log(
            LogLevel::Info,
            &format!(
                "meshward-{FILTER}: {} {} -> tenant {}: reason={} rule={} request_id={}",
                if ev.deny { "denied" } else { "dry-run denied" },
                ev.detail.as_deref().unwrap_or_default(),
                engine.destination_tenant,
                reason,
                ev.decision.rule.as_deref().unwrap_or_default(),
                request_id,
            ),
        );
        if !ev.deny {
            return Action::Continue;
        }
        send_local_response(
            403,
            engine::DENIED_DETAILS,
            &engine::deny_body(reason, request_id),
            &[("content-type", "application/json")],
        );
        Action::Pause
    }
}

impl HttpContext for TenantStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(engine) = self.state.engine.borrow().clone() else {
            // Envoy does not run a plugin whose configuration was rejected;
            // should it happen anyway, fail closed.
            send_local_response(
                503,
                "meshward_tenant_unconfigured",
                br#"{"error":"tenant_unconfigured"}"#,
                &[("content-type", "application/json")],
            );
            return Action::Pause;
        };
        let peer = self.peer_identity();
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        // The SDK's String variant panics (traps the VM) on a value that is not
        // UTF-8, which any client can send (obs-text); read bytes instead.
        let headers: Vec<(String, String)> = self
            .get_http_request_headers_bytes()
            .into_iter()
            .map(|(name, value)| (name, text(value)))
            .collect();
        let ev = engine.evaluate(&headers, &peer, now);
        self.apply(&engine, &headers, ev)
    }
}

/// A header value as text; bytes that are not UTF-8 become U+FFFD, so they
/// can never match a policy value or pattern by accident.
fn text(value: Vec<u8>) -> String {
    String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A local reply with response-code details (the SDK sends none).
fn send_local_response(status: u32, details: &str, body: &[u8], headers: &[(&str, &str)]) {
    let _ = meshward_shared::local_reply::send(status, details, headers, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_tenant_comes_from_config_then_node_metadata() {
        let e = configure(br#"{"destinationTenant": "bank-b"}"#, Some("bank-a".into())).unwrap();
        assert_eq!(e.destination_tenant, "bank-b");
        let e = configure(b"{}", Some("bank-a".into())).unwrap();
        assert_eq!(e.destination_tenant, "bank-a");
        let err = configure(b"{}", None).unwrap_err();
        assert_eq!(
            err.log_line("tenant"),
            "meshward-tenant: invalid config: destinationTenant: not set, and node metadata NAMESPACE is absent"
        );
        assert!(configure(b"{}", Some("bank/a".into())).is_err());
    }
}
