//! An Envoy bootstrap that runs the meshward filters without Istio.
//!
//! The same WasmPlugin manifests that drive the harness and the cluster become
//! `envoy.filters.http.wasm` filters, in Istio's order, behind an mTLS listener
//! that forwards to one upstream cluster — so what runs in plain Envoy is what
//! is deployed (ARCHITECTURE §5). Each filter is mapped the way istiod maps a
//! WasmPlugin:
//!
//! | WasmPlugin                      | Envoy `envoy.extensions.wasm.v3.PluginConfig`       |
//! | ------------------------------- | --------------------------------------------------- |
//! | `metadata.name`                 | `name`                                              |
//! | `pluginName`                    | `root_id`                                           |
//! | `pluginConfig` (as JSON)        | `configuration` (`google.protobuf.StringValue`)     |
//! | module                          | `vm_config.code.local.filename`, runtime V8, no `vm_id` |
//! | `vmConfig.env` `INLINE`/`HOST`  | `environment_variables.key_values` / `host_env_keys` |
//! | `failStrategy`                  | `failure_policy` `FAIL_CLOSED`/`FAIL_OPEN`/`FAIL_RELOAD` |
//!
//! Envoy 1.40 deprecates `fail_open` and rejects a config that sets both it and
//! `failure_policy`, so only `failure_policy` is written.
//!
//! This module only builds the document; it does not start Envoy.

use crate::manifest::{manifest_files, FailStrategy, ManifestContext, PluginSpec};
use anyhow::Context as _;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The Wasm runtime Istio's proxies use.
pub const RUNTIME_V8: &str = "envoy.wasm.runtime.v8";

/// The Envoy `envoy.extensions.wasm.v3.FailurePolicy` of an Istio `failStrategy`.
pub fn failure_policy(strategy: FailStrategy) -> &'static str {
    match strategy {
        FailStrategy::FailClose => "FAIL_CLOSED",
        FailStrategy::FailOpen => "FAIL_OPEN",
        FailStrategy::FailReload => "FAIL_RELOAD",
    }
}

/// One Wasm HTTP filter, already in chain position.
#[derive(Debug, Clone, PartialEq)]
pub struct WasmFilter {
    /// The filter's name (WasmPlugin `metadata.name`).
    pub name: String,
    /// The root context id (WasmPlugin `pluginName`).
    pub root_id: String,
    /// The `.wasm` module on local disk.
    pub wasm: PathBuf,
    /// The plugin configuration as delivered to `on_configure` (JSON text).
    pub configuration: String,
    /// VM environment given inline (`valueFrom: INLINE`).
    pub env: BTreeMap<String, String>,
    /// VM environment taken from Envoy's own environment (`valueFrom: HOST`).
    pub host_env_keys: Vec<String>,
    /// WasmPlugin `failStrategy`.
    pub fail_strategy: FailStrategy,
}

impl WasmFilter {
    /// The Envoy filter for one plugin of the harness's chain. Environment keys in
    /// `host_env_keys` are left for Envoy to read from its own environment (as Istio
    /// does for `valueFrom: HOST`) instead of being written into the bootstrap.
    pub fn from_plugin(plugin: &PluginSpec, host_env_keys: &[String]) -> WasmFilter {
        WasmFilter {
            name: plugin.name.clone(),
            root_id: plugin.root_id.clone(),
            wasm: plugin.wasm.clone(),
            configuration: String::from_utf8_lossy(&plugin.configuration).into_owned(),
            env: plugin
                .env
                .iter()
                .filter(|(k, _)| !host_env_keys.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            host_env_keys: host_env_keys.to_vec(),
            fail_strategy: plugin.fail_strategy,
        }
    }
}

/// Reads WasmPlugin manifests (files or directories, as
/// [`crate::manifest::load_manifests`] does) into Envoy filters in Istio's order.
/// Module paths are made absolute, and a module that does not exist is an error
/// here rather than an Envoy start-up failure.
pub fn filters_from_manifests(
    paths: &[PathBuf],
    ctx: &ManifestContext,
) -> anyhow::Result<Vec<WasmFilter>> {
    let plugins = crate::manifest::load_manifests(paths, ctx)?;
    let host_keys = host_env_keys(paths)?;
    let mut filters = Vec::with_capacity(plugins.len());
    for plugin in &plugins {
        let keys = host_keys.get(&plugin.name).cloned().unwrap_or_default();
        let mut filter = WasmFilter::from_plugin(plugin, &keys);
        filter.wasm = std::fs::canonicalize(&plugin.wasm).with_context(|| {
            format!(
                "WasmPlugin {}: module {} (build it with `make build`)",
                plugin.name,
                plugin.wasm.display()
            )
        })?;
        filters.push(filter);
    }
    Ok(filters)
}

/// The clusters a filter's configuration names for `http_call`/`grpc_call`: the
/// string value of every key `cluster` or `…Cluster` (e.g. `collector.cluster`,
/// `rateLimitService.cluster`), in order of appearance, without repeats. Envoy
/// answers a call to an undefined cluster with BAD_ARGUMENT at request time, so
/// the bootstrap must define each of them.
pub fn referenced_clusters(filter: &WasmFilter) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key == "cluster" || key.ends_with("Cluster") {
                        if let Some(name) = v.as_str() {
                            if !name.is_empty() && !out.iter().any(|n| n == name) {
                                out.push(name.to_string());
                            }
                        }
                    }
                    walk(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(&filter.configuration) {
        walk(&value, &mut out);
    }
    out
}

/// The `vmConfig.env` names with `valueFrom: HOST`, per WasmPlugin `metadata.name`.
/// The harness's loader resolves them to values; Envoy must get the names.
fn host_env_keys(paths: &[PathBuf]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in manifest_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .with_context(|| format!("in {}", file.display()))?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("WasmPlugin") {
                continue;
            }
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let env = value["spec"]["vmConfig"]["env"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            for var in env {
                if var["valueFrom"].as_str() == Some("HOST") {
                    if let Some(key) = var["name"].as_str() {
                        out.entry(name.clone()).or_default().push(key.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Certificates of the mTLS listener, as PEM files.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// CA bundle that client certificates must chain to.
    pub ca: PathBuf,
    /// The listener's certificate chain.
    pub cert: PathBuf,
    /// The listener's private key.
    pub key: PathBuf,
}

/// How Envoy talks to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterProtocol {
    /// HTTP/1.1, for plain HTTP services (the application, `http_call` targets).
    #[default]
    Http1,
    /// HTTP/2 cleartext, required for `grpc_call` targets (e.g. a rate limit service).
    Http2,
}

/// A static upstream cluster with one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: ClusterProtocol,
}

impl Cluster {
    /// A cluster spoken to over HTTP/1.1.
    pub fn http1(name: impl Into<String>, address: SocketAddr) -> Cluster {
        Cluster {
            name: name.into(),
            address,
            protocol: ClusterProtocol::Http1,
        }
    }

    /// A cluster spoken to over HTTP/2 (gRPC).
    pub fn http2(name: impl Into<String>, address: SocketAddr) -> Cluster {
        Cluster {
            name: name.into(),
            address,
            protocol: ClusterProtocol::Http2,
        }
    }
}

/// Name of the cluster the listener routes every request to.
pub const APP_CLUSTER: &str = "app";

/// Everything the bootstrap is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    /// Where the data-plane listener binds (port 0: Envoy picks one, read it from `/listeners`).
    pub listen: SocketAddr,
    /// mTLS on the listener; `None` for plaintext (not what a mesh does; for local tries only).
    pub tls: Option<ListenerTls>,
    /// Where the admin interface binds (keep it on loopback).
    pub admin: SocketAddr,
    /// The application every request is routed to.
    pub upstream: SocketAddr,
    /// Further clusters the filters reach with `http_call`/`grpc_call`.
    pub clusters: Vec<Cluster>,
    /// `node.id`.
    pub node_id: String,
    /// `node.metadata`. Envoy 1.40 serves it to filters as the property
    /// `xds.node.metadata.<KEY>` (e.g. `NAMESPACE`); `node.metadata.<KEY>` is NOT_FOUND there.
    pub node_metadata: BTreeMap<String, String>,
    /// The Wasm filters, in chain order.
    pub filters: Vec<WasmFilter>,
    /// Where to write one JSON access-log line per request (see [`ACCESS_LOG_FORMAT`]).
    pub access_log: Option<PathBuf>,
}

/// The fields of an access-log line: what a filter decided is visible in
/// `details` (the response-code details a local reply names its filter in).
pub const ACCESS_LOG_FORMAT: &[(&str, &str)] = &[
    ("time", "%START_TIME%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(:PATH)%"),
    ("code", "%RESPONSE_CODE%"),
    ("details", "%RESPONSE_CODE_DETAILS%"),
    ("flags", "%RESPONSE_FLAGS%"),
    ("peer", "%DOWNSTREAM_PEER_URI_SAN%"),
    ("duration_ms", "%DURATION%"),
];

/// A bootstrap that Envoy would not accept, found before Envoy sees it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootstrapError {
    #[error("cluster {0:?} is defined twice")]
    DuplicateCluster(String),
    #[error("cluster name {0:?} is reserved for the application upstream")]
    ReservedCluster(String),
    #[error("filter name {0:?} is used by two plugins")]
    DuplicateFilter(String),
    #[error("filter {0:?}: {1}")]
    Filter(String, String),
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

impl Bootstrap {
    /// A bootstrap with no filters, no extra clusters and no node metadata.
    pub fn new(listen: SocketAddr, admin: SocketAddr, upstream: SocketAddr) -> Bootstrap {
        Bootstrap {
            listen,
            tls: None,
            admin,
            upstream,
            clusters: Vec::new(),
            node_id: "meshward".to_string(),
            node_metadata: BTreeMap::new(),
            filters: Vec::new(),
            access_log: None,
        }
    }

    /// Checks what Envoy would otherwise reject at start-up with a less direct message.
    pub fn validate(&self) -> Result<(), BootstrapError> {
        let mut clusters = std::collections::BTreeSet::new();
        for cluster in &self.clusters {
            if cluster.name == APP_CLUSTER {
                return Err(BootstrapError::ReservedCluster(cluster.name.clone()));
            }
            if !clusters.insert(cluster.name.as_str()) {
                return Err(BootstrapError::DuplicateCluster(cluster.name.clone()));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for filter in &self.filters {
            if !names.insert(filter.name.as_str()) {
                return Err(BootstrapError::DuplicateFilter(filter.name.clone()));
            }
            // Envoy rejects an environment key given both inline and from the host.
            if let Some(key) = filter
                .host_env_keys
                .iter()
                .find(|k| filter.env.contains_key(*k))
            {
                return Err(BootstrapError::Filter(
                    filter.name.clone(),
                    format!("environment variable {key:?} is both INLINE and HOST"),
                ));
            }
        }
        Ok(())
    }

    /// The bootstrap as a JSON value (Envoy accepts JSON and YAML alike).
    pub fn to_value(&self) -> Result<Value, BootstrapError> {
        self.validate()?;
        let mut http_filters: Vec<Value> = self.filters.iter().map(wasm_filter).collect();
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));

        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "meshward_inbound",
            "codec_type": "AUTO",
            // Like Istio's sidecar inbound: keep what the caller forwarded and append
            // one element describing the direct peer (ARCHITECTURE §7).
            "forward_client_cert_details": "APPEND_FORWARD",
            // Istio's default path normalization (BASE): RFC 3986 dot segments
            // resolved before any filter sees the path.
            "normalize_path": true,
            // Istio's sidecar: the caller's subject, URI and DNS SANs (no certificate).
            "set_current_client_cert_details": {"subject": true, "uri": true, "dns": true},
            "route_config": {
                "name": "inbound",
                "virtual_hosts": [{
                    "name": "inbound",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": APP_CLUSTER, "timeout": "15s"}}]
                }]
            },
            "http_filters": http_filters,
        });
        if let Some(path) = &self.access_log {
            let format: Map<String, Value> = ACCESS_LOG_FORMAT
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            hcm["access_log"] = json!([{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": path_str(path),
                    "log_format": {"json_format": format}
                }
            }]);
        }

        let mut filter_chain = Map::new();
        filter_chain.insert(
            "filters".into(),
            json!([{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]),
        );
        if let Some(tls) = &self.tls {
            filter_chain.insert(
                "transport_socket".into(),
                json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": {
                            "alpn_protocols": ["h2", "http/1.1"],
                            "tls_certificates": [{
                                "certificate_chain": {"filename": path_str(&tls.cert)},
                                "private_key": {"filename": path_str(&tls.key)}
                            }],
                            "validation_context": {"trusted_ca": {"filename": path_str(&tls.ca)}}
                        }
                    }
                }),
            );
        }

        let mut clusters = vec![cluster(&Cluster::http1(APP_CLUSTER, self.upstream))];
        clusters.extend(self.clusters.iter().map(cluster));

        Ok(json!({
            "node": {
                "id": self.node_id,
                "cluster": "meshward",
                "metadata": self.node_metadata,
            },
            "admin": {"address": socket_address(self.admin)},
            "static_resources": {
                "listeners": [{
                    "name": "meshward_inbound",
                    "address": socket_address(self.listen),
                    "filter_chains": [Value::Object(filter_chain)],
                }],
                "clusters": clusters,
            }
        }))
    }

    /// The bootstrap as YAML, ready for `envoy -c`.
    pub fn to_yaml(&self) -> Result<String, BootstrapError> {
        let value = self.to_value()?;
        serde_yaml::to_string(&value).map_err(|e| BootstrapError::Yaml(e.to_string()))
    }
}

fn wasm_filter(filter: &WasmFilter) -> Value {
    let mut vm_config = json!({
        "runtime": RUNTIME_V8,
        // Istio sets no vm_id: all plugins share one shared-data key space (§6).
        "vm_id": "",
        "code": {"local": {"filename": path_str(&filter.wasm)}},
    });
    if !filter.env.is_empty() || !filter.host_env_keys.is_empty() {
        let mut env = Map::new();
        if !filter.host_env_keys.is_empty() {
            env.insert("host_env_keys".into(), json!(filter.host_env_keys));
        }
        if !filter.env.is_empty() {
            env.insert("key_values".into(), json!(filter.env));
        }
        vm_config["environment_variables"] = Value::Object(env);
    }
    json!({
        "name": filter.name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": filter.name,
                "root_id": filter.root_id,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter.configuration,
                },
                "failure_policy": failure_policy(filter.fail_strategy),
                "vm_config": vm_config,
            }
        }
    })
}

fn cluster(cluster: &Cluster) -> Value {
    let mut value = json!({
        "name": cluster.name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": cluster.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(cluster.address)}}]}]
        }
    });
    if cluster.protocol == ClusterProtocol::Http2 {
        value["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    value
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn filter(name: &str, root_id: &str) -> WasmFilter {
        WasmFilter {
            name: name.into(),
            root_id: root_id.into(),
            wasm: PathBuf::from(format!("/wasm/{root_id}.wasm")),
            configuration: r#"{"mode":"enforce"}"#.into(),
            env: BTreeMap::new(),
            host_env_keys: Vec::new(),
            fail_strategy: FailStrategy::FailClose,
        }
    }

    fn sample() -> Bootstrap {
        let mut b = Bootstrap::new(
            addr("127.0.0.1:15006"),
            addr("127.0.0.1:15000"),
            addr("127.0.0.1:8080"),
        );
        b.tls = Some(ListenerTls {
            ca: "/c/ca.pem".into(),
            cert: "/c/cert.pem".into(),
            key: "/c/key.pem".into(),
        });
        b.filters = vec![
            filter("meshward-waf", "waf"),
            filter("meshward-tenant", "tenant"),
        ];
        b.node_metadata.insert("NAMESPACE".into(), "bank-a".into());
        b
    }

    fn http_filters(v: &Value) -> &Vec<Value> {
        v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"]
            .as_array()
            .unwrap()
    }

    #[test]
    fn filters_keep_chain_order_and_router_is_last() {
        let v = sample().to_value().unwrap();
        let names: Vec<&str> = http_filters(&v)
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "meshward-waf",
                "meshward-tenant",
                "envoy.filters.http.router"
            ]
        );
    }

    #[test]
    fn wasm_plugin_fields_map_to_envoy_plugin_config() {
        let mut b = sample();
        b.filters[1].env.insert("TIER".into(), "gold".into());
        b.filters[1].host_env_keys.push("AUDIT_KEY_K1".into());
        b.filters[1].fail_strategy = FailStrategy::FailOpen;
        let v = b.to_value().unwrap();
        let config = &http_filters(&v)[1]["typed_config"]["config"];
        assert_eq!(config["name"], "meshward-tenant");
        assert_eq!(config["root_id"], "tenant");
        assert_eq!(
            config["configuration"]["@type"],
            "type.googleapis.com/google.protobuf.StringValue"
        );
        assert_eq!(config["configuration"]["value"], r#"{"mode":"enforce"}"#);
        assert_eq!(config["failure_policy"], "FAIL_OPEN");
        assert!(
            config.get("fail_open").is_none(),
            "Envoy 1.40 rejects fail_open next to failure_policy"
        );
        let vm = &config["vm_config"];
        assert_eq!(vm["runtime"], "envoy.wasm.runtime.v8");
        assert_eq!(vm["vm_id"], "");
        assert_eq!(vm["code"]["local"]["filename"], "/wasm/tenant.wasm");
        assert_eq!(vm["environment_variables"]["key_values"]["TIER"], "gold");
        assert_eq!(
            vm["environment_variables"]["host_env_keys"][0],
            "AUDIT_KEY_K1"
        );
        // No environment: no environment_variables block at all.
        assert!(http_filters(&v)[0]["typed_config"]["config"]["vm_config"]
            .get("environment_variables")
            .is_none());
    }

    #[test]
    fn every_fail_strategy_has_its_envoy_failure_policy() {
        let rows = [
            (FailStrategy::FailClose, "FAIL_CLOSED"),
            (FailStrategy::FailOpen, "FAIL_OPEN"),
            (FailStrategy::FailReload, "FAIL_RELOAD"),
        ];
        for (strategy, name) in rows {
            assert_eq!(failure_policy(strategy), name);
        }
    }

    #[test]
    fn listener_requires_client_certificates_from_the_given_ca() {
        let v = sample().to_value().unwrap();
        let chain = &v["static_resources"]["listeners"][0]["filter_chains"][0];
        let tls = &chain["transport_socket"]["typed_config"];
        assert_eq!(tls["require_client_certificate"], true);
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"],
            "/c/ca.pem"
        );
        assert_eq!(
            tls["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"],
            "/c/cert.pem"
        );
        assert_eq!(
            tls["common_tls_context"]["tls_certificates"][0]["private_key"]["filename"],
            "/c/key.pem"
        );
        let hcm = &chain["filters"][0]["typed_config"];
        assert_eq!(hcm["forward_client_cert_details"], "APPEND_FORWARD");
        assert_eq!(hcm["set_current_client_cert_details"]["uri"], true);
        assert_eq!(hcm["set_current_client_cert_details"]["subject"], true);
        assert_eq!(hcm["set_current_client_cert_details"]["dns"], true);
        assert_eq!(hcm["normalize_path"], true);
    }

    #[test]
    fn access_log_is_one_json_line_per_request_when_asked_for() {
        let v = sample().to_value().unwrap();
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert!(hcm.get("access_log").is_none());
        let mut b = sample();
        b.access_log = Some("/logs/access.jsonl".into());
        let v = b.to_value().unwrap();
        let log = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["access_log"][0]["typed_config"];
        assert_eq!(log["path"], "/logs/access.jsonl");
        assert_eq!(
            log["log_format"]["json_format"]["details"],
            "%RESPONSE_CODE_DETAILS%"
        );
        assert_eq!(log["log_format"]["json_format"]["code"], "%RESPONSE_CODE%");
    }

    #[test]
    fn plaintext_listener_has_no_transport_socket() {
        let mut b = sample();
        b.tls = None;
        let v = b.to_value().unwrap();
        assert!(v["static_resources"]["listeners"][0]["filter_chains"][0]
            .get("transport_socket")
            .is_none());
    }

    #[test]
    fn requests_route_to_the_app_cluster_and_grpc_clusters_speak_http2() {
        let mut b = sample();
        b.clusters
            .push(Cluster::http1("audit-collector", addr("127.0.0.1:9001")));
        b.clusters
            .push(Cluster::http2("rls", addr("127.0.0.1:9002")));
        let v = b.to_value().unwrap();
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let names: Vec<&str> = clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app", "audit-collector", "rls"]);
        let app_addr = &clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            ["endpoint"]["address"];
        assert_eq!(app_addr["socket_address"]["port_value"], 8080);
        assert!(clusters[1]
            .get("typed_extension_protocol_options")
            .is_none());
        let h2 = &clusters[2]["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert!(h2["explicit_http_config"]["http2_protocol_options"].is_object());
        let hcm = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"],
            "app"
        );
    }

    #[test]
    fn node_metadata_is_served_to_filters() {
        let v = sample().to_value().unwrap();
        assert_eq!(v["node"]["metadata"]["NAMESPACE"], "bank-a");
    }

    #[test]
    fn yaml_output_parses_back_to_the_same_document() {
        let b = sample();
        let yaml = b.to_yaml().unwrap();
        let back: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, b.to_value().unwrap());
        // The plugin configuration stays a JSON string, not a YAML mapping.
        assert!(
            back["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]
                ["value"]
                .is_string()
        );
    }

    #[test]
    fn conflicting_definitions_are_rejected_before_envoy_sees_them() {
        let mut b = sample();
        b.clusters = vec![
            Cluster::http1("c", addr("127.0.0.1:1")),
            Cluster::http1("c", addr("127.0.0.1:2")),
        ];
        assert_eq!(
            b.to_value().unwrap_err(),
            BootstrapError::DuplicateCluster("c".into())
        );

        let mut b = sample();
        b.clusters = vec![Cluster::http1("app", addr("127.0.0.1:1"))];
        assert_eq!(
            b.to_value().unwrap_err(),
            BootstrapError::ReservedCluster("app".into())
        );

        let mut b = sample();
        b.filters.push(filter("meshward-waf", "waf"));
        assert_eq!(
            b.to_value().unwrap_err(),
            BootstrapError::DuplicateFilter("meshward-waf".into())
        );

        let mut b = sample();
        b.filters[0].env.insert("K".into(), "v".into());
        b.filters[0].host_env_keys.push("K".into());
        assert!(
            matches!(b.to_value().unwrap_err(), BootstrapError::Filter(name, _) if name == "meshward-waf")
        );
    }

    #[test]
    fn manifests_become_filters_in_istio_order_with_host_env_left_to_envoy() {
        let dir =
            std::env::temp_dir().join(format!("meshward-envoy-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["meshward_audit", "meshward_waf", "meshward_tenant"] {
            std::fs::write(dir.join(format!("{name}.wasm")), b"\0asm").unwrap();
        }
        std::fs::write(
            dir.join("a.yaml"),
            r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: meshward-audit}
spec:
  url: oci://ghcr.io/meshward/meshward-audit:0.1.0
  pluginName: audit
  phase: STATS
  failStrategy: FAIL_RELOAD
  pluginConfig: {signing: {activeKey: k1}}
  vmConfig:
    env:
    - {name: MODE, value: strict}
    - {name: MESHWARD_TEST_AUDIT_KEY, valueFrom: HOST}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: meshward-tenant}
spec:
  url: oci://ghcr.io/meshward/meshward-tenant:0.1.0
  pluginName: tenant
  phase: AUTHZ
  priority: 200
"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yml"),
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: meshward-waf}\n\
             spec: {url: 'oci://x/meshward-waf:1', pluginName: waf, phase: AUTHN, failStrategy: FAIL_OPEN}\n",
        )
        .unwrap();
        let ctx = ManifestContext {
            wasm_dir: Some(dir.clone()),
            host_env: vec![("MESHWARD_TEST_AUDIT_KEY".into(), "s3cret".into())],
        };
        let filters = filters_from_manifests(std::slice::from_ref(&dir), &ctx).unwrap();
        let order: Vec<(&str, &str)> = filters
            .iter()
            .map(|f| (f.name.as_str(), f.root_id.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("meshward-waf", "waf"),
                ("meshward-tenant", "tenant"),
                ("meshward-audit", "audit")
            ]
        );
        let audit = &filters[2];
        assert_eq!(audit.configuration, r#"{"signing":{"activeKey":"k1"}}"#);
        assert_eq!(audit.fail_strategy, FailStrategy::FailReload);
        assert_eq!(audit.env.get("MODE").map(String::as_str), Some("strict"));
        assert_eq!(audit.host_env_keys, ["MESHWARD_TEST_AUDIT_KEY"]);
        assert!(
            !audit.env.contains_key("MESHWARD_TEST_AUDIT_KEY"),
            "a HOST secret must not be written into the bootstrap"
        );
        assert!(audit.wasm.is_absolute());
        assert_eq!(filters[0].fail_strategy, FailStrategy::FailOpen);

        std::fs::remove_file(dir.join("meshward_tenant.wasm")).unwrap();
        let err = filters_from_manifests(std::slice::from_ref(&dir), &ctx).unwrap_err();
        assert!(format!("{err:#}").contains("meshward-tenant"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clusters_named_in_plugin_config_are_found() {
        let mut f = filter("meshward-audit", "audit");
        f.configuration = r#"{"collector":{"cluster":"audit-collector","path":"/v1"},
            "global":{"rateLimitService":{"grpcCluster":"rls"}},"sinks":[{"cluster":"audit-collector"}],
            "clusterless":"x","cluster":7}"#
            .into();
        assert_eq!(referenced_clusters(&f), ["audit-collector", "rls"]);
        f.configuration = "not json".into();
        assert!(referenced_clusters(&f).is_empty());
    }
}
