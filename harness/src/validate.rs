//! Checks Istio `WasmPlugin` manifests before a cluster sees them: against
//! Istio's CRD (OpenAPI v3 schema and its CEL rules) and, for meshward's own
//! filters, the `pluginConfig` against the filter's configuration parser — the
//! same code `on_configure` runs.
//!
//! Kustomizations are rendered by a small built-in subset of kustomize
//! ([`kustomize`]) and the rendered WasmPlugins are validated; patch files are
//! checked as part of that rendering. There is no cluster and no admission
//! webhook here: Istio's own webhook checks a few more things (e.g. which kinds a
//! `targetRef` may name) that this validator does not.
//!
//! ```no_run
//! use meshward_harness::validate::{Crd, Options, Validator};
//! let crd = Crd::load(&meshward_harness::validate::default_crd_path())?;
//! let validator = Validator::new(crd, Options::default());
//! for report in validator.validate_paths(&["wasmplugins".into()])? {
//!     println!("{report}");
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod cel;
pub mod gourl;
pub mod kustomize;
pub mod schema;

use anyhow::{anyhow, bail, Context as _};
use meshward_shared::config::ConfigError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Checks one filter's `pluginConfig` (JSON bytes, as Envoy hands them to
/// `on_configure`) with the filter's own parser.
pub type ConfigCheck = fn(&[u8]) -> Result<(), ConfigError>;

/// meshward's filters by name (`pluginName`, and `meshward-<name>` images), with
/// the parser that checks their `pluginConfig`: the filter's own, natively linked
/// (for the waf that loads every SecLang directive set, CRS included).
/// `None`: a filter that takes no configuration.
pub const FILTERS: &[(&str, Option<ConfigCheck>)] = &[
    ("waf", Some(meshward_waf::validate_config)),
    (
        "tenant",
        Some(|b| meshward_tenant::config::Settings::parse(b).map(|_| ())),
    ),
    (
        "ratelimit",
        Some(|b| meshward_ratelimit::config::Config::parse(b).map(|_| ())),
    ),
    ("audit", Some(meshward_audit::config::check)),
];

/// The config check of a meshward filter: `None` for an unknown name, `Some(None)`
/// for a filter that takes no configuration.
pub fn filter_config_check(filter: &str) -> Option<Option<ConfigCheck>> {
    FILTERS.iter().find(|(n, _)| *n == filter).map(|(_, c)| *c)
}

/// `../shared/istio/wasmplugin-crd.yaml` from the repository root, or under
/// `$MESHWARD_SHARED_DIR`.
pub fn default_crd_path() -> PathBuf {
    shared_dir().join("istio/wasmplugin-crd.yaml")
}

/// The reference folder beside the checkout (`$MESHWARD_SHARED_DIR` overrides).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("MESHWARD_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}

/// The parts of a CustomResourceDefinition that validation needs.
#[derive(Debug, Clone)]
pub struct Crd {
    pub group: String,
    pub kind: String,
    /// `(version, openAPIV3Schema)` of each served version.
    pub versions: Vec<(String, Value)>,
}

impl Crd {
    pub fn load(path: &Path) -> anyhow::Result<Crd> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the CRD {}", path.display()))?;
        Crd::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Crd> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
        let doc = yaml_to_json(&doc);
        let spec = doc.get("spec").ok_or_else(|| anyhow!("no spec"))?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let group = s(spec.get("group")).ok_or_else(|| anyhow!("no spec.group"))?;
        let kind = s(spec.pointer("/names/kind")).ok_or_else(|| anyhow!("no spec.names.kind"))?;
        let mut versions = Vec::new();
        for v in spec
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if v.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let name = s(v.get("name")).ok_or_else(|| anyhow!("a version without name"))?;
            let schema = v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .ok_or_else(|| anyhow!("version {name} has no openAPIV3Schema"))?;
            versions.push((name, schema));
        }
        if versions.is_empty() {
            bail!("no served version");
        }
        Ok(Crd {
            group,
            kind,
            versions,
        })
    }

    /// Every CEL rule of every served version: `(version, schema path, rule text)`.
    pub fn cel_rules(&self) -> Vec<(String, String, String)> {
        fn collect(
            node: &Value,
            path: &str,
            version: &str,
            out: &mut Vec<(String, String, String)>,
        ) {
            let Some(obj) = node.as_object() else { return };
            for rule in obj
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
                out.push((version.to_string(), path.to_string(), text.to_string()));
            }
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    collect(v, &schema::child(path, k), version, out);
                }
            }
            if let Some(items) = obj.get("items") {
                collect(items, &format!("{path}[*]"), version, out);
            }
            if let Some(add) = obj.get("additionalProperties") {
                collect(add, &format!("{path}[*]"), version, out);
            }
        }
        let mut out = Vec::new();
        for (version, schema) in &self.versions {
            collect(schema, "", version, &mut out);
        }
        out
    }

    fn schema_for(&self, api_version: &str) -> Option<&Value> {
        let (group, version) = api_version.split_once('/')?;
        if group != self.group {
            return None;
        }
        self.versions
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, s)| s)
    }
}

/// What to check beyond the CRD.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// An `oci://` or `http(s)://` module must be pinned by `sha256` (for release overlays).
    pub require_digests: bool,
    /// Read Istio's corpus convention: a document with a top-level `_err` must fail
    /// with that text (and is then reported OK); `_err` is not a field of the object.
    pub expect_errors: bool,
}

/// The verdict on one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid; with notes (e.g. a pluginConfig that no parser checked).
    Ok(Vec<String>),
    /// Not a WasmPlugin, or a patch checked where its kustomization renders it.
    Skipped(String),
    Invalid(Vec<String>),
}

/// One document of one file (or of a kustomization's rendering).
#[derive(Debug, Clone)]
pub struct DocReport {
    /// `file#n` (n from 1), or `dir (rendered)` for a kustomization's output.
    pub source: String,
    /// `WasmPlugin/<namespace>/<name>` or the document's kind.
    pub object: String,
    pub verdict: Verdict,
}

impl DocReport {
    pub fn is_error(&self) -> bool {
        matches!(self.verdict, Verdict::Invalid(_))
    }

    pub fn errors(&self) -> &[String] {
        match &self.verdict {
            Verdict::Invalid(e) => e,
            _ => &[],
        }
    }
}

impl fmt::Display for DocReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.source, self.object)?;
        match &self.verdict {
            Verdict::Ok(notes) if notes.is_empty() => write!(f, "OK"),
            Verdict::Ok(notes) => write!(f, "OK ({})", notes.join("; ")),
            Verdict::Skipped(why) => write!(f, "skipped: {why}"),
            Verdict::Invalid(errs) => write!(f, "{}", errs.join("; ")),
        }
    }
}

/// Validates manifests against one CRD.
pub struct Validator {
    crd: Crd,
    opts: Options,
    walker: schema::Walker,
    /// Config checks that replace [`FILTERS`]' entries (by filter name).
    checks: Vec<(String, ConfigCheck)>,
}

impl Validator {
    pub fn new(crd: Crd, opts: Options) -> Self {
        Validator {
            crd,
            opts,
            walker: schema::Walker::new(),
            checks: Vec::new(),
        }
    }

    /// Checks `filter`'s `pluginConfig` with `check` instead of the built-in registry.
    pub fn with_config_check(mut self, filter: &str, check: ConfigCheck) -> Self {
        self.checks.push((filter.to_string(), check));
        self
    }

    /// Errors and notes of one WasmPlugin object (already known to be of the CRD's kind).
    pub fn check_object(&self, doc: &Value) -> (Vec<String>, Vec<String>) {
        let mut errs = Vec::new();
        let mut notes = Vec::new();
        let Some(obj) = doc.as_object() else {
            return (vec!["the document is not an object".into()], notes);
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(schema) = self.crd.schema_for(api_version) else {
            let served: Vec<String> = self
                .crd
                .versions
                .iter()
                .map(|(v, _)| format!("\"{}/{v}\"", self.crd.group))
                .collect();
            errs.push(format!(
                "apiVersion: Unsupported value: \"{api_version}\": supported values: {}",
                served.join(", ")
            ));
            return (errs, notes);
        };
        check_metadata(obj.get("metadata"), &mut errs);
        // apiVersion, kind and metadata are ObjectMeta/TypeMeta, outside the CRD's schema.
        let mut body = obj.clone();
        for k in ["apiVersion", "kind", "metadata"] {
            body.remove(k);
        }
        self.walker
            .walk(schema, &Value::Object(body), "", &mut errs);
        if let Some(spec) = obj.get("spec").filter(|s| s.is_object()) {
            self.check_meshward(spec, &mut errs, &mut notes);
        }
        (errs, notes)
    }

    /// meshward's own checks of a spec: the filter's `pluginConfig`, the pairing
    /// of module and `pluginName`, and (optionally) pinned digests.
    fn check_meshward(&self, spec: &Value, errs: &mut Vec<String>, notes: &mut Vec<String>) {
        let url = spec.get("url").and_then(Value::as_str).unwrap_or_default();
        let plugin_name = spec.get("pluginName").and_then(Value::as_str);
        if self.opts.require_digests {
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("oci");
            let sha = spec
                .get("sha256")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if scheme != "file" && sha.is_empty() {
                errs.push(format!(
                    "spec.sha256: Required value: a {scheme}:// module must be pinned by digest (the OCI manifest digest for oci://) with --require-digests"
                ));
            }
        }
        let Some(filter) = meshward_module(url) else {
            return;
        };
        let registered = filter_config_check(&filter);
        let overridden = self
            .checks
            .iter()
            .find(|(n, _)| *n == filter)
            .map(|(_, c)| *c);
        let Some(check) = registered.map(|c| overridden.or(c)) else {
            errs.push(format!(
                "spec.url: Invalid value: \"{url}\": meshward has no filter named \"{filter}\" (known: {})",
                FILTERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ));
            return;
        };
        if let Some(name) = plugin_name {
            if name != filter {
                errs.push(format!(
                    "spec.pluginName: Invalid value: \"{name}\": the module is meshward-{filter}, whose pluginName is \"{filter}\""
                ));
            }
        }
        let Some(check) = check else {
            notes.push(format!(
                "pluginConfig not checked: meshward-{filter} takes no configuration yet"
            ));
            return;
        };
        let bytes = match spec.get("pluginConfig") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::to_vec(v).unwrap_or_default(),
        };
        if let Err(e) = check(&bytes) {
            let path = match e.path.as_str() {
                "." | "" => "spec.pluginConfig".to_string(),
                p if p.starts_with('[') => format!("spec.pluginConfig{p}"),
                p => format!("spec.pluginConfig.{p}"),
            };
            errs.push(format!("{path}: {} (meshward-{filter} config)", e.reason));
        }
    }

    /// Validates every document of one YAML text.
    pub fn validate_text(&self, source: &str, text: &str) -> Vec<DocReport> {
        let docs = match parse_documents(text) {
            Ok(d) => d,
            Err(e) => {
                return vec![DocReport {
                    source: source.to_string(),
                    object: "-".into(),
                    verdict: Verdict::Invalid(vec![format!("not valid YAML: {e}")]),
                }]
            }
        };
        docs.into_iter()
            .map(|(n, doc)| self.validate_document(&format!("{source}#{n}"), doc))
            .collect()
    }

    /// Validates one document; non-WasmPlugin kinds are skipped with a note.
    pub fn validate_document(&self, source: &str, mut doc: Value) -> DocReport {
        let expected = if self.opts.expect_errors {
            doc.as_object_mut()
                .and_then(|o| o.remove("_err"))
                .and_then(|e| e.as_str().map(str::to_string))
        } else {
            None
        };
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = object_name(&doc);
        if kind != self.crd.kind {
            let what = if kind.is_empty() {
                "no kind".to_string()
            } else {
                format!("kind {kind}")
            };
            return DocReport {
                source: source.to_string(),
                object,
                verdict: Verdict::Skipped(format!("{what}, not a {}", self.crd.kind)),
            };
        }
        let (errs, notes) = self.check_object(&doc);
        let verdict = match expected {
            None if errs.is_empty() => Verdict::Ok(notes),
            None => Verdict::Invalid(errs),
            Some(want) if errs.iter().any(|e| e.contains(&want)) => {
                Verdict::Ok(vec![format!("fails as expected: {}", errs.join("; "))])
            }
            Some(want) if errs.is_empty() => Verdict::Invalid(vec![format!(
                "expected to fail with \"{want}\", but it is valid"
            )]),
            Some(want) => Verdict::Invalid(vec![format!(
                "expected to fail with \"{want}\", but failed with: {}",
                errs.join("; ")
            )]),
        };
        DocReport {
            source: source.to_string(),
            object,
            verdict,
        }
    }

    /// Validates files and directories (searched recursively for `*.yaml` /
    /// `*.yml`). A kustomization is rendered and its output validated; the files
    /// it uses as patches are not validated on their own.
    pub fn validate_paths(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<DocReport>> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                collect_yaml(path, &mut files)?;
            } else if path.exists() {
                files.push(path.clone());
            } else {
                bail!("{}: no such file or directory", path.display());
            }
        }
        let mut patch_of: Vec<(PathBuf, PathBuf)> = Vec::new();
        for file in &files {
            if kustomize::is_kustomization_file(file) {
                for p in kustomize::patch_files(file).unwrap_or_default() {
                    patch_of.push((canonical(&p), file.clone()));
                }
            }
        }
        let mut reports = Vec::new();
        for file in &files {
            let source = file.display().to_string();
            if let Some((_, k)) = patch_of.iter().find(|(p, _)| *p == canonical(file)) {
                reports.push(DocReport {
                    source: format!("{source}#1"),
                    object: "patch".into(),
                    verdict: Verdict::Skipped(format!(
                        "a patch of {}: checked in its rendering",
                        k.display()
                    )),
                });
                continue;
            }
            if kustomize::is_kustomization_file(file) {
                reports.extend(self.validate_kustomization(file));
                continue;
            }
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            reports.extend(self.validate_text(&source, &text));
        }
        Ok(reports)
    }

    /// Renders a kustomization and validates what it produces.
    pub fn validate_kustomization(&self, file: &Path) -> Vec<DocReport> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let source = format!("{} (rendered)", dir.display());
        match kustomize::render(dir) {
            Err(e) => vec![DocReport {
                source,
                object: "Kustomization".into(),
                verdict: Verdict::Invalid(vec![format!("{e:#}")]),
            }],
            Ok(r) if r.objects.is_empty() => vec![DocReport {
                source,
                object: "Kustomization".into(),
                verdict: Verdict::Invalid(vec!["renders no resources".into()]),
            }],
            Ok(r) => {
                let mut reports = vec![DocReport {
                    source: source.clone(),
                    object: "Kustomization".into(),
                    verdict: Verdict::Ok(r.notes),
                }];
                reports.extend(
                    r.objects
                        .into_iter()
                        .map(|o| self.validate_document(&source, o)),
                );
                reports
            }
        }
    }
}

/// `WasmPlugin/<namespace>/<name>` (namespace `-` when unset).
fn object_name(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// The meshward filter a module URL names: `…/meshward-<name>[:tag|@digest]`
/// for images, `…/meshward_<name>.wasm` (or `meshward-<name>.wasm`) for files.
pub fn meshward_module(url: &str) -> Option<String> {
    let path = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.split('@').next().unwrap_or(path);
    let last = path.rsplit('/').next().unwrap_or(path);
    let last = last.split(':').next().unwrap_or(last);
    let last = last.strip_suffix(".wasm").unwrap_or(last);
    let name = last
        .strip_prefix("meshward-")
        .or_else(|| last.strip_prefix("meshward_"))?;
    (!name.is_empty()).then(|| name.to_string())
}

/// ObjectMeta as the API server checks it for a namespaced custom resource.
fn check_metadata(meta: Option<&Value>, errs: &mut Vec<String>) {
    let Some(meta) = meta.and_then(Value::as_object) else {
        errs.push("metadata.name: Required value: name or generateName is required".into());
        return;
    };
    match meta.get("name") {
        Some(Value::String(name)) => {
            if let Some(why) = dns1123_subdomain(name) {
                errs.push(format!("metadata.name: Invalid value: \"{name}\": {why}"));
            }
        }
        Some(other) => errs.push(format!(
            "metadata.name: Invalid value: {other}: metadata.name must be a string"
        )),
        None if meta.contains_key("generateName") => {}
        None => errs.push("metadata.name: Required value: name or generateName is required".into()),
    }
    if let Some(ns) = meta.get("namespace") {
        match ns.as_str() {
            Some(ns) if dns1123_label(ns) => {}
            _ => errs.push(format!(
                "metadata.namespace: Invalid value: {ns}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            )),
        }
    }
}

fn dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if s.split('.').all(dns1123_label) {
        None
    } else {
        Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into())
    }
}

/// The non-empty documents of a multi-document YAML text, numbered from 1.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<(usize, Value)>> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        out.push((i + 1, yaml_to_json(&value)));
    }
    Ok(out)
}

/// YAML → JSON as the API server reads a manifest (non-string keys become strings).
pub fn yaml_to_json(v: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .map(|s| s.trim_end().to_string())
                            .unwrap_or_default(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(&t.value),
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    Ok(())
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Rules of the CRD this validator does not implement (must be empty).
pub fn unknown_cel_rules(crd: &Crd) -> Vec<String> {
    let mut seen = BTreeSet::new();
    for (version, path, rule) in crd.cel_rules() {
        if cel::lookup(&rule).is_none() {
            seen.insert(format!("{version} {path}: {}", cel::normalise(&rule)));
        }
    }
    seen.into_iter().collect()
}
