//! `pluginConfig`: SecLang directives, named directive sets chosen per
//! authority, and data files. Every set is loaded at `on_configure`; a load
//! error rejects the configuration with the file, line and construct.

use crate::ruleset::RuleSet;
use crate::sources::Library;
use meshward_shared::config::{parse_json, ConfigError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

/// SecLang text: one string (may hold many lines) or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Directives {
    One(String),
    Many(Vec<String>),
}

impl Directives {
    fn chunks(&self) -> Vec<String> {
        match self {
            Directives::One(text) => vec![text.clone()],
            Directives::Many(lines) => lines.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    /// The default set. Absent: `Include @recommended` + `Include @meshward-baseline`.
    #[serde(default)]
    directives: Option<Directives>,
    /// Further named sets, selected by `perAuthority` or `defaultSet`.
    /// (coraza-proxy-wasm's names are accepted too, so its configs carry over.)
    #[serde(default, alias = "directives_map")]
    directive_sets: BTreeMap<String, Directives>,
    /// Which named set serves authorities `perAuthority` does not list.
    #[serde(default, alias = "default_directives")]
    default_set: Option<String>,
    /// Authority (host, `*.suffix` allowed, port ignored) → set name.
    #[serde(default, alias = "per_authority_directives")]
    per_authority: BTreeMap<String, String>,
    /// Data files for `@pmFromFile` / `Include`, by name.
    #[serde(default)]
    files: BTreeMap<String, String>,
}

/// The loaded configuration: one rule set per directive set.
#[derive(Debug)]
pub struct Settings {
    default: Rc<RuleSet>,
    per_authority: Vec<(String, Rc<RuleSet>)>,
}

const DEFAULT_DIRECTIVES: &str = "Include @recommended\nInclude @meshward-baseline\n";

impl Settings {
    pub fn parse(bytes: &[u8]) -> Result<Settings, ConfigError> {
        let raw: Raw = parse_json(bytes)?;
        let library = Library { files: &raw.files };
        let load = |path: String, directives: &Directives| -> Result<Rc<RuleSet>, ConfigError> {
            let chunks: Vec<(String, String)> = directives
                .chunks()
                .into_iter()
                .enumerate()
                .map(|(i, text)| (format!("{path}[{i}]"), text))
                .collect();
            RuleSet::load_all(&chunks, &library)
                .map(Rc::new)
                .map_err(|e| ConfigError::new(path, e.to_string()))
        };
        let mut sets = BTreeMap::new();
        for (name, directives) in &raw.directive_sets {
            sets.insert(
                name.clone(),
                load(format!("directiveSets.{name}"), directives)?,
            );
        }
        let default = match (&raw.default_set, &raw.directives) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "defaultSet",
                    "give either `directives` or `defaultSet`, not both",
                ))
            }
            (Some(name), None) => sets.get(name).cloned().ok_or_else(|| {
                ConfigError::new("defaultSet", format!("no directive set named `{name}`"))
            })?,
            (None, Some(directives)) => load("directives".into(), directives)?,
            (None, None) => load(
                "directives".into(),
                &Directives::One(DEFAULT_DIRECTIVES.to_string()),
            )?,
        };
        let mut per_authority = Vec::new();
        for (authority, name) in &raw.per_authority {
            let set = sets.get(name).cloned().ok_or_else(|| {
                ConfigError::new(
                    format!("perAuthority.{authority}"),
                    format!("no directive set named `{name}`"),
                )
            })?;
            if authority.is_empty() {
                return Err(ConfigError::new("perAuthority", "empty authority"));
            }
            per_authority.push((authority.to_ascii_lowercase(), set));
        }
        // Exact names before wildcards, longer wildcards first.
        per_authority.sort_by_key(|(a, _)| (a.starts_with("*."), std::cmp::Reverse(a.len())));
        Ok(Settings {
            default,
            per_authority,
        })
    }

    /// The rule set for a request's `:authority`.
    pub fn for_authority(&self, authority: &str) -> &Rc<RuleSet> {
        if self.per_authority.is_empty() {
            return &self.default;
        }
        let host = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(host, _)| host)
            .to_ascii_lowercase();
        for (pattern, set) in &self.per_authority {
            let hit = match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.ends_with('.') && head.len() > 1),
                None => *pattern == host,
            };
            if hit {
                return set;
            }
        }
        &self.default
    }

    pub fn default_set(&self) -> &Rc<RuleSet> {
        &self.default
    }

    /// Notes about directives accepted without effect, from every set.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.default.notes.clone();
        for (_, set) in &self.per_authority {
            for note in &set.notes {
                if !notes.contains(note) {
                    notes.push(note.clone());
                }
            }
        }
        notes
    }
}
