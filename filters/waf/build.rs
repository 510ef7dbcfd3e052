//! Embeds OWASP CRS from `MESHWARD_CRS_DIR` (default `../shared/crs` beside
//! the repository) so `Include @owasp_crs/*.conf` needs no filesystem in the
//! proxy. Comment lines are blanked (line numbers in logs stay true) to keep
//! the `.wasm` small. Without a CRS directory the filter builds without it and
//! says so when a configuration includes it.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=MESHWARD_CRS_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let crs = env::var_os("MESHWARD_CRS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../../shared/crs"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    let mut table = String::from("&[\n");
    let mut version = String::new();
    if crs.join("rules").is_dir() {
        println!("cargo:rerun-if-changed={}", crs.join("rules").display());
        println!(
            "cargo:rerun-if-changed={}",
            crs.join("crs-setup.conf.example").display()
        );
        let mut files = vec![(
            "crs-setup.conf".to_string(),
            crs.join("crs-setup.conf.example"),
        )];
        let mut rules: Vec<PathBuf> = fs::read_dir(crs.join("rules"))
            .expect("CRS rules directory is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conf" | "data")
                )
            })
            .collect();
        rules.sort();
        for path in rules {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            files.push((format!("rules/{name}"), path.clone()));
        }
        for (index, (name, path)) in files.iter().enumerate() {
            let text = fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            if version.is_empty() {
                version = find_version(&text);
            }
            let text = if name.ends_with(".conf") {
                blank_comments(&text)
            } else {
                text
            };
            let stored = out.join(format!("crs-{index}"));
            fs::write(&stored, text).expect("OUT_DIR is writable");
            writeln!(
                table,
                "    ({name:?}, include_str!({:?})),",
                stored.display().to_string()
            )
            .expect("string write");
        }
    } else {
        println!(
            "cargo:warning=no CRS at {} (set MESHWARD_CRS_DIR): building the WAF without embedded CRS",
            crs.display()
        );
    }
    table.push(']');
    let code = format!(
        "/// CRS files embedded at build time: `crs-setup.conf`, `rules/*.conf`, `rules/*.data`.\n\
         pub static CRS_FILES: &[(&str, &str)] = {table};\n\
         /// The embedded CRS release (`OWASP_CRS/4.28.0`), empty when none is embedded.\n\
         pub const CRS_VERSION: &str = {version:?};\n"
    );
    fs::write(out.join("crs.rs"), code).expect("OUT_DIR is writable");
}

fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.trim_start().starts_with('#') {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn find_version(text: &str) -> String {
    text.split("ver:'")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_default()
        .to_string()
}
