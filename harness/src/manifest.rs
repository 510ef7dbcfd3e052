//! Plugins as Istio describes them: `WasmPlugin` manifests, read into
//! [`PluginSpec`]s and ordered as Istio orders them in Envoy's filter chain.

use anyhow::{anyhow, bail, Context as _};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Istio's `PluginPhase`: where in the chain a plugin is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    Authn,
    Authz,
    Stats,
    #[default]
    #[serde(alias = "UNSPECIFIED_PHASE")]
    Unspecified,
}

/// Istio's `FailStrategy`: what happens to requests once a plugin's VM has failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailStrategy {
    /// 503 local reply with details `wasm_fail_stream` (Istio's default).
    #[default]
    FailClose,
    /// The plugin is skipped.
    FailOpen,
    /// A fresh VM handles new requests.
    FailReload,
}

/// One plugin of the chain: what Envoy gets from a `WasmPlugin`.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// `metadata.name` of the WasmPlugin (the harness names plugins by it in outcomes).
    pub name: String,
    /// `pluginName`: Envoy's `root_id`.
    pub root_id: String,
    pub wasm: PathBuf,
    /// `pluginConfig` as JSON bytes (PLUGIN_CONFIGURATION).
    pub configuration: Vec<u8>,
    /// VM_CONFIGURATION bytes (Istio sends none).
    pub vm_configuration: Vec<u8>,
    /// `vmConfig.env`, resolved: the VM's WASI environment.
    pub env: Vec<(String, String)>,
    /// Shared data and queues are per `vm_id`; Istio sets none.
    pub vm_id: String,
    pub phase: Phase,
    pub priority: Option<i64>,
    pub fail_strategy: FailStrategy,
}

impl PluginSpec {
    /// A plugin whose name and root id are both `name`, with an empty config.
    pub fn new(name: &str, wasm: impl Into<PathBuf>) -> Self {
        PluginSpec {
            name: name.to_string(),
            root_id: name.to_string(),
            wasm: wasm.into(),
            configuration: Vec::new(),
            vm_configuration: Vec::new(),
            env: Vec::new(),
            vm_id: String::new(),
            phase: Phase::Unspecified,
            priority: None,
            fail_strategy: FailStrategy::FailClose,
        }
    }

    pub fn root_id(mut self, root_id: &str) -> Self {
        self.root_id = root_id.to_string();
        self
    }

    pub fn config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.configuration = bytes.into();
        self
    }

    pub fn config_json(self, value: serde_json::Value) -> Self {
        let bytes = value.to_string().into_bytes();
        self.config(bytes)
    }

    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.vm_configuration = bytes.into();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn vm_id(mut self, vm_id: &str) -> Self {
        self.vm_id = vm_id.to_string();
        self
    }

    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = Some(priority);
        self
    }

    pub fn fail_strategy(mut self, strategy: FailStrategy) -> Self {
        self.fail_strategy = strategy;
        self
    }
}

/// Orders plugins as Istio does: by phase (AUTHN, AUTHZ, STATS, unspecified),
/// then by priority descending, with an unset priority last; ties by name.
pub fn istio_order(plugins: &mut [PluginSpec]) {
    plugins.sort_by(|a, b| {
        a.phase
            .cmp(&b.phase)
            .then_with(|| match (a.priority, b.priority) {
                (Some(x), Some(y)) => y.cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Where `oci://` images and missing files are found, and values for `HOST` env.
#[derive(Debug, Clone, Default)]
pub struct ManifestContext {
    /// Directory of the built `.wasm` files; `oci://…/meshward-<name>[:tag]` maps to
    /// `<wasm_dir>/meshward_<name>.wasm`. Default: `$MESHWARD_WASM_DIR`, else
    /// `target/wasm32-wasip1/release` under the workspace.
    pub wasm_dir: Option<PathBuf>,
    /// Values for `vmConfig.env` entries with `valueFrom: HOST` (Envoy reads its own environment).
    pub host_env: Vec<(String, String)>,
}

/// The default directory of the built filters.
pub fn default_wasm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHWARD_WASM_DIR") {
        return PathBuf::from(dir);
    }
    // harness/ sits in the workspace root; fall back to the current directory.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let candidate = workspace.join("target/wasm32-wasip1/release");
    if candidate.is_dir() {
        candidate
    } else {
        PathBuf::from("target/wasm32-wasip1/release")
    }
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    url: String,
    #[serde(default)]
    plugin_name: Option<String>,
    #[serde(default)]
    plugin_config: Option<serde_json::Value>,
    #[serde(default)]
    phase: Option<Phase>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    fail_strategy: Option<FailStrategy>,
    #[serde(default)]
    vm_config: Option<VmConfig>,
    #[serde(default, rename = "type")]
    plugin_type: Option<String>,
}

#[derive(Deserialize)]
struct VmConfig {
    #[serde(default)]
    env: Vec<EnvVar>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_from: Option<String>,
}

/// Reads every `WasmPlugin` in the given files or directories (`*.yaml`/`*.yml`,
/// not recursive; multi-document files included; other kinds skipped) and returns
/// them in Istio's order.
pub fn load_manifests(paths: &[PathBuf], ctx: &ManifestContext) -> anyhow::Result<Vec<PluginSpec>> {
    let files = manifest_files(paths)?;
    let mut plugins = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        plugins.extend(
            parse_manifests(&text, file.parent().unwrap_or(Path::new(".")), ctx)
                .with_context(|| format!("in {}", file.display()))?,
        );
    }
    istio_order(&mut plugins);
    Ok(plugins)
}

/// The YAML files named by `paths`: files as given, directories expanded one
/// level to their `*.yaml`/`*.yml` files, sorted.
pub fn manifest_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Parses the `WasmPlugin` documents of one YAML text; relative `file://`
/// paths are resolved against `base`.
pub fn parse_manifests(
    text: &str,
    base: &Path,
    ctx: &ManifestContext,
) -> anyhow::Result<Vec<PluginSpec>> {
    let mut plugins = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let doc: Document = serde_yaml::from_value(value)?;
        if doc.kind != "WasmPlugin" {
            continue;
        }
        let spec = doc
            .spec
            .ok_or_else(|| anyhow!("WasmPlugin {} has no spec", doc.metadata.name))?;
        if let Some(t) = &spec.plugin_type {
            if t != "HTTP" && t != "UNSPECIFIED_PLUGIN_TYPE" {
                bail!(
                    "WasmPlugin {}: type {t} is not an HTTP plugin",
                    doc.metadata.name
                );
            }
        }
        let wasm = resolve_url(&spec.url, base, ctx)
            .with_context(|| format!("WasmPlugin {}", doc.metadata.name))?;
        let configuration = match &spec.plugin_config {
            None => Vec::new(),
            Some(v) => serde_json::to_vec(v)?,
        };
        let mut env = Vec::new();
        for var in spec.vm_config.map(|v| v.env).unwrap_or_default() {
            match var.value_from.as_deref().unwrap_or("INLINE") {
                "INLINE" => env.push((var.name, var.value.unwrap_or_default())),
                "HOST" => {
                    if let Some((_, v)) = ctx.host_env.iter().find(|(k, _)| *k == var.name) {
                        env.push((var.name, v.clone()));
                    } else if let Ok(v) = std::env::var(&var.name) {
                        env.push((var.name, v));
                    }
                }
                other => bail!("env {}: unknown valueFrom {other}", var.name),
            }
        }
        let name = doc.metadata.name;
        plugins.push(PluginSpec {
            root_id: spec.plugin_name.unwrap_or_else(|| name.clone()),
            name,
            wasm,
            configuration,
            vm_configuration: Vec::new(),
            env,
            vm_id: String::new(),
            phase: spec.phase.unwrap_or_default(),
            priority: spec.priority,
            fail_strategy: spec.fail_strategy.unwrap_or_default(),
        });
    }
    Ok(plugins)
}

/// Maps a WasmPlugin `url` to a local `.wasm` file.
pub fn resolve_url(url: &str, base: &Path, ctx: &ManifestContext) -> anyhow::Result<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        let path = PathBuf::from(path);
        return Ok(if path.is_absolute() {
            path
        } else {
            base.join(path)
        });
    }
    // Istio's default scheme is oci:// when none is given.
    let image = url.strip_prefix("oci://").unwrap_or(url);
    if url.starts_with("http://") || url.starts_with("https://") {
        bail!("url {url}: the harness loads file:// and oci:// (mapped to local builds) only");
    }
    let repo = image.split('@').next().unwrap_or(image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let name = last.split(':').next().unwrap_or(last);
    if name.is_empty() {
        bail!("url {url}: no image name");
    }
    let dir = ctx.wasm_dir.clone().unwrap_or_else(default_wasm_dir);
    Ok(dir.join(format!("{}.wasm", name.replace('-', "_"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, phase: Phase, priority: Option<i64>) -> PluginSpec {
        let mut s = PluginSpec::new(name, "x.wasm").phase(phase);
        s.priority = priority;
        s
    }

    #[test]
    fn istio_orders_by_phase_then_priority_descending_unset_last() {
        let mut plugins = vec![
            spec("stats", Phase::Stats, Some(100)),
            spec("unset", Phase::Authz, None),
            spec("low", Phase::Authz, Some(1)),
            spec("none", Phase::Unspecified, Some(1000)),
            spec("high", Phase::Authz, Some(50)),
            spec("waf", Phase::Authn, Some(-5)),
        ];
        istio_order(&mut plugins);
        let names: Vec<_> = plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["waf", "high", "low", "unset", "stats", "none"]);
    }

    #[test]
    fn oci_urls_map_to_local_builds() {
        let ctx = ManifestContext {
            wasm_dir: Some(PathBuf::from("/w")),
            ..Default::default()
        };
        let base = Path::new("/m");
        assert_eq!(
            resolve_url("oci://ghcr.io/meshward/meshward-tenant:0.1.0", base, &ctx).unwrap(),
            PathBuf::from("/w/meshward_tenant.wasm")
        );
        assert_eq!(
            resolve_url("registry:5000/meshward-audit@sha256:ab", base, &ctx).unwrap(),
            PathBuf::from("/w/meshward_audit.wasm")
        );
        assert_eq!(
            resolve_url("file://plugins/a.wasm", base, &ctx).unwrap(),
            PathBuf::from("/m/plugins/a.wasm")
        );
        assert!(resolve_url("https://x/y.wasm", base, &ctx).is_err());
    }

    #[test]
    fn manifest_fields_become_plugin_spec() {
        let yaml = r#"
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: meshward-audit}
spec:
  url: file:///tmp/audit.wasm
  pluginName: audit
  phase: STATS
  priority: 10
  failStrategy: FAIL_OPEN
  pluginConfig: {signing: {activeKey: k1}}
  vmConfig:
    env:
    - {name: MODE, value: strict}
    - {name: AUDIT_KEY, valueFrom: HOST}
"#;
        let ctx = ManifestContext {
            host_env: vec![("AUDIT_KEY".into(), "s3cret".into())],
            ..Default::default()
        };
        let plugins = parse_manifests(yaml, Path::new("/"), &ctx).unwrap();
        assert_eq!(plugins.len(), 1);
        let p = &plugins[0];
        assert_eq!(
            (p.name.as_str(), p.root_id.as_str()),
            ("meshward-audit", "audit")
        );
        assert_eq!(p.phase, Phase::Stats);
        assert_eq!(p.priority, Some(10));
        assert_eq!(p.fail_strategy, FailStrategy::FailOpen);
        assert_eq!(p.configuration, br#"{"signing":{"activeKey":"k1"}}"#);
        assert_eq!(
            p.env,
            vec![
                ("MODE".to_string(), "strict".to_string()),
                ("AUDIT_KEY".to_string(), "s3cret".to_string())
            ]
        );
    }
}
