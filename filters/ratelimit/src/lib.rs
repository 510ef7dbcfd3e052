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
    serde_json::json!({ "error": error, "request_id": request_id })
        .to_string()
        .into_bytes()
}

/// Metric names, one place (Envoy exposes them as `wasmcustom.<name>`).
pub mod metric_names {
    pub const REQUESTS: &str = "meshward_ratelimit_requests_total";
    pub const CAS_RETRIES: &str = "meshward_ratelimit_cas_retries_total";
    pub const CAS_EXHAUSTED: &str = "meshward_ratelimit_cas_exhausted_total";
    pub const SERVICE_ERRORS: &str = "meshward_ratelimit_service_errors_total";
    pub const CONFIG_RELOADS: &str = "meshward_ratelimit_config_reloads_total";

    /// Per rule: `allowed` (the rule admitted the request), `limited` (it
    /// caused a 429), `dry_run_limited` (it would have), `overflow` (its key
    /// found no slot and used the overflow bucket).
    pub fn per_rule(outcome: &str, rule: &str) -> String {
        format!("meshward_ratelimit_{outcome}_total{{rule=\"{rule}\"}}")
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
            "meshward_ratelimit_limited_total{rule=\"per-tenant\"}"
        );
    }
}
