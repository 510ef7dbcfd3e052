//! The subset of kustomize that meshward's manifests use, so `meshward validate`
//! can check an overlay's *output* without the kustomize binary.
//!
//! Supported: `resources` (files and kustomization directories), `namespace`,
//! `namePrefix`, `nameSuffix`, `labels` (metadata only), `commonAnnotations`,
//! and `patches` that are strategic-merge patches (for custom resources such as
//! WasmPlugin kustomize merges them as JSON merge patches: maps merge, lists are
//! replaced, `null` deletes), from `path` or inline `patch`, with an optional
//! `target` (`group`, `version`, `kind`, `name`, `namespace`; regular
//! expressions as in kustomize); a strategic-merge patch whose body says
//! `$patch: delete` removes the resources it selects. Transformers run in kustomize's order: patches,
//! then namespace, then prefix/suffix, then labels and annotations.
//!
//! Anything else in a kustomization is an error rather than silently ignored,
//! and so is a resource directory that contains the kustomization (kustomize's
//! "cycle detected"). Files outside the kustomization's directory are loaded but
//! noted: plain `kubectl apply -k` refuses them (they need
//! `kustomize build --load-restrictor LoadRestrictionsNone`).

use super::parse_documents;
use anyhow::{anyhow, bail, Context as _};
use regex::Regex;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

const SUPPORTED: [&str; 11] = [
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonAnnotations",
    "patches",
    "sortOptions",
];

pub fn is_kustomization_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| FILE_NAMES.contains(&n))
}

fn kustomization_in(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn load(file: &Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let docs = parse_documents(&text).with_context(|| format!("in {}", file.display()))?;
    match docs.into_iter().next() {
        Some((_, Value::Object(m))) => Ok(m),
        _ => bail!("{}: not a kustomization", file.display()),
    }
}

/// The files a kustomization uses as patches (resolved against its directory).
pub fn patch_files(file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let k = load(file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    Ok(k.get("patches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("path").and_then(Value::as_str))
        .map(|p| dir.join(p))
        .collect())
}

/// What rendering produced: the objects, and notes about how.
#[derive(Debug, Default)]
pub struct Rendered {
    pub objects: Vec<Value>,
    pub notes: Vec<String>,
}

/// Renders the kustomization in `dir`.
pub fn render(dir: &Path) -> anyhow::Result<Rendered> {
    let mut out = Rendered::default();
    let root = dir
        .canonicalize()
        .with_context(|| format!("{}: no such directory", dir.display()))?;
    out.objects = render_at(&root, &mut vec![], &mut out.notes)?;
    Ok(out)
}

fn render_at(
    dir: &Path,
    visiting: &mut Vec<PathBuf>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Value>> {
    for v in visiting.iter() {
        if v.starts_with(dir) {
            bail!(
                "cycle detected: candidate root '{}' contains visited root '{}' (kustomize refuses a base that contains its overlay)",
                dir.display(),
                v.display()
            );
        }
    }
    let file =
        kustomization_in(dir).ok_or_else(|| anyhow!("{}: no kustomization file", dir.display()))?;
    let k = load(&file)?;
    for key in k.keys() {
        if !SUPPORTED.contains(&key.as_str()) {
            bail!(
                "{}: `{key}` is not supported by meshward validate's kustomize subset (supported: {})",
                file.display(),
                SUPPORTED.join(", ")
            );
        }
    }
    visiting.push(dir.to_path_buf());
    let mut objects = Vec::new();
    let mut outside = Vec::new();
    for r in strings(&k, "resources", &file)? {
        if r.contains("://") || r.starts_with("github.com/") {
            bail!("{}: remote resource {r} is not supported", file.display());
        }
        let path = dir.join(&r);
        let path = path
            .canonicalize()
            .with_context(|| format!("{}: resource {r} does not exist", file.display()))?;
        if path.is_dir() {
            objects.extend(render_at(&path, visiting, notes)?);
        } else {
            if !path.starts_with(dir) {
                outside.push(r.clone());
            }
            let text = std::fs::read_to_string(&path)?;
            objects.extend(
                parse_documents(&text)
                    .with_context(|| format!("in {}", path.display()))?
                    .into_iter()
                    .map(|(_, v)| v),
            );
        }
    }
    visiting.pop();
    if !outside.is_empty() {
        notes.push(format!(
            "{} loads {} from outside its directory: render with `--load-restrictor LoadRestrictionsNone` (plain `kubectl apply -k` refuses it)",
            file.file_name().and_then(|n| n.to_str()).unwrap_or("kustomization"),
            outside.join(", ")
        ));
    }

    for (i, p) in k
        .get("patches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        apply_patch(dir, &file, i, p, &mut objects)?;
    }
    if let Some(ns) = k.get("namespace").and_then(Value::as_str) {
        for o in &mut objects {
            meta(o)?.insert("namespace".into(), Value::String(ns.to_string()));
        }
    }
    let prefix = k.get("namePrefix").and_then(Value::as_str).unwrap_or("");
    let suffix = k.get("nameSuffix").and_then(Value::as_str).unwrap_or("");
    if !prefix.is_empty() || !suffix.is_empty() {
        for o in &mut objects {
            let m = meta(o)?;
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
            let renamed = format!("{prefix}{name}{suffix}");
            m.insert("name".into(), Value::String(renamed));
        }
    }
    for l in k
        .get("labels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if l.get("includeSelectors").and_then(Value::as_bool) == Some(true)
            || l.get("includeTemplates").and_then(Value::as_bool) == Some(true)
        {
            bail!(
                "{}: labels with includeSelectors/includeTemplates are not supported",
                file.display()
            );
        }
        let pairs = l
            .get("pairs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for o in &mut objects {
            merge_into(meta(o)?, "labels", &pairs);
        }
    }
    if let Some(a) = k.get("commonAnnotations").and_then(Value::as_object) {
        for o in &mut objects {
            merge_into(meta(o)?, "annotations", a);
        }
    }
    Ok(objects)
}

fn strings(k: &Map<String, Value>, field: &str, file: &Path) -> anyhow::Result<Vec<String>> {
    match k.get(field) {
        None => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("{}: {field} must list strings", file.display()))
            })
            .collect(),
        Some(_) => bail!("{}: {field} must be a list", file.display()),
    }
}

fn meta(o: &mut Value) -> anyhow::Result<&mut Map<String, Value>> {
    let obj = o
        .as_object_mut()
        .ok_or_else(|| anyhow!("a resource is not an object"))?;
    let m = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    m.as_object_mut()
        .ok_or_else(|| anyhow!("metadata is not an object"))
}

fn merge_into(m: &mut Map<String, Value>, field: &str, pairs: &Map<String, Value>) {
    let entry = m.entry(field).or_insert_with(|| Value::Object(Map::new()));
    if let Some(target) = entry.as_object_mut() {
        for (k, v) in pairs {
            target.insert(k.clone(), v.clone());
        }
    }
}

fn apply_patch(
    dir: &Path,
    file: &Path,
    i: usize,
    p: &Value,
    objects: &mut Vec<Value>,
) -> anyhow::Result<()> {
    let what = format!("{}: patches[{i}]", file.display());
    let text = match (
        p.get("path").and_then(Value::as_str),
        p.get("patch").and_then(Value::as_str),
    ) {
        (Some(path), None) => std::fs::read_to_string(dir.join(path))
            .with_context(|| format!("{what}: reading {path}"))?,
        (None, Some(inline)) => inline.to_string(),
        _ => bail!("{what}: needs exactly one of path or patch"),
    };
    let docs = parse_documents(&text).with_context(|| format!("{what}: not YAML"))?;
    let [(_, patch)] = docs.as_slice() else {
        bail!("{what}: a patch must be one document");
    };
    if patch.is_array() {
        bail!(
            "{what}: JSON 6902 patches are not supported by meshward validate's kustomize subset"
        );
    }
    let target = p.get("target");
    let selector = |o: &Value| -> anyhow::Result<bool> {
        match target {
            Some(t) => matches_target(t, o),
            None => Ok(same_id(patch, o)),
        }
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        let before = objects.len();
        let mut keep = Vec::with_capacity(before);
        for o in objects.drain(..) {
            if !selector(&o)? {
                keep.push(o);
            }
        }
        *objects = keep;
        if objects.len() == before {
            bail!("{what}: matches no resource");
        }
        return Ok(());
    }
    let mut hits = 0;
    for o in objects.iter_mut() {
        if selector(o)? {
            let mut body = patch.clone();
            if target.is_some() {
                // With a target, the patch's own name is a placeholder.
                if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("name");
                    m.remove("namespace");
                }
            }
            merge_patch(o, &body);
            hits += 1;
        }
    }
    if hits == 0 {
        bail!("{what}: matches no resource");
    }
    Ok(())
}

fn field<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn same_id(patch: &Value, o: &Value) -> bool {
    field(patch, "/kind") == field(o, "/kind")
        && field(patch, "/metadata/name") == field(o, "/metadata/name")
        && (field(patch, "/metadata/namespace").is_empty()
            || field(patch, "/metadata/namespace") == field(o, "/metadata/namespace"))
}

fn matches_target(t: &Value, o: &Value) -> anyhow::Result<bool> {
    let (group, version) = match field(o, "/apiVersion").split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", field(o, "/apiVersion")),
    };
    let checks = [
        ("group", group),
        ("version", version),
        ("kind", field(o, "/kind")),
        ("name", field(o, "/metadata/name")),
        ("namespace", field(o, "/metadata/namespace")),
    ];
    if let Some(obj) = t.as_object() {
        for k in obj.keys() {
            if !checks.iter().any(|(c, _)| c == k) {
                bail!("patch target field `{k}` is not supported");
            }
        }
    }
    for (key, actual) in checks {
        if let Some(want) = t.get(key).and_then(Value::as_str) {
            let re = Regex::new(&format!("^(?:{want})$"))
                .with_context(|| format!("patch target {key}: {want}"))?;
            if !re.is_match(actual) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::yaml_to_json;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_maps_replaces_lists_and_deletes_nulls() {
        let mut t = json!({"spec": {"a": 1, "list": [1, 2], "gone": true}});
        merge_patch(
            &mut t,
            &json!({"spec": {"b": 2, "list": [3], "gone": null}}),
        );
        assert_eq!(t, json!({"spec": {"a": 1, "b": 2, "list": [3]}}));
    }

    #[test]
    fn yaml_to_json_is_used_for_documents() {
        let docs = parse_documents("a: 1\n---\n---\nb: [x]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[1].1,
            yaml_to_json(&serde_yaml::from_str("b: [x]").unwrap())
        );
    }
}
