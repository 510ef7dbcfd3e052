//! The files a configuration can `Include` without a filesystem: meshward's
//! built-in configuration, OWASP CRS embedded at build time, and data files
//! given in `pluginConfig.files`.

use crate::ruleset::Sources;
use std::borrow::Cow;
use std::collections::BTreeMap;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/crs.rs"));
}

pub use embedded::CRS_VERSION;

/// `Include @recommended`: the engine configuration (body processors, limits).
pub const RECOMMENDED: &str = include_str!("../conf/recommended.conf");
/// `Include @meshward-baseline`: rules that protect without CRS.
pub const BASELINE: &str = include_str!("../conf/baseline.conf");
/// `Include @meshward-grpc`: gRPC and protobuf calls under CRS (headers and
/// path inspected, binary bodies left alone).
pub const GRPC: &str = include_str!("../conf/grpc.conf");

/// Built-in files plus the user's `files`.
pub struct Library<'a> {
    pub files: &'a BTreeMap<String, String>,
}

impl Library<'_> {
    fn crs(&self, name: &str) -> Option<&'static str> {
        embedded::CRS_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
    }
}

impl Sources for Library<'_> {
    fn include(&self, pattern: &str) -> Result<Vec<(String, Cow<'_, str>)>, String> {
        let one =
            |name: &str, text: &'static str| Ok(vec![(name.to_string(), Cow::Borrowed(text))]);
        match pattern {
            "@recommended" | "@recommended-conf" => return one("@recommended", RECOMMENDED),
            "@meshward-baseline" => return one("@meshward-baseline", BASELINE),
            "@meshward-grpc" => return one("@meshward-grpc", GRPC),
            "@crs-setup" | "@crs-setup.conf" | "@crs-setup-conf" | "@crs-setup.conf.example" => {
                return match self.crs("crs-setup.conf") {
                    Some(text) => one("@crs-setup.conf", text),
                    None => Err(no_crs()),
                }
            }
            _ => {}
        }
        if let Some(glob) = pattern.strip_prefix("@owasp_crs/") {
            let matched: Vec<(String, Cow<'_, str>)> = embedded::CRS_FILES
                .iter()
                .filter_map(|(name, text)| {
                    let file = name.strip_prefix("rules/")?;
                    (file.ends_with(".conf") && glob_match(glob, file))
                        .then(|| (format!("@owasp_crs/{file}"), Cow::Borrowed(*text)))
                })
                .collect();
            if embedded::CRS_FILES.is_empty() {
                return Err(no_crs());
            }
            if matched.is_empty() {
                return Err(format!("no embedded CRS file matches `{glob}`"));
            }
            return Ok(matched);
        }
        if let Some(text) = self.files.get(pattern) {
            return Ok(vec![(pattern.to_string(), Cow::Borrowed(text.as_str()))]);
        }
        Err(format!(
            "unknown include `{pattern}`: use @recommended, @meshward-baseline, @meshward-grpc, @crs-setup, \
             @owasp_crs/<glob>.conf, or a name from `files`"
        ))
    }

    fn data_file(&self, name: &str) -> Result<String, String> {
        if let Some(text) = self.files.get(name) {
            return Ok(text.clone());
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        self.crs(&format!("rules/{base}"))
            .map(str::to_string)
            .ok_or_else(|| format!("data file `{name}` is neither in `files` nor in embedded CRS"))
    }
}

fn no_crs() -> String {
    "this build embeds no OWASP CRS (build it with MESHWARD_CRS_DIR pointing at a CRS release)"
        .to_string()
}

/// `*` matches any run of characters; everything else literally.
fn glob_match(glob: &str, name: &str) -> bool {
    // Greedy with one backtrack point (the last `*`): linear in practice and
    // never exponential, whatever a configuration's glob holds.
    let (glob, name) = (glob.as_bytes(), name.as_bytes());
    let (mut g, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while let Some(&c) = name.get(n) {
        match glob.get(g) {
            Some(b'*') => {
                last_star = Some((g + 1, n));
                g += 1;
            }
            Some(&p) if p == c => {
                g += 1;
                n += 1;
            }
            _ => match last_star {
                // Let the last `*` take one more byte and try again.
                Some((after_star, taken)) => {
                    last_star = Some((after_star, taken + 1));
                    g = after_star;
                    n = taken + 1;
                }
                None => return false,
            },
        }
    }
    glob.get(g..).unwrap_or_default().iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.conf", "REQUEST-901-INITIALIZATION.conf"));
        assert!(glob_match(
            "REQUEST-9*-*.conf",
            "REQUEST-942-APPLICATION-ATTACK-SQLI.conf"
        ));
        assert!(!glob_match(
            "RESPONSE-*.conf",
            "REQUEST-901-INITIALIZATION.conf"
        ));
        assert!(glob_match("x", "x"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(!glob_match("*.conf", "x.confx"));
        // Many stars against a long name that does not match: no blow-up.
        let name = "REQUEST-942-APPLICATION-ATTACK-SQLI.conf".repeat(20);
        assert!(!glob_match(&format!("{}x", "*".repeat(40)), &name));
    }

    #[test]
    fn user_files_shadow_embedded_data_files() {
        let mut files = BTreeMap::new();
        files.insert("ips.data".to_string(), "10.0.0.0/8\n".to_string());
        let lib = Library { files: &files };
        assert_eq!(lib.data_file("ips.data").unwrap(), "10.0.0.0/8\n");
        assert!(lib.data_file("missing.data").is_err());
        assert!(lib
            .include("@nope")
            .unwrap_err()
            .contains("unknown include"));
    }
}
