//! A go-ftw runner: CRS's regression tests (`tests/regression/tests/**/*.yaml`) through a WAF
//! `.wasm` in the harness, decided the way go-ftw v2.3.0 decides them.
//!
//! For each stage of each test: the request bytes go-ftw would write ([`request`]), what
//! Envoy 1.40 makes of them before any filter runs ([`envoy`]), one [`Proxy::send`] through the
//! WAF to an emulated albedo backend ([`albedo`]), and the WAF's log lines for that request —
//! what go-ftw reads between its two marker requests — checked against the stage's expected
//! output ([`check`]). Platform overrides ([`overrides`]) replace or ignore tests. The WAF's
//! configuration for a CRS run is [`waf_config`].
//!
//! ```no_run
//! use meshward_harness::ftw::{self, FrontEnd, Options, waf_config};
//! let suite = ftw::load_suite("../shared/crs/tests/regression/tests".as_ref())?;
//! let mut runner = ftw::Runner::new(&Options {
//!     wasm: "target/wasm32-wasip1/release/meshward_waf.wasm".into(),
//!     config: waf_config::crs_run(&waf_config::Rules::Embedded)?,
//!     front_end: FrontEnd::Envoy,
//!     normalize_path: false,
//! })?;
//! let report = ftw::run(&mut runner, &suite, &ftw::overrides::Overrides::default(), None);
//! println!("{:.2}%", report.pass_rate);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Not reproduced: go-ftw's marker requests (each request's own log lines are read instead),
//! `virtual_host_mode` (it only changes the markers' `Host`), TCP-level behaviour (a stage Envoy
//! would wait on is reported as go-ftw's read timeout).

pub mod albedo;
pub mod check;
pub mod envoy;
pub mod overrides;
pub mod request;
pub mod schema;
pub mod waf_config;

use crate::abi::LogLevel;
use crate::exchange::{Request, Response, Upstream};
use crate::manifest::{FailStrategy, PluginSpec};
use crate::proxy::{LoadError, Proxy};
use anyhow::Context as _;
use check::{Failure, Observed, ObservedResponse};
use envoy::Arrival;
use overrides::{Overrides, Resolution};
use schema::{Input, Output, Test, TestFile};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The `include` filter of [`run`] is a regex over test ids.
pub use regex::Regex;

/// The plugin name (and root id) the WAF runs under.
pub const PLUGIN: &str = "waf";

/// How requests reach the WAF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrontEnd {
    /// Through a model of Envoy 1.40's HTTP/1 codec and connection manager (the default):
    /// what a WAF in a sidecar sees.
    #[default]
    Envoy,
    /// As the test wrote it: every header, any method and version, no body framing.
    AsWritten,
}

/// What a runner is built from.
#[derive(Debug, Clone)]
pub struct Options {
    /// The WAF `.wasm`.
    pub wasm: PathBuf,
    /// The WAF's `pluginConfig`.
    pub config: serde_json::Value,
    pub front_end: FrontEnd,
    /// Resolve dot segments in `:path` before the filters, as Istio's sidecar does
    /// (`normalize_path`); CRS's tests are written against the path as sent.
    pub normalize_path: bool,
}

/// One test file of the suite.
#[derive(Debug, Clone)]
pub struct SuiteFile {
    /// Relative to the suite's directory.
    pub name: String,
    pub rule_id: u64,
    pub tests: Vec<Test>,
    /// Fields outside the schema (go-ftw ignores them; see [`schema::Loaded`]).
    pub unknown_fields: Vec<String>,
}

/// The test files of a directory, recursively, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct Suite {
    pub dir: PathBuf,
    pub files: Vec<SuiteFile>,
}

impl Suite {
    /// Every `(rule_id, test_id)` in the suite.
    pub fn test_ids(&self) -> Vec<(u64, u64)> {
        self.files
            .iter()
            .flat_map(|f| {
                f.tests
                    .iter()
                    .enumerate()
                    .map(move |(i, t)| (f.rule_id, t.id_or_position(i)))
            })
            .collect()
    }
}

/// Finds the test directory under a CRS checkout (`DIR/tests/regression/tests`) or takes `dir`
/// as it is.
pub fn tests_dir(dir: &Path) -> PathBuf {
    for candidate in [
        dir.join("tests/regression/tests"),
        dir.join("regression/tests"),
    ] {
        if candidate.is_dir() {
            return candidate;
        }
    }
    dir.to_path_buf()
}

/// Loads every `*.yaml` / `*.yml` under `dir` (see [`tests_dir`]).
pub fn load_suite(dir: &Path) -> anyhow::Result<Suite> {
    let dir = tests_dir(dir);
    let mut paths = Vec::new();
    collect_yaml(&dir, &mut paths)?;
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!("no test files (*.yaml) under {}", dir.display());
    }
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let loaded = TestFile::load(&text).with_context(|| path.display().to_string())?;
        let rule_id = loaded
            .file
            .rule_id_or_from_name(&path)
            .with_context(|| format!("{}: rule_id: missing", path.display()))?;
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        files.push(SuiteFile {
            name,
            rule_id,
            tests: loaded.file.tests,
            unknown_fields: loaded.unknown_fields,
        });
    }
    Ok(Suite { dir, files })
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The WAF in a proxy, with albedo behind it.
pub struct Runner {
    proxy: Proxy,
    albedo: Rc<RefCell<albedo::Albedo>>,
    front_end: FrontEnd,
    stages_sent: usize,
}

impl Runner {
    /// Loads the WAF once (Envoy's canary and worker VMs); a rejected configuration is the
    /// plugin's own log lines in the error.
    pub fn new(options: &Options) -> Result<Runner, LoadError> {
        let mut proxy = Proxy::builder()
            .normalize_path(options.normalize_path)
            // Each request's lines are read right after it; keep memory bounded over a run.
            .log_limit(50_000)
            .plugin(
                PluginSpec::new(PLUGIN, options.wasm.clone())
                    .config_json(options.config.clone())
                    // A trap then costs its own request (503), not every later test.
                    .fail_strategy(FailStrategy::FailReload),
            )
            .build()?;
        let date = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + Duration::from_nanos(proxy.now_nanos()),
        );
        let albedo = Rc::new(RefCell::new(albedo::Albedo::new(date)));
        let shared = albedo.clone();
        proxy.set_upstream(move |request: &Upstream| {
            let reply = shared
                .borrow_mut()
                .answer(&request.method, &request.path, &request.body);
            let mut response = Response::new(reply.status).body(reply.body);
            for (name, value) in &reply.headers {
                response = response.header(name, value);
            }
            response
        });
        Ok(Runner {
            proxy,
            albedo,
            front_end: options.front_end,
            stages_sent: 0,
        })
    }

    /// Requests sent through the proxy so far.
    pub fn stages_sent(&self) -> usize {
        self.stages_sent
    }

    /// Runs one stage: builds, delivers, observes, checks.
    pub fn run_stage(
        &mut self,
        input: &Input,
        output: &Output,
        cookies: &[(String, String)],
    ) -> StageResult {
        let raw = match request::build(input, cookies) {
            Ok(raw) => raw,
            Err(reason) => return StageResult::not_sent(reason),
        };
        let arrival = match self.front_end {
            FrontEnd::Envoy => envoy::receive(&raw),
            FrontEnd::AsWritten => envoy::as_written(&raw),
        };
        let answered_by_envoy = matches!(arrival, Arrival::Answered { .. });
        let (observed, note) = match arrival {
            Arrival::Delivered(delivered) => self.send(input, delivered),
            Arrival::Answered {
                status,
                details,
                body,
            } => {
                let mut headers = vec![("content-length".to_string(), body.len().to_string())];
                if !body.is_empty() {
                    headers.push(("content-type".into(), "text/plain".into()));
                }
                headers.push(("connection".into(), "close".into()));
                (
                    Observed {
                        response: Some(ObservedResponse {
                            status,
                            headers,
                            body,
                        }),
                        error: None,
                        log_lines: Vec::new(),
                    },
                    Some(format!(
                        "Envoy answered {status} ({details}) before any filter ran"
                    )),
                )
            }
            Arrival::Stalled(why) => (
                Observed {
                    response: None,
                    error: Some(format!(
                        "no response: Envoy waits for the rest of the request ({why}) and \
                         go-ftw's read times out"
                    )),
                    log_lines: Vec::new(),
                },
                None,
            ),
            Arrival::Unrepresentable(why) => return StageResult::not_sent(why),
        };
        let failures = check::check(output, &observed);
        StageResult {
            failures,
            triggered: check::triggered_ids(&observed.log_lines),
            status: observed.response.as_ref().map(|r| r.status),
            answered_by_envoy,
            note,
            observed: Some(observed),
        }
    }

    fn send(&mut self, input: &Input, d: envoy::Delivered) -> (Observed, Option<String>) {
        let request = harness_request(input, d);
        self.albedo
            .borrow_mut()
            .set_stage_response(input.response.as_ref().map(albedo::Spec::from));
        let outcome = self.proxy.send(request);
        self.albedo.borrow_mut().set_stage_response(None);
        self.stages_sent += 1;
        let log_lines: Vec<String> = outcome
            .logs
            .iter()
            .filter(|l| l.plugin == PLUGIN && l.level >= LogLevel::Info)
            .map(|l| l.message.clone())
            .collect();
        let note = match &outcome.local_reply {
            Some(reply) if reply.details == "wasm_fail_stream" => {
                Some("the WAF's VM failed (a trap): Envoy answered 503".to_string())
            }
            _ => None,
        };
        let observed = if outcome.reset {
            Observed {
                response: None,
                error: Some(
                    "no response: the stream was reset, or a filter paused it and nothing \
                     resumed it"
                        .into(),
                ),
                log_lines,
            }
        } else {
            Observed {
                response: Some(ObservedResponse {
                    status: outcome.response.status,
                    headers: outcome.response.headers.clone(),
                    body: outcome.response.body.clone(),
                }),
                error: None,
                log_lines,
            }
        };
        (observed, note)
    }

    /// Runs every stage of a test with the given expected outputs (one per stage).
    pub fn run_test(&mut self, test: &Test, outputs: &[Output]) -> TestRun {
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut previous: Option<ObservedResponse> = None;
        let mut stages = Vec::with_capacity(test.stages.len());
        for (index, stage) in test.stages.iter().enumerate() {
            let output = outputs.get(index).unwrap_or(&stage.output);
            let input = match follow_redirect(&stage.input, previous.as_ref()) {
                Ok(input) => input,
                Err(reason) => {
                    stages.push(StageResult::not_sent(reason));
                    previous = None;
                    continue;
                }
            };
            let mut result = self.run_stage(&input, output, &cookies);
            if !result.failures.is_empty() && output.retry_once == Some(true) {
                result = self.run_stage(&input, output, &cookies);
            }
            let response = result.observed.take().and_then(|o| o.response);
            if input.save_cookie == Some(true) {
                if let Some(response) = &response {
                    save_cookies(response, &mut cookies);
                }
            }
            previous = response;
            stages.push(result);
        }
        TestRun { stages }
    }
}

/// `destination.address`: the stage's `dest_addr:port` (`localhost` is `127.0.0.1`).
/// The request a filter in Envoy receives for what Envoy delivered.
fn harness_request(input: &Input, d: envoy::Delivered) -> Request {
    let mut request = Request::new(&d.method, &d.path)
        .authority(&d.authority)
        .scheme(&d.scheme)
        .protocol(&d.protocol)
        .destination(&destination(input))
        .body(d.body);
    for (name, value) in &d.headers {
        request = request.header(name, value);
    }
    request
}

/// Every stage of the suite as the request a WAF in an Envoy sidecar receives,
/// in suite order; stages Envoy answers itself or that cannot be built are left
/// out. This is the corpus `meshward bench-waf` times.
pub fn corpus(suite: &Suite) -> Vec<Request> {
    let mut requests = Vec::new();
    for file in &suite.files {
        for test in &file.tests {
            for stage in &test.stages {
                let Ok(raw) = request::build(&stage.input, &[]) else {
                    continue;
                };
                if let Arrival::Delivered(d) = envoy::receive(&raw) {
                    requests.push(harness_request(&stage.input, d));
                }
            }
        }
    }
    requests
}

fn destination(input: &Input) -> String {
    let addr = match input.dest_addr.as_deref() {
        None | Some("localhost") => "127.0.0.1",
        Some(a) => a,
    };
    format!("{addr}:{}", input.port.unwrap_or(80))
}

/// `follow_redirect`: the stage goes to the previous response's `Location`.
fn follow_redirect(input: &Input, previous: Option<&ObservedResponse>) -> Result<Input, String> {
    if input.follow_redirect != Some(true) {
        return Ok(input.clone());
    }
    let location = previous
        .filter(|r| (300..400).contains(&r.status))
        .and_then(|r| crate::exchange::find_header(&r.headers, "location"))
        .map(str::to_string)
        .ok_or("follow_redirect: the previous stage got no redirect with a Location")?;
    let mut input = input.clone();
    match location.split_once("://") {
        Some((_, rest)) => {
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (host, path) = rest.split_at(split);
            input.uri = Some(if path.is_empty() {
                "/".into()
            } else {
                path.into()
            });
            let headers = input.headers.get_or_insert_with(Vec::new);
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("host"));
            headers.push(("Host".into(), host.into()));
        }
        None => input.uri = Some(location),
    }
    Ok(input)
}

/// `save_cookie`: the `name=value` of each `Set-Cookie`, for the test's later stages.
fn save_cookies(response: &ObservedResponse, jar: &mut Vec<(String, String)>) {
    for (name, value) in &response.headers {
        if !name.eq_ignore_ascii_case("set-cookie") {
            continue;
        }
        let pair = value.split(';').next().unwrap_or_default();
        if let Some((n, v)) = pair.split_once('=') {
            let n = n.trim().to_string();
            jar.retain(|(existing, _)| *existing != n);
            jar.push((n, v.trim().to_string()));
        }
    }
}

/// The result of one stage.
#[derive(Debug, Clone, Default)]
pub struct StageResult {
    /// Empty when the stage passed.
    pub failures: Vec<Failure>,
    /// Rule ids the WAF logged for the request.
    pub triggered: Vec<u64>,
    /// The status the client got, if it got a response.
    pub status: Option<u16>,
    /// Envoy itself answered the request before any filter ran.
    pub answered_by_envoy: bool,
    /// How the request was handled when that is not the usual (Envoy answered, the VM trapped).
    pub note: Option<String>,
    /// What was observed (kept only until the next stage needs it).
    pub observed: Option<Observed>,
}

impl StageResult {
    fn not_sent(reason: impl Into<String>) -> StageResult {
        StageResult {
            failures: vec![Failure::NotSent {
                reason: reason.into(),
            }],
            ..Default::default()
        }
    }
}

/// The stages of one test.
#[derive(Debug, Clone, Default)]
pub struct TestRun {
    pub stages: Vec<StageResult>,
}

impl TestRun {
    pub fn passed(&self) -> bool {
        self.stages.iter().all(|s| s.failures.is_empty())
    }
}

/// A failed test, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestFailure {
    /// `<rule_id>-<test_id>`, as go-ftw names tests.
    pub id: String,
    pub file: String,
    /// The first failing stage (from 0).
    pub stage: usize,
    pub failures: Vec<Failure>,
    /// Rule ids logged for that stage's request.
    pub logged_ids: Vec<u64>,
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The override that replaced the test's expectations, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

impl TestFailure {
    /// One line: why the test failed.
    pub fn describe(&self) -> String {
        let reasons: Vec<String> = self.failures.iter().map(ToString::to_string).collect();
        let mut line = format!("{} stage {}: {}", self.id, self.stage, reasons.join("; "));
        if let Some(status) = self.status {
            line.push_str(&format!(" [status {status}"));
            if !self.logged_ids.is_empty() {
                let ids: Vec<String> = self.logged_ids.iter().map(u64::to_string).collect();
                line.push_str(&format!(", logged {}", ids.join(" ")));
            }
            line.push(']');
        }
        if let Some(note) = &self.note {
            line.push_str(&format!(" ({note})"));
        }
        line
    }
}

/// An ignored test, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IgnoredTest {
    pub id: String,
    pub reason: String,
}

/// One file's results.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileReport {
    pub file: String,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    pub failures: Vec<TestFailure>,
    pub ignored_tests: Vec<IgnoredTest>,
    /// Tests that passed only because an override replaced their expectations.
    pub passed_with_override: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_fields: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Left out by the include filter.
    pub skipped: usize,
    /// passed / (passed + failed), in percent; 0 when nothing ran.
    pub pass_rate: f64,
    /// Override entries that matched no test of the suite.
    pub unused_overrides: Vec<String>,
    /// Stages Envoy answered itself, without running the WAF.
    pub answered_by_envoy: usize,
    pub requests_sent: usize,
    pub elapsed_seconds: f64,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &TestFailure> {
        self.files.iter().flat_map(|f| f.failures.iter())
    }

    pub fn run(&self) -> usize {
        self.passed + self.failed
    }
}

/// Runs the suite: every test not left out by `include` (a regex over `<rule>-<test>`), with
/// the overrides applied.
pub fn run(
    runner: &mut Runner,
    suite: &Suite,
    overrides: &Overrides,
    include: Option<&Regex>,
) -> Report {
    let started = Instant::now();
    let sent_before = runner.stages_sent();
    let mut report = Report::default();
    for file in &suite.files {
        let mut file_report = FileReport {
            file: file.name.clone(),
            unknown_fields: file.unknown_fields.clone(),
            ..Default::default()
        };
        for (index, test) in file.tests.iter().enumerate() {
            let id = format!("{}-{}", file.rule_id, test.id_or_position(index));
            if include.is_some_and(|re| !re.is_match(&id)) {
                report.skipped += 1;
                continue;
            }
            let written: Vec<Output> = test.stages.iter().map(|s| s.output.clone()).collect();
            let (outputs, override_reason) =
                match overrides.resolve(file.rule_id, test.id_or_position(index), &written) {
                    Resolution::Ignored { reason } => {
                        file_report.ignored += 1;
                        file_report.ignored_tests.push(IgnoredTest { id, reason });
                        continue;
                    }
                    Resolution::AsWritten => (written, None),
                    Resolution::Replaced { outputs, reason } => (outputs, Some(reason)),
                };
            let result = runner.run_test(test, &outputs);
            report.answered_by_envoy +=
                result.stages.iter().filter(|s| s.answered_by_envoy).count();
            if result.passed() {
                file_report.passed += 1;
                if override_reason.is_some() {
                    file_report.passed_with_override.push(id);
                }
                continue;
            }
            file_report.failed += 1;
            if let Some((stage, failed)) = result
                .stages
                .into_iter()
                .enumerate()
                .find(|(_, s)| !s.failures.is_empty())
            {
                file_report.failures.push(TestFailure {
                    id,
                    file: file.name.clone(),
                    stage,
                    failures: failed.failures,
                    logged_ids: failed.triggered,
                    status: failed.status,
                    note: failed.note,
                    override_reason,
                });
            }
        }
        report.passed += file_report.passed;
        report.failed += file_report.failed;
        report.ignored += file_report.ignored;
        report.files.push(file_report);
    }
    let ids = suite.test_ids();
    report.unused_overrides = overrides
        .unused(&ids)
        .iter()
        .map(|e| {
            let tests = if e.test_ids.is_empty() {
                "all tests".to_string()
            } else {
                let t: Vec<String> = e.test_ids.iter().map(u64::to_string).collect();
                format!("tests {}", t.join(", "))
            };
            format!("rule {} {tests}: {}", e.rule_id, e.reason.trim())
        })
        .collect();
    report.pass_rate = if report.run() == 0 {
        0.0
    } else {
        report.passed as f64 * 100.0 / report.run() as f64
    };
    report.requests_sent = runner.stages_sent() - sent_before;
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_is_followed_to_its_location() {
        let previous = ObservedResponse {
            status: 302,
            headers: vec![("location".into(), "http://other:8080/next?a=1".into())],
            body: Vec::new(),
        };
        let input = Input {
            follow_redirect: Some(true),
            headers: Some(vec![("Host".into(), "localhost".into())]),
            ..Default::default()
        };
        let next = follow_redirect(&input, Some(&previous)).unwrap();
        assert_eq!(next.uri.as_deref(), Some("/next?a=1"));
        assert_eq!(
            next.headers.unwrap(),
            vec![("Host".to_string(), "other:8080".to_string())]
        );
        let not_a_redirect = ObservedResponse {
            status: 200,
            ..previous
        };
        assert!(follow_redirect(&input, Some(&not_a_redirect)).is_err());
    }

    #[test]
    fn saved_cookies_replace_ones_of_the_same_name() {
        let mut jar = vec![("a".to_string(), "old".to_string())];
        let response = ObservedResponse {
            status: 200,
            headers: vec![
                ("set-cookie".into(), "a=new; Path=/".into()),
                ("Set-Cookie".into(), "b=2".into()),
            ],
            body: Vec::new(),
        };
        save_cookies(&response, &mut jar);
        assert_eq!(
            jar,
            vec![
                ("a".to_string(), "new".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn the_crs_tests_dir_is_found_under_a_crs_checkout() {
        let root = std::env::temp_dir().join(format!("meshward-ftw-dir-{}", std::process::id()));
        let tests = root.join("tests/regression/tests");
        std::fs::create_dir_all(&tests).unwrap();
        assert_eq!(tests_dir(&root), tests);
        assert_eq!(tests_dir(&tests), tests);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
