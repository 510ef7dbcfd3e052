//! Driving the ABI probe (`tests/abi-probe`) and reading its answers.
//!
//! The probe logs one line per hostcall, `probe <hostcall>(<args>) = <STATUS> [value]`,
//! and one per callback, `probe on_<callback> context=… …`. Tests find a call's
//! line by its `<hostcall>(<args>)` and compare what follows ` = `.

#![allow(dead_code)]

use meshward_harness::{LogLine, PluginSpec, Proxy, ProxyBuilder};
use std::path::PathBuf;

pub const CLUSTER: &str = "upstream-svc";

pub fn wasm() -> PathBuf {
    meshward_tests::wasm("abi_probe")
}

/// A probe plugin named `name` running `script` (its plugin configuration).
pub fn probe(name: &str, script: &str) -> PluginSpec {
    PluginSpec::new(name, wasm()).config(script.as_bytes().to_vec())
}

/// A builder with the cluster `upstream-svc` known.
pub fn builder() -> ProxyBuilder {
    Proxy::builder().cluster(CLUSTER)
}

/// One probe plugin named `probe`, one worker.
pub fn proxy(script: &str) -> Proxy {
    builder()
        .plugin(probe("probe", script))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The probe's lines, in order.
pub fn lines(logs: &[LogLine]) -> Vec<String> {
    logs.iter()
        .filter(|l| l.message.starts_with("probe "))
        .map(|l| l.message.clone())
        .collect()
}

/// Every answer to `call` (`name(args)`), in order.
pub fn answers(logs: &[LogLine], call: &str) -> Vec<String> {
    let prefix = format!("probe {call} = ");
    logs.iter()
        .filter_map(|l| l.message.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// The answer to `call`, which must have been made exactly once.
#[track_caller]
pub fn answer(logs: &[LogLine], call: &str) -> String {
    let all = answers(logs, call);
    match all.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "expected one answer to {call}, got {all:?}; the probe said:\n  {}",
            lines(logs).join("\n  ")
        ),
    }
}

/// Whether a line equal to `line` was logged.
pub fn logged(logs: &[LogLine], line: &str) -> bool {
    logs.iter().any(|l| l.message == line)
}

/// Indexes of the callback trace lines starting with `prefix`, for order checks.
pub fn position(logs: &[LogLine], prefix: &str) -> usize {
    logs.iter()
        .position(|l| l.message.starts_with(prefix))
        .unwrap_or_else(|| {
            panic!(
                "no line starting with {prefix:?}; the probe said:\n  {}",
                lines(logs).join("\n  ")
            )
        })
}

/// How the probe prints bytes: printable ASCII as is, `\"`, `\\`, else `\xNN`.
pub fn esc(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// An 8-byte little-endian integer as the probe prints it.
pub fn int(v: u64) -> String {
    format!("OK {}", esc(&v.to_le_bytes()))
}
