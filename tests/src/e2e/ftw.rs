//! CRS's go-ftw regression tests through a real Envoy: the raw bytes go-ftw writes for
//! each stage (`meshward_harness::ftw::request`) on a plaintext connection to an Envoy
//! whose only filter is the WAF, albedo behind it ([`super::albedo`]), and each stage
//! decided with the harness runner's own check (`meshward_harness::ftw::check`) on the
//! response and the WAF's log lines for that request.
//!
//! The listener is configured like the Envoy the harness's model of Envoy was measured
//! against (`harness/src/ftw/envoy.rs`): `normalize_path: false` and
//! `accept_http_10: true`, one worker thread.
//!
//! Which log lines belong to a stage: each line the WAF writes ends with
//! `[unique_id "<x-request-id>"]`; the access log gives each request's id and peer
//! address, and the stage's connection is known by its client port. Envoy writes the
//! wasm lines of a request from its worker thread while it handles the request (phase 5
//! when the stream ends); after each stage a sentinel request is sent on a new
//! connection and its access-log line awaited, so every line of the stage — including
//! the logging phase's — is in the log before it is read (go-ftw's marker requests
//! serve the same purpose).

use super::raw::{exchange, RawExchange};
use super::{AlbedoServer, EnvoyProcess, TempDir};
use anyhow::Context as _;
use meshward_harness::envoy_config::{Bootstrap, WasmFilter};
use meshward_harness::ftw::check::{self, Failure, Observed, ObservedResponse};
use meshward_harness::ftw::schema::{Input, Output, Test};
use meshward_harness::ftw::{albedo, request};
use meshward_harness::FailStrategy;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a stage's response may take: past it the stage is an error, as go-ftw's read
/// timeout makes it (Envoy waiting for body bytes that never come).
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(3);

/// The request that marks the end of a stage in the logs.
const SENTINEL: &[u8] = b"GET /meshward-ftw-sentinel HTTP/1.1\r\nHost: localhost\r\n\
User-Agent: meshward-e2e\r\nAccept: */*\r\nConnection: close\r\n\r\n";

/// What one stage came to in Envoy.
#[derive(Debug, Clone, Default)]
pub struct EnvoyStage {
    /// Empty when the stage passed.
    pub failures: Vec<Failure>,
    /// Rule ids the WAF logged for the request.
    pub triggered: Vec<u64>,
    pub status: Option<u16>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%` for the request (`via_upstream`, `http1.codec_error`, …).
    pub details: Option<String>,
    /// Why there was no response.
    pub error: Option<String>,
    /// The response, as the client read it.
    pub response: Option<ObservedResponse>,
    /// Every byte the client read, complete response or not.
    pub received: Vec<u8>,
    /// The request's access-log line (`meshward_harness::envoy_config::ACCESS_LOG_FORMAT`
    /// and `peer`), if Envoy read a request from the connection.
    pub access_log: Option<serde_json::Value>,
}

/// The stages of one test.
#[derive(Debug, Clone, Default)]
pub struct EnvoyTest {
    pub stages: Vec<EnvoyStage>,
}

impl EnvoyTest {
    pub fn passed(&self) -> bool {
        self.stages.iter().all(|s| s.failures.is_empty())
    }
}

/// Lines appended to a file since the last read.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn new(path: &Path) -> Tail {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    fn read(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        let Ok(n) = file.read_to_end(&mut bytes) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=last).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// An Envoy with the WAF alone in its chain and albedo as its upstream.
pub struct EnvoyFtw {
    pub envoy: EnvoyProcess,
    pub albedo: AlbedoServer,
    access: Tail,
    log: Tail,
    /// Access-log lines by peer address, in order.
    requests: HashMap<String, Vec<serde_json::Value>>,
    /// The WAF's lines (from `meshward-waf: ` on) by request id.
    waf_lines: HashMap<String, Vec<String>>,
    /// Rule lines (`ModSecurity: …`) that carry no request id (a cut line would be one).
    pub lines_without_id: Vec<String>,
    /// Every rule line read.
    pub waf_line_count: usize,
    /// The longest rule line read, in bytes.
    pub longest_line: usize,
    _dir: TempDir,
}

impl EnvoyFtw {
    /// Starts Envoy (`--concurrency 1`) with the WAF `.wasm` under `config`
    /// (its `pluginConfig`, e.g. `meshward_harness::ftw::waf_config::crs_run`).
    pub fn start(wasm: &Path, config: &serde_json::Value) -> anyhow::Result<EnvoyFtw> {
        let dir = TempDir::new("ftw")?;
        let albedo = AlbedoServer::start()?;
        let any: SocketAddr = "127.0.0.1:0".parse()?;
        let mut bootstrap = Bootstrap::new(any, any, albedo.addr());
        bootstrap.filters = vec![WasmFilter {
            name: meshward_harness::ftw::PLUGIN.into(),
            root_id: meshward_harness::ftw::PLUGIN.into(),
            wasm: wasm.to_path_buf(),
            configuration: serde_json::to_string(config)?,
            env: BTreeMap::new(),
            host_env_keys: Vec::new(),
            // As the harness's runner loads it: a trap costs its own request only.
            fail_strategy: FailStrategy::FailReload,
        }];
        let access_log = dir.path().join("access.jsonl");
        bootstrap.access_log = Some(access_log.clone());
        let envoy = EnvoyProcess::start_with(&bootstrap, 1, &[], |v| {
            let hcm = &mut v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"];
            // CRS's tests are written against the path as sent (the harness runner's
            // `normalize_path: false`), and some are HTTP/1.0.
            hcm["normalize_path"] = false.into();
            hcm["http_protocol_options"] = serde_json::json!({"accept_http_10": true});
            hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]["peer"] =
                "%DOWNSTREAM_REMOTE_ADDRESS%".into();
        })?;
        let log = Tail::new(envoy.log_path());
        Ok(EnvoyFtw {
            envoy,
            albedo,
            access: Tail::new(&access_log),
            log,
            requests: HashMap::new(),
            waf_lines: HashMap::new(),
            lines_without_id: Vec::new(),
            waf_line_count: 0,
            longest_line: 0,
            _dir: dir,
        })
    }

    fn read_logs(&mut self) -> anyhow::Result<()> {
        for line in self.access.read() {
            let v: serde_json::Value =
                serde_json::from_str(&line).context("access log line is not JSON")?;
            let peer = v["peer"].as_str().unwrap_or_default().to_string();
            self.requests.entry(peer).or_default().push(v);
        }
        for line in self.log.read() {
            // Rule matches only; `configured: …` and the like belong to no request.
            let Some(at) = line.find("meshward-waf: ModSecurity: ") else {
                continue;
            };
            let message = &line[at..];
            self.waf_line_count += 1;
            self.longest_line = self.longest_line.max(message.len());
            let id = message
                .rfind("[unique_id \"")
                .map(|i| &message[i + 12..])
                .and_then(|rest| rest.split('"').next());
            match id {
                Some(id) => self
                    .waf_lines
                    .entry(id.to_string())
                    .or_default()
                    .push(message.to_string()),
                None => self.lines_without_id.push(message.to_string()),
            }
        }
        Ok(())
    }

    /// Waits until the access log has a line for `peer`; its first line.
    fn request_of(
        &mut self,
        peer: SocketAddr,
        wait: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let key = peer.to_string();
        let deadline = Instant::now() + wait;
        loop {
            self.read_logs()?;
            if let Some(first) = self.requests.get(&key).and_then(|l| l.first()) {
                return Ok(first.clone());
            }
            if Instant::now() > deadline {
                anyhow::bail!("no access-log line for {key} after {wait:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Runs one stage: sends it, marks its end, reads its log lines, checks `output`.
    pub fn run_stage(&mut self, input: &Input, output: &Output) -> anyhow::Result<EnvoyStage> {
        let raw = match request::build(input, &[]) {
            Ok(raw) => raw,
            Err(reason) => {
                return Ok(EnvoyStage {
                    failures: vec![Failure::NotSent { reason }],
                    ..Default::default()
                })
            }
        };
        self.albedo
            .set_stage_response(input.response.as_ref().map(albedo::Spec::from));
        let RawExchange {
            local,
            response,
            received,
        } = exchange(self.envoy.listener(), &raw, STAGE_TIMEOUT)?;
        self.albedo.set_stage_response(None);
        let sentinel = exchange(self.envoy.listener(), SENTINEL, Duration::from_secs(10))?;
        if let Err(e) = &sentinel.response {
            anyhow::bail!("the sentinel request failed: {e}");
        }
        self.request_of(sentinel.local, Duration::from_secs(10))?;
        // The stage's own line is there unless Envoy never read a request from it.
        let line = self.request_of(local, Duration::ZERO).ok();
        let request_id = line
            .as_ref()
            .and_then(|l| l["request_id"].as_str())
            .map(str::to_string);
        let log_lines = request_id
            .and_then(|id| self.waf_lines.get(&id).cloned())
            .unwrap_or_default();
        let details = line
            .as_ref()
            .and_then(|l| l["details"].as_str())
            .map(str::to_string);
        let observed = match response {
            Ok(r) => Observed {
                response: Some(ObservedResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                }),
                error: None,
                log_lines,
            },
            Err(e) => Observed {
                response: None,
                error: Some(e),
                log_lines,
            },
        };
        Ok(EnvoyStage {
            failures: check::check(output, &observed),
            triggered: check::triggered_ids(&observed.log_lines),
            status: observed.response.as_ref().map(|r| r.status),
            details,
            error: observed.error,
            response: observed.response,
            received,
            access_log: line,
        })
    }

    /// Runs every stage of a test with the given expected outputs (one per stage), with
    /// `retry_once` as go-ftw does it. CRS v4.28's tests keep no cookies and follow no
    /// redirects; a stage that asks for either is reported as not sent.
    pub fn run_test(&mut self, test: &Test, outputs: &[Output]) -> anyhow::Result<EnvoyTest> {
        let mut stages = Vec::with_capacity(test.stages.len());
        for (index, stage) in test.stages.iter().enumerate() {
            let output = outputs.get(index).unwrap_or(&stage.output);
            if stage.input.save_cookie == Some(true) || stage.input.follow_redirect == Some(true) {
                stages.push(EnvoyStage {
                    failures: vec![Failure::NotSent {
                        reason: "save_cookie / follow_redirect: not run through Envoy".into(),
                    }],
                    ..Default::default()
                });
                continue;
            }
            let mut result = self.run_stage(&stage.input, output)?;
            if !result.failures.is_empty() && output.retry_once == Some(true) {
                result = self.run_stage(&stage.input, output)?;
            }
            stages.push(result);
        }
        Ok(EnvoyTest { stages })
    }
}
