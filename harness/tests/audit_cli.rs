//! `meshward audit verify` and `meshward audit verify-header`, run as a user
//! runs them: the built binary, files on disk, exit codes and printed reports.

use meshward_shared::audit::{
    seal, sign_header, AuditClaims, RecordBody, RecordDecisions, SigningKey, GENESIS_HASH,
    RECORD_VERSION,
};
use std::path::PathBuf;
use std::process::{Command, Output};

const SECRET: &str = "cli-test-secret-0123456789";

fn body(seq: u64, prev: &str) -> RecordBody {
    RecordBody {
        decisions: RecordDecisions::default(),
        destination: Some("api.bank-a".into()),
        duration_ms: 3,
        kid: None,
        method: "GET".into(),
        path: format!("/r/{seq}"),
        prev: prev.into(),
        principal: None,
        request_bytes: 0,
        request_headers: vec![],
        request_id: format!("req-{seq}"),
        response_bytes: 2,
        response_details: None,
        response_headers: vec![],
        seq,
        status: Some(200),
        stream: "0123456789abcdef0123456789abcdef".into(),
        tenant: Some("bank-a".into()),
        time: "2026-01-01T00:00:00.000Z".into(),
        upstream: None,
        v: RECORD_VERSION,
        waf_score: None,
    }
}

fn records(n: u64) -> Vec<String> {
    let key = SigningKey::new("k1", SECRET.as_bytes()).unwrap();
    let mut prev = GENESIS_HASH.to_string();
    (1..=n)
        .map(|seq| {
            let sealed = seal(&mut body(seq, &prev), Some(&key));
            prev = sealed.hash;
            sealed.line
        })
        .collect()
}

fn write(name: &str, lines: &[String]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshward-audit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn meshward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshward"))
        .args(args)
        .env("MESHWARD_AUDIT_KEY_K1", SECRET)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn verify_file(name: &str, lines: &[String]) -> Output {
    let path = write(name, lines);
    meshward(&["audit", "verify", path.to_str().unwrap(), "--key-env", "k1"])
}

#[test]
fn verify_accepts_an_intact_chain() {
    let out = verify_file("intact.jsonl", &records(4));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("OK: 4 records in 1 stream(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn verify_names_a_removed_record() {
    let mut lines = records(4);
    lines.remove(2);
    let out = verify_file("removed.jsonl", &lines);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("FAILED: 1 problem(s)"), "{text}");
    assert!(text.contains("line 3 (stream 0123456789abcdef0123456789abcdef, seq 4): missing: record seq 3 is not in the input"), "{text}");
}

#[test]
fn verify_names_an_altered_record() {
    let mut lines = records(3);
    lines[1] = lines[1].replace("\"status\":200", "\"status\":204");
    let out = verify_file("altered.jsonl", &lines);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("line 2 (stream 0123456789abcdef0123456789abcdef, seq 2): altered: content does not match its hash"), "{}", stdout(&out));
}

#[test]
fn verify_names_a_reordered_record() {
    let mut lines = records(3);
    lines.swap(1, 2);
    let out = verify_file("reordered.jsonl", &lines);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("line 3 (stream 0123456789abcdef0123456789abcdef, seq 2): out of order: comes after seq 3 (line 2)"), "{}", stdout(&out));
}

#[test]
fn verify_fails_with_the_wrong_key_and_refuses_to_run_without_keys() {
    let path = write("wrongkey.jsonl", &records(2));
    let out = meshward(&[
        "audit",
        "verify",
        path.to_str().unwrap(),
        "--key",
        "k1=another-secret-0123456789",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("signature does not verify"),
        "{}",
        stdout(&out)
    );
    let out = meshward(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no keys"));
}

#[test]
fn verify_reads_envoy_log_lines_and_otlp_exports() {
    let lines = records(2);
    let log: Vec<String> = lines
        .iter()
        .map(|l| format!("[2026-01-01 00:00:00.000][15][info][wasm] wasm log audit: meshward-audit-record: {l}"))
        .collect();
    let out = verify_file("envoy.log", &log);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let otlp = serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": lines[0]}}, {"body": {"stringValue": lines[1]}}]}]}]});
    let out = verify_file("otlp.jsonl", &[otlp.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn verify_header_prints_the_claims_or_why_they_fail() {
    let key = SigningKey::new("k1", SECRET.as_bytes()).unwrap();
    let mut claims = AuditClaims::new("req-1", 1_767_225_600_000, "GET", "/accounts/1");
    claims.tenant = Some("bank-a".into());
    let value = claims.encode();
    let sig = sign_header(&value, &key);
    let out = meshward(&[
        "audit",
        "verify-header",
        "--header",
        &value,
        "--signature",
        &sig,
        "--key-env",
        "k1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("OK: signature verifies with key k1"),
        "{text}"
    );
    assert!(text.contains("tenant:         bank-a"), "{text}");
    assert!(
        text.contains("waf:            (absent: that filter did not decide)"),
        "{text}"
    );

    let forged = value.replace("bank-a", "bank-b");
    let out = meshward(&[
        "audit",
        "verify-header",
        "--header",
        &forged,
        "--signature",
        &sig,
        "--key-env",
        "k1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "FAILED: audit header signature does not verify with key \"k1\""
    );
}
