//! `meshward bench-waf`: what OWASP CRS costs inside the WAF filter — VM start
//! and configure with the full rule set, linear memory per VM after loading
//! and after the requests, and the per-request cost on CRS's own regression
//! corpus against a pass-through filter measured in the same run.

use meshward_harness::ftw;
use meshward_harness::manifest::default_wasm_dir;
use meshward_harness::{PluginSpec, Proxy, Request, Response};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Directory of the built filters (default: target/wasm32-wasip1/release).
    #[arg(long)]
    pub wasm_dir: Option<PathBuf>,
    /// CRS's go-ftw tests, the request corpus (default: $MESHWARD_CRS_DIR, else ../shared/crs).
    #[arg(long)]
    pub tests: Option<PathBuf>,
    /// CRS paranoia level (blocking and detection).
    #[arg(long, default_value_t = 1)]
    pub paranoia: u8,
    /// Only log (`SecRuleEngine DetectionOnly`): every request runs every phase.
    #[arg(long)]
    pub detection_only: bool,
    /// Requests through each side after the warm-up (the WAF's VM sees warm-up + these).
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// How many times to start and configure a VM for the start-up figure.
    #[arg(long, default_value_t = 3)]
    pub starts: usize,
    /// Fail (exit 1) when a worker VM's linear memory exceeds this many MiB.
    #[arg(long)]
    pub max_memory_mib: Option<f64>,
}

fn waf_config(paranoia: u8, detection_only: bool) -> serde_json::Value {
    let mut directives = vec!["Include @recommended".to_string()];
    if detection_only {
        directives.push("SecRuleEngine DetectionOnly".into());
    }
    directives.push("Include @crs-setup".into());
    directives.push(format!(
        "SecAction \"id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level={paranoia}\""
    ));
    directives.push("Include @owasp_crs/*.conf".into());
    serde_json::json!({ "directives": directives })
}

fn proxy(spec: PluginSpec) -> anyhow::Result<Proxy> {
    let mut proxy = Proxy::builder()
        .log_limit(10_000)
        .plugin(spec)
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // A JSON API's answer, so response phases run and inspect a body.
    proxy.set_upstream(|_| {
        Response::new(200)
            .header("content-type", "text/html")
            .body(&b"<html><body>account 42: balance 1000.00 EUR</body></html>"[..])
    });
    Ok(proxy)
}

fn median_us(mut samples: Vec<u64>) -> f64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0) as f64 / 1000.0
}

fn send_block(proxy: &mut Proxy, requests: &[Request], start: usize, n: usize, out: &mut Vec<u64>) {
    for k in 0..n {
        let request = requests[(start + k) % requests.len()].clone();
        let t = Instant::now();
        let outcome = proxy.send(request);
        out.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(outcome);
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn worker_memory(proxy: &Proxy, plugin: &str) -> usize {
    proxy
        .vm_memory_bytes()
        .into_iter()
        .filter(|(name, _)| name == plugin)
        .map(|(_, bytes)| bytes)
        .max()
        .unwrap_or(0)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let wasm_dir = args.wasm_dir.clone().unwrap_or_else(default_wasm_dir);
    let waf_wasm = wasm_dir.join("meshward_waf.wasm");
    let baseline_wasm = wasm_dir.join("meshward_passthrough.wasm");
    let config = waf_config(args.paranoia, args.detection_only);
    let waf = PluginSpec::new("waf", waf_wasm).config_json(config);

    // Envoy starts a canary VM, one per worker and one for the main thread:
    // three start+configure rounds for one worker.
    let mut start_ms = Vec::new();
    let mut measured = None;
    for _ in 0..args.starts.max(1) {
        let t = Instant::now();
        let p = proxy(waf.clone())?;
        start_ms.push(t.elapsed().as_secs_f64() * 1000.0 / 3.0);
        measured = Some(p);
    }
    let Some(mut measured) = measured else {
        anyhow::bail!("no VM started");
    };
    start_ms.sort_by(f64::total_cmp);
    let loaded = worker_memory(&measured, "waf");

    let tests = args.tests.clone().unwrap_or_else(|| {
        std::env::var_os("MESHWARD_CRS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("../shared/crs"))
    });
    let suite = ftw::load_suite(&tests)?;
    let requests = ftw::corpus(&suite);
    anyhow::ensure!(!requests.is_empty(), "no requests in {}", tests.display());

    let mut baseline = proxy(PluginSpec::new("passthrough", baseline_wasm))?;
    let (mut warm_a, mut warm_b) = (Vec::new(), Vec::new());
    send_block(&mut measured, &requests, 0, args.warmup, &mut warm_a);
    send_block(&mut baseline, &requests, 0, args.warmup, &mut warm_b);

    let (mut a, mut b) = (Vec::new(), Vec::new());
    let block = 250;
    let mut done = 0;
    while done < args.requests {
        let n = block.min(args.requests - done);
        send_block(&mut measured, &requests, args.warmup + done, n, &mut a);
        send_block(&mut baseline, &requests, args.warmup + done, n, &mut b);
        done += n;
    }
    let served = worker_memory(&measured, "waf");
    let (ma, mb) = (median_us(a), median_us(b));

    let version = crs_version(&measured);
    println!(
        "WAF: OWASP CRS ({}), paranoia level {}, {}",
        if version.is_empty() {
            "embedded"
        } else {
            &version
        },
        args.paranoia,
        if args.detection_only {
            "DetectionOnly"
        } else {
            "blocking"
        }
    );
    println!(
        "VM start + configure with CRS: median {:.0} ms (min {:.0}, max {:.0}; {} runs of 3 VMs)",
        start_ms[start_ms.len() / 2],
        start_ms[0],
        start_ms[start_ms.len() - 1],
        start_ms.len()
    );
    println!(
        "linear memory per worker VM: {:.1} MiB after loading CRS, {:.1} MiB after {} requests",
        mib(loaded),
        mib(served),
        args.warmup + args.requests
    );
    println!(
        "corpus: {} requests from {} CRS test files, cycled; {} timed per side",
        requests.len(),
        suite.files.len(),
        args.requests
    );
    println!("{:<28} {:>10}", "", "median µs");
    println!("{:<28} {:>10.1}", "WAF with CRS", ma);
    println!("{:<28} {:>10.1}", "pass-through filter", mb);
    println!(
        "ratio (median): {:.1}× (the WAF adds {:.1} µs per request)",
        ma / mb.max(1e-9),
        ma - mb
    );
    if let Some(max) = args.max_memory_mib {
        let worst = mib(loaded.max(served));
        if worst > max {
            println!("linear memory {worst:.1} MiB is above the target {max:.1} MiB");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CRS version the WAF logged at configure (`OWASP_CRS/4.28.0`).
fn crs_version(proxy: &Proxy) -> String {
    proxy
        .logs()
        .iter()
        .find_map(|l| {
            let i = l.message.find("OWASP_CRS/")?;
            Some(
                l.message[i..]
                    .split(|c: char| c == ',' || c == '"' || c.is_whitespace())
                    .next()?
                    .to_string(),
            )
        })
        .unwrap_or_default()
}
