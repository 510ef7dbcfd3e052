//! OWASP CRS v4.28.0's go-ftw regression tests through the built WAF, with the committed
//! overrides (`tests/crs/overrides.yaml`) and pass-rate floor (`tests/crs/floor`), and the go-ftw
//! runner itself checked against a WAF configured with rules of the test's own.
//!
//! The tests are read from `$MESHWARD_CRS_DIR` (the Makefile exports it), else `../shared/crs`
//! beside the repository; they are data and are never copied into the repository.

mod harness_probe;

use harness_probe::{answer, esc, proxy};
use meshward_harness::ftw::{
    self, check::Failure, overrides::Overrides, waf_config, FrontEnd, Options,
};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn runner(config: serde_json::Value) -> ftw::Runner {
    ftw::Runner::new(&Options {
        wasm: meshward_tests::wasm("waf"),
        config,
        front_end: FrontEnd::Envoy,
        normalize_path: false,
    })
    .unwrap_or_else(|e| panic!("the WAF did not load: {e}"))
}

#[test]
fn crs_regression_suite_pass_rate_is_at_least_the_committed_floor() {
    let suite = meshward_tests::crs_suite();
    let overrides = meshward_tests::crs_overrides();
    let floor_text =
        std::fs::read_to_string(repo().join("tests/crs/floor")).expect("tests/crs/floor");
    let floor: f64 = floor_text
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("tests/crs/floor: {e}: {floor_text:?}"));

    let mut runner = runner(waf_config::crs_run(&waf_config::Rules::Embedded).unwrap());
    let report = ftw::run(&mut runner, suite, &overrides, None);

    let total: usize = suite.files.iter().map(|f| f.tests.len()).sum();
    println!(
        "CRS regression: passed {} of {} run ({:.2}%), {} failed, {} ignored, {} requests in {:.1} s",
        report.passed,
        report.run(),
        report.pass_rate,
        report.failed,
        report.ignored,
        report.requests_sent,
        report.elapsed_seconds
    );
    for failure in report.failures().take(50) {
        println!("  {}", failure.describe());
    }
    assert!(
        total > 4000,
        "only {total} tests found under {}",
        suite.dir.display()
    );
    assert_eq!(
        report.passed + report.failed + report.ignored,
        total,
        "every test is passed, failed or ignored"
    );
    assert!(
        report.unused_overrides.is_empty(),
        "overrides that match no test: {:?}",
        report.unused_overrides
    );
    let not_sent: Vec<String> = report
        .failures()
        .filter(|f| {
            f.failures
                .iter()
                .any(|x| matches!(x, Failure::NotSent { .. }))
        })
        .map(|f| f.describe())
        .collect();
    assert!(
        not_sent.is_empty(),
        "tests whose requests could not be sent: {not_sent:#?}"
    );
    assert!(
        report.pass_rate >= floor,
        "pass rate {:.2}% is below the committed floor {floor}% (tests/crs/floor)",
        report.pass_rate
    );
}

/// A suite of go-ftw test files in a fresh directory.
fn suite_of(name: &str, files: &[(&str, &str)]) -> (PathBuf, ftw::Suite) {
    let dir = std::env::temp_dir().join(format!("meshward-ftw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let suite = ftw::load_suite(&dir).unwrap();
    (dir, suite)
}

const OWN_RULES: &str = r#"
meta: {author: meshward}
rule_id: 1234
tests:
  - test_id: 1
    desc: "logged: the rule matches"
    stages:
      - input: {uri: "/get?x=attack", headers: {Host: localhost}}
        output: {log: {expect_ids: [1234]}}
  - test_id: 2
    desc: "fails: expects the rule on a harmless request"
    stages:
      - input: {uri: "/get?x=fine", headers: {Host: localhost}}
        output: {log: {expect_ids: [1234]}}
  - test_id: 3
    desc: "passes: not logged"
    stages:
      - input: {uri: "/get?x=fine", headers: {Host: localhost}}
        output: {log: {no_expect_ids: [1234]}}
  - test_id: 4
    desc: "fails: unexpected id"
    stages:
      - input: {uri: "/get?x=attack", headers: {Host: localhost}}
        output: {log: {no_expect_ids: [1234]}}
  - test_id: 5
    desc: "match_regex over the log line"
    stages:
      - input: {uri: "/get?x=attack", headers: {Host: localhost}}
        output: {log: {match_regex: 'x is an attack'}}
  - test_id: 6
    desc: "a form body gets go-ftw's Content-Type, is url-encoded, and its length is sent"
    stages:
      - input:
          method: POST
          uri: /post
          headers: {Host: localhost}
          data: "x=<a>"
        output: {log: {expect_ids: [1235, 1236]}}
  - test_id: 7
    desc: "albedo reflects the status and body through the WAF"
    stages:
      - input:
          method: POST
          uri: /reflect
          headers: {Host: localhost, Content-Type: application/json}
          data: '{"status": 418, "body": "short and stout"}'
        output: {status: 418, response_contains: "short and stout", log: {no_expect_ids: [1234]}}
  - test_id: 8
    desc: "Envoy answers an unknown method before the WAF"
    stages:
      - input: {method: FOO, uri: "/get?x=attack", headers: {Host: localhost}}
        output: {status: 400, log: {no_expect_ids: [1234]}}
  - test_id: 9
    desc: "ignored by the overrides"
    stages:
      - input: {uri: "/", headers: {Host: localhost}}
        output: {log: {expect_ids: [99]}}
"#;

/// Rules of the test's own, on what arrives with the request headers (bodies are not read, so
/// the runner is checked apart from the WAF's body processing).
fn own_rules_config() -> serde_json::Value {
    serde_json::json!({
        "directives": [
            "SecRuleEngine DetectionOnly\nSecRequestBodyAccess Off\nSecResponseBodyAccess Off",
            "SecRule ARGS:x \"@streq attack\" \"id:1234,phase:1,pass,log,msg:'x is an attack'\"",
            "SecRule REQUEST_HEADERS:Content-Type \"@streq application/x-www-form-urlencoded\" \"id:1235,phase:1,pass,log\"",
            "SecRule REQUEST_HEADERS:Content-Length \"@eq 9\" \"id:1236,phase:1,pass,log\""
        ]
    })
}

#[test]
fn the_runner_decides_tests_by_the_ids_the_waf_logs() {
    let (dir, suite) = suite_of("own", &[("RULES/1234.yaml", OWN_RULES)]);
    let overrides = Overrides::parse(
        "test_overrides:\n  - rule_id: 1234\n    test_ids: [9]\n    reason: the test runs nowhere\n",
    )
    .unwrap();
    let mut runner = runner(own_rules_config());
    let report = ftw::run(&mut runner, &suite, &overrides, None);
    std::fs::remove_dir_all(&dir).unwrap();

    let failed: Vec<&str> = report.failures().map(|f| f.id.as_str()).collect();
    assert_eq!(failed, ["1234-2", "1234-4"], "{:#?}", report.files);
    let reasons: Vec<&Failure> = report.failures().flat_map(|f| f.failures.iter()).collect();
    assert_eq!(
        reasons,
        [
            &Failure::MissingIds { ids: vec![1234] },
            &Failure::UnexpectedIds { ids: vec![1234] }
        ]
    );
    assert_eq!((report.passed, report.failed, report.ignored), (6, 2, 1));
    assert_eq!(report.answered_by_envoy, 1);
    assert!((report.pass_rate - 75.0).abs() < 1e-9);
    assert_eq!(report.files[0].ignored_tests[0].id, "1234-9");
}

#[test]
fn the_include_filter_runs_only_matching_test_ids() {
    let (dir, suite) = suite_of("include", &[("RULES/1234.yaml", OWN_RULES)]);
    let mut runner = runner(own_rules_config());
    let include = ftw::Regex::new("^1234-[13]$").unwrap();
    let report = ftw::run(&mut runner, &suite, &Overrides::default(), Some(&include));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((report.passed, report.failed, report.skipped), (2, 0, 7));
    assert_eq!(report.requests_sent, 2);
}

#[test]
fn an_override_replaces_expectations_and_stale_ones_are_reported() {
    let (dir, suite) = suite_of("override", &[("RULES/1234.yaml", OWN_RULES)]);
    let overrides = Overrides::parse(
        "test_overrides:\n  - rule_id: 1234\n    test_ids: [2]\n    reason: harmless here\n    output:\n      log:\n        no_expect_ids: [1234]\n  - rule_id: 777\n    reason: no such rule\n",
    )
    .unwrap();
    let mut runner = runner(own_rules_config());
    let include = ftw::Regex::new("^1234-2$").unwrap();
    let report = ftw::run(&mut runner, &suite, &overrides, Some(&include));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((report.passed, report.failed), (1, 0));
    assert_eq!(report.files[0].passed_with_override, ["1234-2"]);
    assert_eq!(
        report.unused_overrides,
        ["rule 777 all tests: no such rule"]
    );
}

#[test]
fn the_committed_overrides_each_name_an_existing_crs_test() {
    let overrides = meshward_tests::crs_overrides();
    assert!(!overrides.entries.is_empty());
    let suite = meshward_tests::crs_suite();
    let ids = suite.test_ids();
    for entry in &overrides.entries {
        assert!(
            !entry.test_ids.is_empty(),
            "rule {}: list the tests",
            entry.rule_id
        );
        for test in &entry.test_ids {
            assert!(
                ids.contains(&(entry.rule_id, *test)),
                "overrides name {}-{test}, which is not a CRS test",
                entry.rule_id
            );
        }
    }
}

/// What the runner needs from the harness: Envoy's `request.protocol` for HTTP/1.0 requests
/// and CONNECT requests with `:authority` and no `:path`, which no route matches.
#[test]
fn a_request_carries_its_protocol_and_connect_carries_no_path() {
    let script = "request_headers: get_property request protocol; get_property request path; \
                  get_property request host";
    let p = |logs: &[meshward_harness::LogLine], path: &str| {
        answer(
            logs,
            &format!(
                "proxy_get_property({})",
                esc(path.replace('.', "\0").as_bytes())
            ),
        )
    };
    let mut probe = proxy(script);
    let out = probe.send(meshward_harness::Request::get("/x").protocol("HTTP/1.0"));
    assert_eq!(p(&out.logs, "request.protocol"), r#"OK "HTTP/1.0""#);
    let out = probe.send(meshward_harness::Request::get("/x"));
    assert_eq!(p(&out.logs, "request.protocol"), r#"OK "HTTP/1.1""#);
    let out =
        probe.send(meshward_harness::Request::new("CONNECT", "").authority("example.org:443"));
    assert_eq!(p(&out.logs, "request.path"), "NOT_FOUND");
    assert_eq!(p(&out.logs, "request.host"), r#"OK "example.org:443""#);
    // A sidecar has no route for it: Envoy's router answers 404 after the filters.
    assert_eq!(out.status(), 404);
    assert!(out.upstream.is_none());
}
