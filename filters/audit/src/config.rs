//! The `pluginConfig` of the audit filter: typed with serde, validated once in
//! `on_configure` into [`Settings`], which the request path only reads.
//!
//! Every field, its default and an example are in `filters/audit/README.md`.

use crate::redact::{MaskPattern, Redactor};
use meshward_shared::audit::{env_var_for_key, KeyError, SigningKey};
use meshward_shared::config::{parse_json, ConfigError};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Every incoming request header that starts with this prefix is removed;
    /// the audit headers are `<prefix>audit` and `<prefix>audit-signature`.
    #[serde(default = "default_prefix")]
    pub header_prefix: String,
    #[serde(default)]
    pub signing: SigningConfig,
    #[serde(default)]
    pub redaction: RedactionConfig,
    #[serde(default)]
    pub record: RecordConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Batched OTLP/HTTP export; none when absent.
    #[serde(default)]
    pub export: Option<ExportConfig>,
}

fn default_prefix() -> String {
    "x-meshward-".into()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigningConfig {
    /// Off only when explicitly `false`: then headers and records are unsigned.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The key id headers and records are signed with; must be in `keys`.
    #[serde(default)]
    pub active_key_id: Option<String>,
    /// Every key id in rotation, and where its secret comes from.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            enabled: true,
            active_key_id: None,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyConfig {
    pub id: String,
    /// The VM environment variable holding the secret; default
    /// `MESHWARD_AUDIT_KEY_<ID>`.
    #[serde(default)]
    pub env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionConfig {
    /// Headers (request and response) whose values are never recorded.
    #[serde(default = "default_sensitive_headers")]
    pub headers: Vec<String>,
    /// Values matching these are masked in recorded paths and header values.
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            headers: default_sensitive_headers(),
            patterns: Vec::new(),
        }
    }
}

fn default_sensitive_headers() -> Vec<String> {
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub regex: String,
    /// What replaces a match; default `[masked:<name>]`.
    #[serde(default)]
    pub replacement: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordConfig {
    #[serde(default = "yes")]
    pub request_headers: bool,
    #[serde(default = "yes")]
    pub response_headers: bool,
    /// Recorded header values and paths longer than this are cut.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            request_headers: true,
            response_headers: true,
            max_value_bytes: default_max_value_bytes(),
        }
    }
}

fn default_max_value_bytes() -> usize {
    1024
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// Write each record to Envoy's log (info level) after `meshward-audit-record: `.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { enabled: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportConfig {
    /// The Envoy cluster of the collector, e.g.
    /// `outbound|4318||otel-collector.shared.svc.cluster.local`.
    pub cluster: String,
    /// `:authority` of the export requests; default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_export_path")]
    pub path: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Records waiting (including the batch in flight) beyond this are
    /// dropped and counted in `meshward_audit.export_dropped`.
    #[serde(default = "default_queue_limit")]
    pub queue_limit: usize,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Upper bound of the retry back-off after failures.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// OTLP resource attribute `service.name`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_export_path() -> String {
    "/v1/logs".into()
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_batch_size() -> usize {
    256
}
fn default_queue_limit() -> usize {
    4096
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_service_name() -> String {
    "meshward-audit".into()
}
fn yes() -> bool {
    true
}

/// The validated configuration.
#[derive(Debug)]
pub struct Settings {
    pub audit_header: String,
    pub signature_header: String,
    pub header_prefix: String,
    /// `None` when signing is turned off.
    pub signing_key: Option<SigningKey>,
    pub redactor: Redactor,
    pub record_request_headers: bool,
    pub record_response_headers: bool,
    pub max_value_bytes: usize,
    pub log_records: bool,
    pub export: Option<ExportSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    pub batch_size: usize,
    pub queue_limit: usize,
    pub flush_interval: Duration,
    pub max_backoff: Duration,
    pub service_name: String,
}

/// Parses and validates `pluginConfig`; `env` reads the VM environment
/// (`std::env::var` in the filter, a map in tests).
pub fn load(bytes: &[u8], env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let config: Config = parse_json(bytes)?;
    validate(config, env)
}

/// Checks a `pluginConfig` without the VM environment (`meshward validate`):
/// every key's secret is taken as present and long enough, everything else is
/// checked exactly as `on_configure` checks it.
pub fn check(bytes: &[u8]) -> Result<(), ConfigError> {
    load(bytes, |_| {
        Some("x".repeat(meshward_shared::audit::MIN_SECRET_BYTES))
    })
    .map(|_| ())
}

fn validate(config: Config, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let prefix = config.header_prefix;
    let valid_prefix = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_prefix {
        return Err(ConfigError::new(
            "headerPrefix",
            format!("must be 1 to 64 characters of [a-z0-9-] (got {prefix:?})"),
        ));
    }
    if matches!(
        prefix.as_str(),
        "x-" | "x-envoy-" | "x-request-" | "x-forwarded-"
    ) {
        return Err(ConfigError::new(
            "headerPrefix",
            format!("{prefix:?} would remove headers that are not the audit filter's"),
        ));
    }

    let signing_key = signing_key(&config.signing, env).map_err(|e| e.within("signing"))?;

    let mut sensitive = Vec::with_capacity(config.redaction.headers.len());
    for (i, h) in config.redaction.headers.iter().enumerate() {
        if h.is_empty() || h.bytes().any(|b| b.is_ascii_whitespace() || b == b':') {
            return Err(ConfigError::new(
                format!("redaction.headers[{i}]"),
                format!("not a header name: {h:?}"),
            ));
        }
        sensitive.push(h.to_ascii_lowercase());
    }
    let mut patterns = Vec::with_capacity(config.redaction.patterns.len());
    for (i, p) in config.redaction.patterns.iter().enumerate() {
        let path = format!("redaction.patterns[{i}]");
        if p.name.is_empty() {
            return Err(ConfigError::new(
                format!("{path}.name"),
                "must not be empty",
            ));
        }
        let replacement = p
            .replacement
            .clone()
            .unwrap_or_else(|| format!("[masked:{}]", p.name));
        let pattern = MaskPattern::new(&p.name, &p.regex, replacement)
            .map_err(|why| ConfigError::new(format!("{path}.regex"), why))?;
        patterns.push(pattern);
    }

    if config.record.max_value_bytes < 16 {
        return Err(ConfigError::new(
            "record.maxValueBytes",
            format!(
                "must be at least 16 (got {})",
                config.record.max_value_bytes
            ),
        ));
    }

    let export = match config.export {
        None => None,
        Some(e) => Some(export_settings(e).map_err(|err| err.within("export"))?),
    };

    Ok(Settings {
        audit_header: format!("{prefix}audit"),
        signature_header: format!("{prefix}audit-signature"),
        header_prefix: prefix,
        signing_key,
        redactor: Redactor::new(sensitive, patterns),
        record_request_headers: config.record.request_headers,
        record_response_headers: config.record.response_headers,
        max_value_bytes: config.record.max_value_bytes,
        log_records: config.log.enabled,
        export,
    })
}

fn signing_key(
    signing: &SigningConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<SigningKey>, ConfigError> {
    if !signing.enabled {
        if signing.active_key_id.is_some() || !signing.keys.is_empty() {
            return Err(ConfigError::new(
                "enabled",
                "signing is off but keys are configured; remove them or turn signing on",
            ));
        }
        return Ok(None);
    }
    let active = signing.active_key_id.as_deref().ok_or_else(|| {
        ConfigError::new(
            "activeKeyId",
            "required while signing is on (set signing.enabled: false to turn signing off)",
        )
    })?;
    if !signing.keys.iter().any(|k| k.id == active) {
        return Err(ConfigError::new(
            "activeKeyId",
            format!("{active:?} is not one of signing.keys"),
        ));
    }
    let mut key = None;
    for (i, k) in signing.keys.iter().enumerate() {
        let path = format!("keys[{i}]");
        if signing.keys[..i].iter().any(|other| other.id == k.id) {
            return Err(ConfigError::new(
                format!("{path}.id"),
                KeyError::Duplicate(k.id.clone()).to_string(),
            ));
        }
        let var = k.env.clone().unwrap_or_else(|| env_var_for_key(&k.id));
        // Every key in rotation must be present: a key that is configured but
        // missing is a deployment mistake that would surface at the next
        // rotation, so it is reported now. The secret never enters an error.
        let secret = env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
            ConfigError::new(
                &path,
                KeyError::MissingEnv {
                    id: k.id.clone(),
                    var: var.clone(),
                }
                .to_string(),
            )
        })?;
        let signing_key = SigningKey::new(&k.id, secret.as_bytes())
            .map_err(|e| ConfigError::new(&path, e.to_string()))?;
        if k.id == active {
            key = Some(signing_key);
        }
    }
    Ok(key)
}

fn export_settings(e: ExportConfig) -> Result<ExportSettings, ConfigError> {
    if e.cluster.is_empty() {
        return Err(ConfigError::new("cluster", "must not be empty"));
    }
    if !e.path.starts_with('/') {
        return Err(ConfigError::new(
            "path",
            format!("must start with '/' (got {:?})", e.path),
        ));
    }
    let positive = |name: &str, v: u64| {
        if v == 0 {
            Err(ConfigError::new(name, "must be at least 1 (got 0)"))
        } else {
            Ok(())
        }
    };
    positive("timeoutMs", e.timeout_ms)?;
    positive("batchSize", e.batch_size as u64)?;
    positive("flushIntervalMs", e.flush_interval_ms)?;
    positive("maxBackoffMs", e.max_backoff_ms)?;
    if e.queue_limit < e.batch_size {
        return Err(ConfigError::new(
            "queueLimit",
            format!(
                "must be at least batchSize ({}) (got {})",
                e.batch_size, e.queue_limit
            ),
        ));
    }
    if e.queue_limit > 1_000_000 {
        return Err(ConfigError::new(
            "queueLimit",
            format!("must be at most 1000000 (got {})", e.queue_limit),
        ));
    }
    Ok(ExportSettings {
        authority: e.authority.unwrap_or_else(|| e.cluster.clone()),
        cluster: e.cluster,
        path: e.path,
        timeout: Duration::from_millis(e.timeout_ms),
        batch_size: e.batch_size,
        queue_limit: e.queue_limit,
        flush_interval: Duration::from_millis(e.flush_interval_ms),
        max_backoff: Duration::from_millis(e.max_backoff_ms),
        service_name: e.service_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "a-very-secret-key-material";

    fn env(var: &str) -> Option<String> {
        match var {
            "MESHWARD_AUDIT_KEY_K1" | "MESHWARD_AUDIT_KEY_K2" | "CUSTOM" => Some(SECRET.into()),
            "SHORT" => Some("tiny-secret".into()),
            _ => None,
        }
    }

    fn load_json(v: serde_json::Value) -> Result<Settings, ConfigError> {
        load(v.to_string().as_bytes(), env)
    }

    fn signed() -> serde_json::Value {
        json!({"signing": {"activeKeyId": "k1", "keys": [{"id": "k1"}]}})
    }

    #[test]
    fn minimal_signed_config_gets_the_defaults() {
        let s = load_json(signed()).unwrap();
        assert_eq!(s.audit_header, "x-meshward-audit");
        assert_eq!(s.signature_header, "x-meshward-audit-signature");
        assert_eq!(s.signing_key.as_ref().map(|k| k.id()), Some("k1"));
        assert!(s.log_records);
        assert!(s.export.is_none());
        assert_eq!(s.max_value_bytes, 1024);
    }

    #[test]
    fn empty_config_is_an_error_because_signing_needs_a_key() {
        let err = load(b"", env).unwrap_err();
        assert_eq!(err.path, "signing.activeKeyId");
        assert!(err.reason.contains("signing.enabled: false"), "{err}");
    }

    #[test]
    fn signing_can_be_turned_off_explicitly() {
        let s = load_json(json!({"signing": {"enabled": false}})).unwrap();
        assert!(s.signing_key.is_none());
    }

    #[test]
    fn missing_key_names_the_variable_never_a_secret() {
        let err = load_json(json!({"signing": {"activeKeyId": "k3", "keys": [{"id": "k3"}]}}))
            .unwrap_err();
        assert_eq!(err.path, "signing.keys[0]");
        assert!(err.reason.contains("MESHWARD_AUDIT_KEY_K3"), "{err}");

        let err = load_json(json!({"signing": {"activeKeyId": "k1",
            "keys": [{"id": "k1"}, {"id": "old", "env": "SHORT"}]}}))
        .unwrap_err();
        assert_eq!(err.path, "signing.keys[1]");
        assert!(err.reason.contains("too short"), "{err}");
        assert!(!err.to_string().contains("tiny-secret"));
    }

    #[test]
    fn active_key_must_be_listed_and_ids_unique() {
        let err = load_json(json!({"signing": {"activeKeyId": "k2", "keys": [{"id": "k1"}]}}))
            .unwrap_err();
        assert_eq!(err.path, "signing.activeKeyId");
        let err = load_json(json!({"signing": {"activeKeyId": "k1",
            "keys": [{"id": "k1"}, {"id": "k1", "env": "CUSTOM"}]}}))
        .unwrap_err();
        assert_eq!(err.path, "signing.keys[1].id");
    }

    #[test]
    fn rotation_config_signs_with_the_active_key() {
        let s = load_json(json!({"signing": {"activeKeyId": "k2",
            "keys": [{"id": "k1"}, {"id": "k2"}]}}))
        .unwrap();
        assert_eq!(
            s.signing_key.map(|k| k.id().to_string()).as_deref(),
            Some("k2")
        );
    }

    #[test]
    fn bad_fields_are_reported_with_their_path() {
        let mut rows = Vec::new();
        let mut v = signed();
        v["headerPrefix"] = json!("X-Bad Prefix");
        rows.push((v, "headerPrefix"));
        let mut v = signed();
        v["headerPrefix"] = json!("x-envoy-");
        rows.push((v, "headerPrefix"));
        let mut v = signed();
        v["redaction"] = json!({"patterns": [{"name": "pan", "regex": "(unclosed"}]});
        rows.push((v, "redaction.patterns[0].regex"));
        let mut v = signed();
        v["export"] = json!({"cluster": "c", "batchSize": 0});
        rows.push((v, "export.batchSize"));
        let mut v = signed();
        v["export"] = json!({"cluster": "c", "batchSize": 10, "queueLimit": 5});
        rows.push((v, "export.queueLimit"));
        let mut v = signed();
        v["export"] = json!({"cluster": "c", "path": "v1/logs"});
        rows.push((v, "export.path"));
        let mut v = signed();
        v["record"] = json!({"maxValueBytes": 2});
        rows.push((v, "record.maxValueBytes"));
        let mut v = signed();
        v["exporter"] = json!({});
        rows.push((v, "exporter"));
        for (value, path) in rows {
            let err = load_json(value.clone()).unwrap_err();
            assert_eq!(err.path, path, "{value}: {err}");
        }
    }

    #[test]
    fn check_validates_structure_without_secrets() {
        let v = json!({"signing": {"activeKeyId": "k9", "keys": [{"id": "k9"}]}});
        assert!(check(v.to_string().as_bytes()).is_ok());
        assert_eq!(check(b"{}").unwrap_err().path, "signing.activeKeyId");
    }

    #[test]
    fn export_defaults() {
        let mut v = signed();
        v["export"] = json!({"cluster": "outbound|4318||otel.shared.svc"});
        let e = load_json(v).unwrap().export.unwrap();
        assert_eq!(e.path, "/v1/logs");
        assert_eq!(e.authority, "outbound|4318||otel.shared.svc");
        assert_eq!(e.batch_size, 256);
        assert_eq!(e.queue_limit, 4096);
        assert_eq!(e.timeout, Duration::from_secs(5));
    }
}
