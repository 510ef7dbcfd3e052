//! Canonical JSON: compact, object keys sorted by their UTF-8 bytes, strings
//! escaped as serde_json escapes them. A record's hash and signature cover
//! the canonical form of the record without its `hash` and `sig` fields, so a
//! collector that re-orders keys or re-escapes strings does not break them,
//! and any change of content does.

use serde_json::Value;

pub(crate) fn to_canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write(&mut out, value);
    out
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            // Scalars: serde_json's own compact form (cannot fail for a Value).
            if serde_json::to_writer(&mut *out, value).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map order depends on a cargo
            // feature (`preserve_order`) that another crate may turn on.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, &Value::String(key.clone()));
                out.push(b':');
                write(out, item);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level_and_output_is_compact() {
        let v: Value = serde_json::from_str(
            r#"{ "b": 1, "a": {"z": [3, {"y": null, "x": true}], "m": "\u00e9\"" } }"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(to_canonical(&v)).unwrap(),
            "{\"a\":{\"m\":\"\u{e9}\\\"\",\"z\":[3,{\"x\":true,\"y\":null}]},\"b\":1}"
        );
    }
}
