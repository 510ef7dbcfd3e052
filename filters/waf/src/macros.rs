//! Macro strings: `%{tx.score}`, `%{MATCHED_VAR}`, `%{request_headers.host}`
//! inside messages, `setvar` values and operator arguments. Parsed once at
//! load; expanded per transaction by [`crate::transaction`].

/// One piece of a macro string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `%{NAME}` or `%{NAME.key}`; `name` upper-cased, `key` as written.
    Var {
        name: String,
        key: Option<String>,
    },
}

/// A string that may contain macros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    pub raw: String,
    pub parts: Vec<Part>,
}

impl MacroString {
    pub fn parse(raw: &str) -> MacroString {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let inner = &rest[start + 2..start + 2 + len];
            let (name, key) = match inner.find('.') {
                Some(dot) => (&inner[..dot], Some(inner[dot + 1..].to_string())),
                None => (inner, None),
            };
            parts.push(Part::Var {
                name: name.trim().to_ascii_uppercase(),
                key,
            });
            rest = &rest[start + 2 + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        MacroString {
            raw: raw.to_string(),
            parts,
        }
    }

    /// True when expansion can change the text.
    pub fn has_macros(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_variables_with_keys() {
        let m = MacroString::parse("Score: %{tx.anomaly_score} from %{MATCHED_VAR_NAME}!");
        assert_eq!(
            m.parts,
            vec![
                Part::Text("Score: ".into()),
                Part::Var {
                    name: "TX".into(),
                    key: Some("anomaly_score".into())
                },
                Part::Text(" from ".into()),
                Part::Var {
                    name: "MATCHED_VAR_NAME".into(),
                    key: None
                },
                Part::Text("!".into()),
            ]
        );
        assert!(m.has_macros());
    }

    #[test]
    fn an_unclosed_macro_is_plain_text() {
        let m = MacroString::parse("100%{ tx");
        assert!(!m.has_macros());
        assert_eq!(m.parts, vec![Part::Text("100%{ tx".into())]);
    }

    #[test]
    fn keys_keep_dots_after_the_first() {
        let m = MacroString::parse("%{request_headers.x.y}");
        assert_eq!(
            m.parts,
            vec![Part::Var {
                name: "REQUEST_HEADERS".into(),
                key: Some("x.y".into())
            }]
        );
    }
}
