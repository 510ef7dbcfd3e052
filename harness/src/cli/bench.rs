//! `meshward bench`: the per-request cost of a chain against a chain of
//! pass-through filters of the same length, measured in the same run, in
//! interleaved blocks so that machine noise hits both alike.

use super::chain::ChainArgs;
use meshward_harness::manifest::{default_wasm_dir, PluginSpec};
use meshward_harness::request_file::{self, RequestMaker};
use meshward_harness::runner;
use meshward_harness::{Proxy, Request};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The chain to measure.
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Requests (JSON lines); sent in a loop, each entry `repeat` times.
    #[arg(long)]
    pub requests: PathBuf,
    /// Timed requests per side (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    pub iterations: usize,
    #[arg(long, default_value_t = 1_000)]
    pub warmup: usize,
    /// Move the virtual clock by this much before each request (e.g. to stay under a rate limit).
    #[arg(long, default_value_t = 0)]
    pub advance_us: u64,
    /// The pass-through filter (default: meshward_passthrough.wasm in the wasm dir).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Fail (exit 1) when the median ratio exceeds this.
    #[arg(long)]
    pub max_ratio: Option<f64>,
}

struct Stats {
    median_us: f64,
    p99_us: f64,
    per_second: f64,
}

fn stats(mut samples: Vec<u64>) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    let mean_ns = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    Stats {
        median_us: at(0.5),
        p99_us: at(0.99),
        per_second: 1e9 / mean_ns.max(1.0),
    }
}

fn time_block(
    proxy: &mut Proxy,
    requests: &[Request],
    start: usize,
    count: usize,
    advance: Duration,
    out: &mut Vec<u64>,
) {
    for k in 0..count {
        let request = requests[(start + k) % requests.len()].clone();
        if !advance.is_zero() {
            proxy.advance(advance);
        }
        let t = Instant::now();
        let outcome = proxy.send(request);
        out.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(outcome);
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let chain = args.chain.options();
    let specs = chain.specs()?;
    let wasm_dir = args.chain.wasm_dir.clone().unwrap_or_else(default_wasm_dir);
    let baseline_wasm = args
        .baseline
        .clone()
        .unwrap_or_else(|| wasm_dir.join("meshward_passthrough.wasm"));
    let baseline_specs: Vec<PluginSpec> = (0..specs.len())
        .map(|i| PluginSpec::new(&format!("passthrough-{i}"), baseline_wasm.clone()))
        .collect();

    let entries = request_file::read(&args.requests)?;
    let mut maker = RequestMaker::new()?;
    let mut requests = Vec::new();
    let node = entries.first().map(|e| e.node.clone()).unwrap_or_default();
    for entry in &entries {
        let request = maker.make(entry)?;
        for _ in 0..entry.repeat.max(1) {
            let n = requests.len();
            let mut r = request.clone();
            if entry.worker.is_none() {
                r.worker = n % args.chain.workers.max(1);
            }
            requests.push(r);
        }
    }
    anyhow::ensure!(!requests.is_empty(), "no requests");

    let mut measured = chain.build(&specs, &node)?;
    let mut baseline = chain.build(&baseline_specs, &node)?;
    let advance = Duration::from_micros(args.advance_us);

    let (mut warm_a, mut warm_b) = (Vec::new(), Vec::new());
    time_block(
        &mut measured,
        &requests,
        0,
        args.warmup,
        advance,
        &mut warm_a,
    );
    time_block(
        &mut baseline,
        &requests,
        0,
        args.warmup,
        advance,
        &mut warm_b,
    );

    // What the measured requests did, so a reader knows which path was timed.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests.iter().take(requests.len().min(200)) {
        let o = measured.send(r.clone());
        *outcomes.entry(runner::describe(&o)).or_default() += 1;
    }

    let (mut a, mut b) = (
        Vec::with_capacity(args.iterations),
        Vec::with_capacity(args.iterations),
    );
    let block = 250;
    let mut done = 0;
    while done < args.iterations {
        let n = block.min(args.iterations - done);
        time_block(&mut measured, &requests, done, n, advance, &mut a);
        time_block(&mut baseline, &requests, done, n, advance, &mut b);
        done += n;
    }
    let (sa, sb) = (stats(a), stats(b));
    let ratio = sa.median_us / sb.median_us.max(1e-9);
    println!(
        "chain: {} ({} worker{}, {} requests per side)",
        specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
        args.chain.workers,
        if args.chain.workers == 1 { "" } else { "s" },
        args.iterations
    );
    println!(
        "timed requests did: {}",
        outcomes
            .iter()
            .map(|(k, v)| format!("{v}× {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12}",
        "", "median µs", "p99 µs", "requests/s"
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>12.0}",
        "measured chain", sa.median_us, sa.p99_us, sa.per_second
    );
    println!(
        "{:<28} {:>10.1} {:>10.1} {:>12.0}",
        format!(
            "{} pass-through filter{}",
            specs.len(),
            if specs.len() == 1 { "" } else { "s" }
        ),
        sb.median_us,
        sb.p99_us,
        sb.per_second
    );
    println!(
        "ratio (median): {ratio:.2}× (the chain adds {:.1} µs per request)",
        sa.median_us - sb.median_us
    );
    if let Some(max) = args.max_ratio {
        if ratio > max {
            println!("ratio {ratio:.2}× is above the target {max:.2}×");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
