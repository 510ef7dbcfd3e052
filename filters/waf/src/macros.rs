//! Macro strings: `%{tx.score}`, `%{MATCHED_VAR}`, `%{request_headers.host}`
//! inside messages, `setvar` values and operator arguments. Parsed once at
//! load; expanded per transaction by [`crate::transaction`].

use crate::variable::{Selector, Target, Var};

/// One piece of a macro string, resolved at load so that expanding it per
/// request is a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `%{rule.id}`, `%{rule.msg}`, …: a field of the running rule (the key
    /// lower-cased).
    Rule(String),
    /// `%{tx.score}`, `%{MATCHED_VAR}`, `%{request_headers.host}`: the first
    /// value of a variable.
    Var(Target),
    /// `%{NAME}` that names no variable: expands to nothing, as in ModSecurity.
    Unknown(String),
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
                Some(dot) => (&inner[..dot], Some(&inner[dot + 1..])),
                None => (inner, None),
            };
            parts.push(resolve(name.trim(), key));
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
        self.parts.iter().any(|p| !matches!(p, Part::Text(_)))
    }
}

fn resolve(name: &str, key: Option<&str>) -> Part {
    if name.eq_ignore_ascii_case("RULE") {
        return Part::Rule(key.unwrap_or_default().to_ascii_lowercase());
    }
    let Some(var) = Var::from_name(&name.to_ascii_uppercase()) else {
        return Part::Unknown(name.to_string());
    };
    let selector = match key {
        Some(k) if var.is_collection() => Selector::Key(k.to_ascii_lowercase()),
        _ => Selector::All,
    };
    Part::Var(Target {
        var,
        selector,
        count: false,
        exclude: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_variables_with_keys() {
        let m = MacroString::parse("Score: %{tx.Anomaly_Score} from %{MATCHED_VAR_NAME}!");
        let var = |name: &str, key: Option<&str>| {
            Part::Var(Target {
                var: Var::from_name(name).unwrap(),
                selector: key.map_or(Selector::All, |k| Selector::Key(k.into())),
                count: false,
                exclude: false,
            })
        };
        assert_eq!(
            m.parts,
            vec![
                Part::Text("Score: ".into()),
                var("TX", Some("anomaly_score")),
                Part::Text(" from ".into()),
                var("MATCHED_VAR_NAME", None),
                Part::Text("!".into()),
            ]
        );
        assert!(m.has_macros());
        assert_eq!(
            MacroString::parse("%{rule.ID} %{nosuch}").parts,
            vec![
                Part::Rule("id".into()),
                Part::Text(" ".into()),
                Part::Unknown("nosuch".into())
            ]
        );
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
        assert!(
            matches!(&m.parts[..], [Part::Var(t)] if matches!(&t.selector, Selector::Key(k) if k == "x.y")),
            "{m:?}"
        );
    }
}
