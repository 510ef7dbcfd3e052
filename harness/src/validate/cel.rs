//! The CEL rules (`x-kubernetes-validations`) of the WasmPlugin CRD, as Rust.
//!
//! A general CEL interpreter is out of scope: each rule that Istio's CRD carries
//! is implemented here and looked up by its exact text (whitespace-normalised).
//! A rule this table does not know is reported as an error of the document,
//! never skipped, and a test fails when the CRD gains one.
//!
//! The rules of `wasmplugins.extensions.istio.io` (v1alpha1), where they sit:
//!
//! | schema node | rule | message |
//! | --- | --- | --- |
//! | `spec` | `(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1` | only one of targetRefs or selector can be set |
//! | `spec.selector.matchLabels` | `self.all(key, !key.contains("*"))` | wildcard not allowed in label key match |
//! | `spec.selector.matchLabels` | `self.all(key, key.size() != 0)` | key must not be empty |
//! | `spec.selector.matchLabels[*]` | `!self.contains("*")` | wildcard not allowed in label value match |
//! | `spec.targetRef.namespace`, `spec.targetRefs[*].namespace` | `self.size() == 0` | cross namespace referencing is not currently supported |
//! | `spec.url` | `isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])` | url must have schema one of [http, https, file, oci] |
//! | `spec.vmConfig.env[*]` | `(has(self.valueFrom) ? self.valueFrom : "") != "HOST" \|\| !has(self.value)` | value may only be set when valueFrom is INLINE |

use super::gourl;
use serde_json::Value;

/// What evaluating a rule gave: CEL's `true`, `false`, or an evaluation error.
pub type RuleResult = Result<bool, String>;

type RuleFn = fn(&Value) -> RuleResult;

/// Every rule this validator implements, by its text.
const RULES: &[(&str, RuleFn)] = &[
    (
        r#"(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1"#,
        at_most_one_target,
    ),
    (r#"self.all(key, !key.contains("*"))"#, no_wildcard_in_keys),
    (r#"self.all(key, key.size() != 0)"#, no_empty_keys),
    (r#"!self.contains("*")"#, no_wildcard_in_string),
    (r#"self.size() == 0"#, empty_string),
    (
        r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"#,
        url_has_known_scheme,
    ),
    (
        r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"#,
        value_only_when_inline,
    ),
];

/// The rule text with its whitespace runs folded to one space, as YAML folding
/// may have split it over lines.
pub fn normalise(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The implementation of `rule`, if this validator knows it.
pub fn lookup(rule: &str) -> Option<RuleFn> {
    let rule = normalise(rule);
    RULES
        .iter()
        .find(|(text, _)| normalise(text) == rule)
        .map(|(_, f)| *f)
}

/// CEL's `has(self.f)` on an object: the field is present.
fn has(v: &Value, field: &str) -> bool {
    v.get(field).is_some_and(|f| !f.is_null())
}

fn at_most_one_target(v: &Value) -> RuleResult {
    let n = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|f| has(v, f))
        .count();
    Ok(n <= 1)
}

fn keys(v: &Value) -> Result<impl Iterator<Item = &String>, String> {
    v.as_object()
        .map(|m| m.keys())
        .ok_or_else(|| "no such overload: all() needs a map".to_string())
}

fn no_wildcard_in_keys(v: &Value) -> RuleResult {
    Ok(keys(v)?.all(|k| !k.contains('*')))
}

fn no_empty_keys(v: &Value) -> RuleResult {
    Ok(keys(v)?.all(|k| !k.is_empty()))
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| "no such overload: a string is expected".to_string())
}

fn no_wildcard_in_string(v: &Value) -> RuleResult {
    Ok(!string(v)?.contains('*'))
}

fn empty_string(v: &Value) -> RuleResult {
    Ok(string(v)?.is_empty())
}

const URL_SCHEMES: [&str; 5] = ["", "http", "https", "oci", "file"];

fn url_has_known_scheme(v: &Value) -> RuleResult {
    let s = string(v)?;
    // The ternary evaluates only one branch; `&&` short-circuits on `false`.
    if gourl::parse_request_uri(s).is_ok() {
        let url = gourl::cel_url(s).map_err(|e| format!("URL parse error: {e}"))?;
        Ok(URL_SCHEMES.contains(&url.scheme.as_str()))
    } else {
        let prefixed = format!("http://{s}");
        if gourl::parse_request_uri(&prefixed).is_err() {
            return Ok(false);
        }
        let url = gourl::cel_url(&prefixed).map_err(|e| format!("URL parse error: {e}"))?;
        Ok(URL_SCHEMES.contains(&url.scheme.as_str()))
    }
}

fn value_only_when_inline(v: &Value) -> RuleResult {
    let value_from = match v.get("valueFrom") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) | None => "",
        Some(_) => return Err("no such overload: valueFrom is not a string".into()),
    };
    Ok(value_from != "HOST" || !has(v, "value"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(rule: &str, v: Value) -> RuleResult {
        lookup(rule).expect("rule is known")(&v)
    }

    #[test]
    fn rule_text_is_matched_across_yaml_line_folding() {
        let folded = "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0)\n  + (has(self.targetRefs) ? 1 : 0) <= 1";
        assert!(lookup(folded).is_some());
        assert!(lookup("self.size() < 3").is_none());
    }

    #[test]
    fn selector_and_target_refs_are_exclusive() {
        let r = RULES[0].0;
        assert_eq!(eval(r, json!({"selector": {}})), Ok(true));
        assert_eq!(
            eval(r, json!({"selector": {}, "targetRefs": []})),
            Ok(false)
        );
        assert_eq!(
            eval(r, json!({"targetRef": {}, "targetRefs": []})),
            Ok(false)
        );
        assert_eq!(eval(r, json!({})), Ok(true));
    }

    #[test]
    fn url_without_scheme_is_read_as_http_and_unknown_schemes_fail() {
        let r = RULES[5].0;
        assert_eq!(eval(r, json!("test")), Ok(true));
        assert_eq!(eval(r, json!("ghcr.io/meshward/meshward-waf")), Ok(true));
        // Go reads `registry.local:` as a scheme: without `oci://` a host:port is refused.
        assert_eq!(
            eval(r, json!("registry.local:5000/meshward-waf:1")),
            Ok(false)
        );
        assert_eq!(eval(r, json!("oci://ghcr.io/a/b:1")), Ok(true));
        assert_eq!(eval(r, json!("fake://example.com")), Ok(false));
        assert_eq!(eval(r, json!("#%blah$#@")), Ok(false));
    }

    #[test]
    fn host_env_cannot_carry_a_value() {
        let r = RULES[6].0;
        assert_eq!(eval(r, json!({"name": "a", "valueFrom": "HOST"})), Ok(true));
        assert_eq!(
            eval(r, json!({"name": "a", "valueFrom": "HOST", "value": "v"})),
            Ok(false)
        );
        assert_eq!(eval(r, json!({"name": "a", "value": "v"})), Ok(true));
    }

    #[test]
    fn label_wildcards_and_empty_keys_fail() {
        assert_eq!(eval(RULES[1].0, json!({"istio*": "x"})), Ok(false));
        assert_eq!(eval(RULES[2].0, json!({"": "x"})), Ok(false));
        assert_eq!(eval(RULES[3].0, json!("bar*")), Ok(false));
        assert_eq!(eval(RULES[4].0, json!("other")), Ok(false));
        assert_eq!(eval(RULES[4].0, json!("")), Ok(true));
    }
}
