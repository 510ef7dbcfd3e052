//! Platform overrides in go-ftw's format (`--overrides`, like CRS's
//! `tests/regression/nginx-overrides.yaml`; schema `waf-platform-overrides-schema-v2.3.0.json`):
//!
//! ```yaml
//! version: "v0.0.0"
//! meta:
//!   engine: "meshward-waf"
//!   platform: "envoy"
//!   annotations:
//!     - purpose: "CRS test suite"
//! test_overrides:
//!   - rule_id: 920100
//!     test_ids: [4]          # absent or empty: every test of the rule
//!     reason: "why, always"  # required, not empty
//!     output:                # replaces the expected output of the test's stages
//!       status: 400
//!   - rule_id: 920430
//!     test_ids: [8]
//!     reason: "…"            # no output: the test is ignored (not run, not in the pass rate)
//! ```
//!
//! `stage_ids` (0-based) limit a replacement to some stages. Where go-ftw applies nothing for
//! an entry without `test_ids` (it loops over the list), this runner applies it to the whole
//! rule, as the schema describes.

use super::schema::Output;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesFile {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub meta: Option<OverridesMeta>,
    #[serde(default)]
    pub test_overrides: Vec<Entry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverridesMeta {
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    /// A map, or (as CRS's files write it) a list of single-entry maps.
    #[serde(default)]
    pub annotations: Option<serde_yaml::Value>,
}

/// One override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub rule_id: u64,
    #[serde(default)]
    pub test_ids: Vec<u64>,
    #[serde(default)]
    pub stage_ids: Vec<usize>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub retry_once: Option<bool>,
    #[serde(default)]
    pub output: Option<Output>,
}

impl Entry {
    pub fn matches(&self, rule_id: u64, test_id: u64) -> bool {
        self.rule_id == rule_id && (self.test_ids.is_empty() || self.test_ids.contains(&test_id))
    }
}

/// What the overrides make of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Run the test as written.
    AsWritten,
    /// Do not run it; it is listed, not counted.
    Ignored { reason: String },
    /// Run it with these outputs for its stages (one per stage), and this reason.
    Replaced {
        outputs: Vec<Output>,
        reason: String,
    },
}

/// A validated overrides file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub entries: Vec<Entry>,
}

impl Overrides {
    /// Parses and validates: every entry has a reason, and an `output` that expects something.
    pub fn parse(text: &str) -> Result<Overrides, String> {
        let file: OverridesFile = if text.trim().is_empty() {
            OverridesFile::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        for (i, entry) in file.test_overrides.iter().enumerate() {
            let at = format!("test_overrides[{i}] (rule {})", entry.rule_id);
            if entry.reason.trim().is_empty() {
                return Err(format!("{at}: reason: must say why (it is empty)"));
            }
            if entry.output.as_ref().is_some_and(|o| !o.expects_anything()) {
                return Err(format!(
                    "{at}: output: expects nothing, which would pass the test whatever happens; \
                     leave output out to ignore the test"
                ));
            }
        }
        Ok(Overrides {
            entries: file.test_overrides,
        })
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Overrides> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Overrides::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// How to run a test whose stages expect `outputs`.
    pub fn resolve(&self, rule_id: u64, test_id: u64, outputs: &[Output]) -> Resolution {
        let matching: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.matches(rule_id, test_id))
            .collect();
        if let Some(ignore) = matching.iter().find(|e| e.output.is_none()) {
            return Resolution::Ignored {
                reason: ignore.reason.trim().to_string(),
            };
        }
        if matching.is_empty() {
            return Resolution::AsWritten;
        }
        let mut outputs = outputs.to_vec();
        for entry in &matching {
            for (stage, output) in outputs.iter_mut().enumerate() {
                if entry.stage_ids.is_empty() || entry.stage_ids.contains(&stage) {
                    if let Some(replacement) = &entry.output {
                        *output = replacement.clone();
                    }
                    if let Some(retry) = entry.retry_once {
                        output.retry_once = Some(retry);
                    }
                }
            }
        }
        let reason = matching
            .iter()
            .map(|e| e.reason.trim())
            .collect::<Vec<_>>()
            .join("; ");
        Resolution::Replaced { outputs, reason }
    }

    /// Entries that match none of the given `(rule_id, test_id)` pairs: stale overrides.
    pub fn unused<'a>(&'a self, tests: &[(u64, u64)]) -> Vec<&'a Entry> {
        self.entries
            .iter()
            .filter(|e| !tests.iter().any(|(r, t)| e.matches(*r, *t)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
version: "v0.0.0"
meta:
  engine: "meshward-waf"
  platform: "envoy"
  annotations:
    - purpose: "CRS test suite"
test_overrides:
  - rule_id: 920100
    test_ids: [4, 5]
    reason: 'Envoy answers 400'
    output:
      status: 400
  - rule_id: 920430
    test_ids: [8]
    reason: "not reachable"
  - rule_id: 934100
    reason: "whole rule replaced"
    stage_ids: [1]
    output:
      log:
        no_expect_ids: [934100]
"#;

    #[test]
    fn an_entry_with_output_replaces_the_expectation() {
        let o = Overrides::parse(FILE).unwrap();
        let written = vec![Output {
            status: vec![200],
            ..Default::default()
        }];
        match o.resolve(920100, 5, &written) {
            Resolution::Replaced { outputs, reason } => {
                assert_eq!(outputs[0].status, vec![400]);
                assert_eq!(reason, "Envoy answers 400");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.resolve(920100, 6, &written), Resolution::AsWritten);
    }

    #[test]
    fn an_entry_without_output_ignores_the_test() {
        let o = Overrides::parse(FILE).unwrap();
        assert_eq!(
            o.resolve(920430, 8, &[Output::default()]),
            Resolution::Ignored {
                reason: "not reachable".into()
            }
        );
    }

    #[test]
    fn an_entry_without_test_ids_covers_the_rule_and_stage_ids_limit_it() {
        let o = Overrides::parse(FILE).unwrap();
        let written = vec![Output::default(), Output::default()];
        let Resolution::Replaced { outputs, .. } = o.resolve(934100, 77, &written) else {
            panic!()
        };
        assert_eq!(outputs[0], Output::default());
        assert_eq!(outputs[1].log.no_expect_ids, vec![934100]);
    }

    #[test]
    fn every_entry_needs_a_reason() {
        let err = Overrides::parse(
            "test_overrides:\n  - rule_id: 1\n    test_ids: [1]\n    reason: ' '\n",
        )
        .unwrap_err();
        assert!(err.contains("test_overrides[0] (rule 1): reason"), "{err}");
        let err = Overrides::parse("test_overrides:\n  - rule_id: 1\n").unwrap_err();
        assert!(err.contains("reason"), "{err}");
    }

    #[test]
    fn an_output_that_expects_nothing_is_refused() {
        let err =
            Overrides::parse("test_overrides:\n  - rule_id: 1\n    reason: r\n    output: {}\n")
                .unwrap_err();
        assert!(err.contains("expects nothing"), "{err}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(
            Overrides::parse("test_overrides:\n  - rule_id: 1\n    reason: r\n    bogus: 1\n")
                .is_err()
        );
        assert!(Overrides::parse("").unwrap().entries.is_empty());
        assert!(Overrides::parse("test_overrides: []\n")
            .unwrap()
            .entries
            .is_empty());
    }

    #[test]
    fn entries_matching_no_test_are_reported() {
        let o = Overrides::parse(FILE).unwrap();
        let unused: Vec<u64> = o
            .unused(&[(920100, 4), (934100, 1)])
            .iter()
            .map(|e| e.rule_id)
            .collect();
        assert_eq!(unused, vec![920430]);
    }
}
