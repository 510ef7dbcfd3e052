//! The one configuration error type every filter reports, and the JSON parser
//! that produces it with the path of the offending field.

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration error: where in the `pluginConfig` it is, and why.
///
/// Displays as `rules[2].limit.burst: must be at least 1 (got 0)`; a filter
/// logs it as `meshward-<filter>: invalid config: <error>` and rejects the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path into the configuration, `.` for the document itself.
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The same error, one level deeper: `rules[2]` + `limit` → `rules[2].limit`.
    pub fn within(self, parent: &str) -> Self {
        let path = match self.path.as_str() {
            "." | "" => parent.to_string(),
            p if p.starts_with('[') => format!("{parent}{p}"),
            p => format!("{parent}.{p}"),
        };
        ConfigError { path, ..self }
    }

    /// The line a filter logs before it rejects its configuration.
    pub fn log_line(&self, filter: &str) -> String {
        format!("meshward-{filter}: invalid config: {self}")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Parses a `pluginConfig` JSON document into `T`.
///
/// An empty document is parsed as `{}`, as Istio sends no bytes for a
/// WasmPlugin without `pluginConfig`. Errors carry the path of the field
/// (`rules[0].limit.burst`) so the log line points at the mistake.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        ConfigError::new(path, strip_location(&inner.to_string()))
    })?;
    de.end()
        .map_err(|err| ConfigError::new(".", strip_location(&err.to_string())))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; the path already says where.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Limit {
        #[allow(dead_code)]
        burst: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Doc {
        #[allow(dead_code)]
        #[serde(default)]
        rules: Vec<Limit>,
    }

    #[test]
    fn error_names_the_path_of_the_bad_field() {
        let err = parse_json::<Doc>(br#"{"rules":[{"burst":1},{"burst":-1}]}"#).unwrap_err();
        assert_eq!(err.path, "rules[1].burst");
        assert!(err.reason.contains("invalid value"), "{err}");
        assert_eq!(
            err.log_line("ratelimit"),
            format!(
                "meshward-ratelimit: invalid config: rules[1].burst: {}",
                err.reason
            )
        );
    }

    #[test]
    fn unknown_field_is_an_error_that_names_it() {
        let err = parse_json::<Doc>(br#"{"rulez":[]}"#).unwrap_err();
        assert!(err.reason.contains("unknown field `rulez`"), "{err}");
    }

    #[test]
    fn empty_config_is_an_empty_object() {
        assert!(parse_json::<Doc>(b"").unwrap().rules.is_empty());
        assert!(parse_json::<Doc>(b"  \n").unwrap().rules.is_empty());
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        assert!(parse_json::<Doc>(br#"{} x"#).is_err());
    }

    #[test]
    fn within_prefixes_the_path() {
        let e = ConfigError::new("burst", "must be at least 1 (got 0)").within("rules[2].limit");
        assert_eq!(
            e.to_string(),
            "rules[2].limit.burst: must be at least 1 (got 0)"
        );
        let e = ConfigError::new("[0]", "bad").within("rules");
        assert_eq!(e.path, "rules[0]");
    }
}
