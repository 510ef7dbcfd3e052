//! A small walker for Kubernetes structural OpenAPI v3 schemas, reporting
//! errors in the API server's words (`spec.url: Invalid value: "": spec.url in
//! body should be at least 1 chars long`).
//!
//! It covers what CRDs use: `type` (with `nullable`, `x-kubernetes-int-or-string`),
//! `enum`, `pattern`, `format` (`int32`, `int64`, `date-time`), `minLength` /
//! `maxLength` (in characters), `minimum` / `maximum` (and their exclusive
//! flags), `minItems` / `maxItems`, `minProperties` / `maxProperties`,
//! `required`, `properties`, `additionalProperties`, `items`,
//! `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-list-type` (`map`, `set`)
//! with `x-kubernetes-list-map-keys`, and `x-kubernetes-validations` through
//! [`super::cel`]. Unknown fields are errors, as under the API server's strict
//! field validation (`kubectl apply` is strict by default); without it they are
//! silently pruned, which is worse for a security filter's configuration.

use super::cel;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Walks `value` against `schema`, appending one message per violation.
pub struct Walker {
    /// Compiled `pattern`s by their source: a CRD has a handful, documents many.
    patterns: Mutex<HashMap<String, Result<Regex, String>>>,
}

impl Default for Walker {
    fn default() -> Self {
        Self::new()
    }
}

/// `a` + `.b` as Kubernetes prints field paths (`spec.match[0].ports`).
pub fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// The JSON type of a value, as kube-openapi names it in type errors.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How the API server shows a value after `Invalid value:`.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("\"{}\"", type_name(other)),
    }
}

fn as_u64(schema: &Value, field: &str) -> Option<u64> {
    schema.get(field).and_then(Value::as_u64)
}

fn flag(schema: &Value, field: &str) -> bool {
    schema.get(field).and_then(Value::as_bool).unwrap_or(false)
}

fn is_integral(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

impl Walker {
    pub fn new() -> Self {
        Walker {
            patterns: Mutex::new(HashMap::new()),
        }
    }

    /// Validates `value` at `path` against `schema`.
    pub fn walk(&self, schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>) {
        if value.is_null() && flag(schema, "nullable") {
            return;
        }
        if !self.check_type(schema, value, path, errs) {
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let list: Vec<String> = allowed
                    .iter()
                    .map(|a| match a {
                        Value::String(s) => format!("\"{s}\""),
                        other => other.to_string(),
                    })
                    .collect();
                errs.push(format!(
                    "{path}: Unsupported value: {}: supported values: {}",
                    shown(value),
                    list.join(", ")
                ));
            }
        }
        match value {
            Value::String(s) => self.check_string(schema, s, value, path, errs),
            Value::Number(n) => check_number(schema, n, value, path, errs),
            Value::Array(items) => self.check_array(schema, items, path, errs),
            Value::Object(map) => self.check_object(schema, map, path, errs),
            Value::Bool(_) | Value::Null => {}
        }
        self.check_cel(schema, value, path, errs);
    }

    /// `type`; false when the value has the wrong type (nothing more is checked there).
    fn check_type(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        errs: &mut Vec<String>,
    ) -> bool {
        let int_or_string = flag(schema, "x-kubernetes-int-or-string");
        let want = match schema.get("type").and_then(Value::as_str) {
            Some(t) => t,
            None if int_or_string => {
                let ok = matches!(value, Value::String(_))
                    || matches!(value, Value::Number(n) if is_integral(n));
                if !ok {
                    errs.push(format!(
                        "{path}: Invalid value: {}: {path} in body must be of type integer or string: \"{}\"",
                        shown(value),
                        type_name(value)
                    ));
                }
                return ok;
            }
            // No type (e.g. `x-kubernetes-preserve-unknown-fields` alone): anything goes.
            None => return true,
        };
        let ok = match (want, value) {
            ("object", Value::Object(_))
            | ("array", Value::Array(_))
            | ("string", Value::String(_))
            | ("boolean", Value::Bool(_))
            | ("number", Value::Number(_)) => true,
            ("integer", Value::Number(n)) => is_integral(n),
            _ => false,
        };
        if !ok {
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body must be of type {want}: \"{}\"",
                shown(value),
                type_name(value)
            ));
        }
        ok
    }

    fn check_string(
        &self,
        schema: &Value,
        s: &str,
        value: &Value,
        path: &str,
        errs: &mut Vec<String>,
    ) {
        let chars = s.chars().count() as u64;
        if let Some(min) = as_u64(schema, "minLength") {
            if chars < min {
                errs.push(format!(
                    "{path}: Invalid value: {}: {path} in body should be at least {min} chars long",
                    shown(value)
                ));
            }
        }
        if let Some(max) = as_u64(schema, "maxLength") {
            if chars > max {
                errs.push(format!("{path}: Too long: may not be longer than {max}"));
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match self.regex(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => errs.push(format!(
                    "{path}: Invalid value: {}: {path} in body should match '{pattern}'",
                    shown(value)
                )),
                Err(e) => errs.push(format!(
                    "{path}: Internal error: the schema's pattern '{pattern}' does not compile: {e}"
                )),
            }
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str) {
            if format == "date-time" && !is_rfc3339(s) {
                errs.push(format!(
                    "{path}: Invalid value: {}: {path} in body must be of type date-time: {}",
                    shown(value),
                    shown(value)
                ));
            }
        }
    }

    fn regex(&self, pattern: &str) -> Result<Regex, String> {
        let mut cache = self.patterns.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).map_err(|e| e.to_string()))
            .clone()
    }

    fn check_array(&self, schema: &Value, items: &[Value], path: &str, errs: &mut Vec<String>) {
        let n = items.len() as u64;
        if let Some(min) = as_u64(schema, "minItems") {
            if n < min {
                errs.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should have at least {min} items"
                ));
            }
        }
        if let Some(max) = as_u64(schema, "maxItems") {
            if n > max {
                errs.push(format!(
                    "{path}: Too many: {n}: must have at most {max} items"
                ));
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.walk(item_schema, item, &index(path, i), errs);
            }
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|ks| ks.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut seen: Vec<Map<String, Value>> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Some(obj) = item.as_object() else {
                        continue;
                    };
                    let id: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| obj.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect();
                    if seen.contains(&id) {
                        errs.push(format!(
                            "{}: Duplicate value: {}",
                            index(path, i),
                            Value::Object(id)
                        ));
                    } else {
                        seen.push(id);
                    }
                }
            }
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        errs.push(format!("{}: Duplicate value: {item}", index(path, i)));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        map: &Map<String, Value>,
        path: &str,
        errs: &mut Vec<String>,
    ) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    errs.push(format!("{}: Required value", child(path, r)));
                }
            }
        }
        let n = map.len() as u64;
        if let Some(max) = as_u64(schema, "maxProperties") {
            if n > max {
                errs.push(format!(
                    "{path}: Too many: {n}: must have at most {max} items"
                ));
            }
        }
        if let Some(min) = as_u64(schema, "minProperties") {
            if n < min {
                errs.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should have at least {min} properties"
                ));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
        for (k, v) in map {
            if let Some(s) = properties.and_then(|p| p.get(k)) {
                self.walk(s, v, &child(path, k), errs);
            } else if let Some(s) = additional.filter(|a| a.is_object()) {
                self.walk(s, v, &key(path, k), errs);
            } else if additional.and_then(Value::as_bool) == Some(true) || preserve {
                // Free-form: kept as written (pluginConfig is checked by its filter).
            } else {
                errs.push(format!(
                    "{}: unknown field \"{}\" (not declared in the schema; the API server rejects it under strict field validation and drops it otherwise)",
                    child(path, k),
                    child(path, k)
                ));
            }
        }
    }

    fn check_cel(&self, schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>) {
        let Some(rules) = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
        else {
            return;
        };
        let shown_type = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(type_name(value));
        let shown_path = if path.is_empty() { "<root>" } else { path };
        for rule in rules {
            let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            let message = rule
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("failed rule: {}", cel::normalise(text)));
            match cel::lookup(text) {
                None => errs.push(format!(
                    "{shown_path}: Internal error: CEL rule not implemented by meshward validate (refusing to skip it): {}",
                    cel::normalise(text)
                )),
                Some(f) => match f(value) {
                    Ok(true) => {}
                    Ok(false) => {
                        errs.push(format!("{shown_path}: Invalid value: \"{shown_type}\": {message}"))
                    }
                    Err(e) => errs.push(format!(
                        "{shown_path}: Invalid value: \"{shown_type}\": {message} (the rule did not evaluate: {e})"
                    )),
                },
            }
        }
    }
}

fn check_number(
    schema: &Value,
    n: &serde_json::Number,
    value: &Value,
    path: &str,
    errs: &mut Vec<String>,
) {
    let x = n.as_f64().unwrap_or(f64::NAN);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if x < min || (exclusive && x == min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body should be {op} {}",
                shown(value),
                trim_float(min)
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if x > max || (exclusive && x == max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body should be {op} {}",
                shown(value),
                trim_float(max)
            ));
        }
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i32::MIN as f64, i32::MAX as f64, "int32")),
        Some("int64") => Some((i64::MIN as f64, i64::MAX as f64, "int64")),
        _ => None,
    };
    if let Some((lo, hi, name)) = range {
        if !(lo..=hi).contains(&x) {
            errs.push(format!(
                "{path}: Invalid value: {}: {path} in body must be of type {name}: \"{}\"",
                shown(value),
                n
            ));
        }
    }
}

fn trim_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// RFC 3339 `date-time` (`2026-01-01T00:00:00Z`, fractional seconds and offsets allowed).
fn is_rfc3339(s: &str) -> bool {
    static_regex_rfc3339().is_match(s)
}

fn static_regex_rfc3339() -> &'static Regex {
    use std::sync::OnceLock;
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
            .unwrap_or_else(|_| unreachable!("a fixed, valid pattern"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, value: Value) -> Vec<String> {
        let mut errs = Vec::new();
        Walker::new().walk(&schema, &value, "spec", &mut errs);
        errs
    }

    #[test]
    fn keyword_table() {
        // (label, schema, value, expected substring or "" for valid)
        let rows = [
            (
                "type mismatch",
                json!({"type": "string"}),
                json!(3),
                "spec in body must be of type string: \"integer\"",
            ),
            (
                "null is a type error",
                json!({"type": "object"}),
                json!(null),
                "spec in body must be of type object: \"null\"",
            ),
            (
                "nullable allows null",
                json!({"type": "integer", "nullable": true}),
                json!(null),
                "",
            ),
            (
                "integral float is an integer",
                json!({"type": "integer"}),
                json!(3.0),
                "",
            ),
            (
                "fraction is not an integer",
                json!({"type": "integer"}),
                json!(3.5),
                "must be of type integer",
            ),
            (
                "enum",
                json!({"type": "string", "enum": ["A", "B"]}),
                json!("C"),
                "Unsupported value: \"C\": supported values: \"A\", \"B\"",
            ),
            (
                "minLength",
                json!({"type": "string", "minLength": 1}),
                json!(""),
                "spec in body should be at least 1 chars long",
            ),
            (
                "maxLength counts characters",
                json!({"type": "string", "maxLength": 2}),
                json!("éé"),
                "",
            ),
            (
                "maxLength",
                json!({"type": "string", "maxLength": 2}),
                json!("abc"),
                "Too long: may not be longer than 2",
            ),
            (
                "pattern",
                json!({"type": "string", "pattern": "^a+$"}),
                json!("b"),
                "spec in body should match '^a+$'",
            ),
            (
                "minimum",
                json!({"type": "integer", "minimum": 1}),
                json!(0),
                "should be greater than or equal to 1",
            ),
            (
                "maximum",
                json!({"type": "integer", "maximum": 65535}),
                json!(70000),
                "should be less than or equal to 65535",
            ),
            (
                "int32",
                json!({"type": "integer", "format": "int32"}),
                json!(4294967296u64),
                "must be of type int32",
            ),
            (
                "maxItems",
                json!({"type": "array", "maxItems": 1}),
                json!([1, 2]),
                "Too many: 2: must have at most 1 items",
            ),
            (
                "required",
                json!({"type": "object", "required": ["url"]}),
                json!({}),
                "spec.url: Required value",
            ),
            (
                "unknown field",
                json!({"type": "object", "properties": {}}),
                json!({"x": 1}),
                "spec.x: unknown field",
            ),
            (
                "preserve unknown",
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                json!({"x": 1}),
                "",
            ),
            (
                "additionalProperties path",
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                json!({"k": 1}),
                "spec[k]: Invalid value",
            ),
            (
                "list map duplicate",
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}}),
                json!([{"name": "a"}, {"name": "a"}]),
                "spec[1]: Duplicate value: {\"name\":\"a\"}",
            ),
            (
                "date-time",
                json!({"type": "string", "format": "date-time"}),
                json!("yesterday"),
                "must be of type date-time",
            ),
            (
                "int-or-string",
                json!({"x-kubernetes-int-or-string": true}),
                json!(true),
                "must be of type integer or string",
            ),
        ];
        for (label, schema, value, want) in rows {
            let errs = errors(schema, value);
            if want.is_empty() {
                assert!(errs.is_empty(), "{label}: {errs:?}");
            } else {
                assert!(
                    errs.iter().any(|e| e.contains(want)),
                    "{label}: want {want:?}, got {errs:?}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_cel_rule_is_an_error_not_a_skip() {
        let errs = errors(
            json!({"type": "string", "x-kubernetes-validations": [{"rule": "self.startsWith('x')", "message": "m"}]}),
            json!("y"),
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("CEL rule not implemented"), "{errs:?}");
    }
}
