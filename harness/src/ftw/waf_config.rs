//! The WAF's `pluginConfig` for a CRS regression run: `{"directives": [...], "files": {...}}`,
//! each directive entry a chunk of SecLang text.
//!
//! The chunks, in order:
//! 1. `Include @recommended` — the WAF's built-in engine configuration (ModSecurity's
//!    `modsecurity.conf-recommended`: body access and processors, limits, rules 200000–200007).
//! 2. `Include @crs-setup` — CRS's `crs-setup.conf.example` (embedded in the .wasm), or that file
//!    from `--rules DIR`.
//! 3. [`TEST_SETUP`]: CRS's own test configuration, each line with its source.
//! 4. `Include @owasp_crs/*.conf` — the CRS rules embedded in the .wasm, or each
//!    `DIR/rules/*.conf` (sorted) inline, with every `DIR/rules/*.data` under `files`.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// CRS's test setup, after `crs-setup.conf` and before the rules.
///
/// Sources: the rule CRS's test README asks for (`tests/regression/README.md`, "Requirements":
/// "Add it to crs-setup.conf"), and the environment CRS v4.28.0's CI gives its WAF containers
/// (`tests/docker-compose.yml`, `x-common-env`), which the `owasp/modsecurity-crs` image turns into
/// ModSecurity directives (`src/etc/modsecurity.d/modsecurity.conf` of
/// coreruleset/modsecurity-crs-docker) and `crs-setup.conf` settings
/// (`src/opt/modsecurity/configure-rules.v4.conf`). Values both give agree, except
/// `TOTAL_ARG_LENGTH` (6400 in CI, 64000 in the README: the README's rule runs, as in CI it
/// would run after crs-setup's 900330). `CRS_ENABLE_TEST_MARKER` (rule 999999, which logs
/// go-ftw's `X-CRS-Test` marker requests) is left out: this runner reads each request's own log
/// lines and sends no markers.
pub const TEST_SETUP: &str = r#"# CRS regression test setup.
# tests/docker-compose.yml MODSEC_RULE_ENGINE=DetectionOnly
SecRuleEngine DetectionOnly
# tests/docker-compose.yml MODSEC_RESP_BODY_ACCESS=On
SecResponseBodyAccess On
# tests/docker-compose.yml MODSEC_RESP_BODY_MIMETYPE
SecResponseBodyMimeType text/plain text/html text/xml application/json
# owasp/modsecurity-crs image default MODSEC_RESP_BODY_LIMIT (the recommended file says 524288)
SecResponseBodyLimit 1048576
# tests/regression/README.md, "Requirements": the rule to add to crs-setup.conf
# (BLOCKING_PARANOIA=4, ARG_LENGTH=400, MAX_FILE_SIZE=64100 and COMBINED_FILE_SIZES=65535 of
# tests/docker-compose.yml agree with it).
SecAction "id:900005,\
  phase:1,\
  nolog,\
  pass,\
  ctl:ruleEngine=DetectionOnly,\
  ctl:ruleRemoveById=910000,\
  setvar:tx.blocking_paranoia_level=4,\
  setvar:tx.crs_validate_utf8_encoding=1,\
  setvar:tx.arg_name_length=100,\
  setvar:tx.arg_length=400,\
  setvar:tx.total_arg_length=64000,\
  setvar:tx.max_num_args=255,\
  setvar:tx.max_file_size=64100,\
  setvar:tx.combined_file_sizes=65535"
"#;

/// Where the CRS rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rules {
    /// The copy embedded in the .wasm when it was built (`@crs-setup`, `@owasp_crs/*.conf`).
    Embedded,
    /// A CRS directory: `crs-setup.conf.example`, `rules/*.conf`, `rules/*.data`.
    Dir(PathBuf),
}

/// The `pluginConfig` of a CRS regression run.
pub fn crs_run(rules: &Rules) -> anyhow::Result<serde_json::Value> {
    let mut directives = vec![serde_json::Value::from("Include @recommended")];
    let mut files = serde_json::Map::new();
    match rules {
        Rules::Embedded => {
            directives.push("Include @crs-setup".into());
            directives.push(TEST_SETUP.into());
            directives.push("Include @owasp_crs/*.conf".into());
        }
        Rules::Dir(dir) => {
            directives.push(read(&dir.join("crs-setup.conf.example"))?.into());
            directives.push(TEST_SETUP.into());
            let rules_dir = dir.join("rules");
            for path in sorted_files(&rules_dir, "conf")? {
                directives.push(read(&path)?.into());
            }
            for path in sorted_files(&rules_dir, "data")? {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.insert(name, read(&path)?.into());
            }
        }
    }
    let mut config = serde_json::Map::new();
    config.insert("directives".into(), directives.into());
    if !files.is_empty() {
        config.insert("files".into(), files.into());
    }
    Ok(serde_json::Value::Object(config))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn sorted_files(dir: &Path, extension: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == extension))
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(config: &serde_json::Value) -> Vec<&str> {
        config["directives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_embedded_run_includes_the_built_in_sets_around_the_test_setup() {
        let config = crs_run(&Rules::Embedded).unwrap();
        let directives = directives(&config);
        assert_eq!(
            directives,
            [
                "Include @recommended",
                "Include @crs-setup",
                TEST_SETUP,
                "Include @owasp_crs/*.conf"
            ]
        );
        assert!(config.get("files").is_none());
    }

    #[test]
    fn a_rules_dir_is_inlined_in_order_with_its_data_files() {
        let dir = std::env::temp_dir().join(format!("meshward-ftw-rules-{}", std::process::id()));
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(dir.join("crs-setup.conf.example"), "SETUP").unwrap();
        std::fs::write(rules.join("REQUEST-920-B.conf"), "B").unwrap();
        std::fs::write(rules.join("REQUEST-901-A.conf"), "A").unwrap();
        std::fs::write(rules.join("words.data"), "w1\nw2\n").unwrap();
        std::fs::write(rules.join("notes.txt"), "ignored").unwrap();
        let config = crs_run(&Rules::Dir(dir.clone())).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let directives = directives(&config);
        assert_eq!(
            directives,
            ["Include @recommended", "SETUP", TEST_SETUP, "A", "B"]
        );
        assert_eq!(config["files"]["words.data"], "w1\nw2\n");
        assert_eq!(config["files"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn a_missing_rules_dir_is_an_error_naming_the_file() {
        let err = crs_run(&Rules::Dir("/nonexistent/crs".into())).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/crs/crs-setup.conf.example"));
    }

    #[test]
    fn the_test_setup_sets_paranoia_4_in_detection_only() {
        assert!(TEST_SETUP.contains("setvar:tx.blocking_paranoia_level=4"));
        assert!(TEST_SETUP.contains("ctl:ruleEngine=DetectionOnly"));
        // SecLang has no trailing comments: every comment is a whole line.
        for line in TEST_SETUP.lines() {
            assert!(
                line.starts_with('#') || !line.contains('#'),
                "trailing comment in {line:?}"
            );
        }
    }
}
