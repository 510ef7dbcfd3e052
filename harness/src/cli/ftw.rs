//! `meshward ftw`: CRS's go-ftw regression tests through the WAF in the harness.

use meshward_harness::ftw::{self, overrides::Overrides, waf_config, FrontEnd, Options, Report};
use meshward_harness::manifest::default_wasm_dir;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The WAF .wasm, or a directory holding meshward_waf.wasm (default: target/wasm32-wasip1/release).
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// A CRS directory whose crs-setup.conf.example, rules/*.conf and rules/*.data are passed in
    /// the configuration (default: the CRS embedded in the .wasm).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// The go-ftw test files: a directory searched recursively for *.yaml (a CRS checkout's
    /// tests/regression/tests is found by itself).
    #[arg(long)]
    pub tests: PathBuf,
    /// Platform overrides in go-ftw's format: replaced or ignored tests, each with a reason.
    #[arg(long)]
    pub overrides: Option<PathBuf>,
    /// Run only the tests whose id (`<rule_id>-<test_id>`) matches this regex.
    #[arg(long)]
    pub include: Option<String>,
    /// Exit 1 when the pass rate (percent of the tests run, ignored ones left out) is lower.
    #[arg(long)]
    pub min_pass_rate: Option<f64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Send each request as the test wrote it, without Envoy's HTTP/1 codec and connection
    /// manager in front (every method, version and header reaches the WAF).
    #[arg(long)]
    pub as_written: bool,
    /// Resolve dot segments in :path before the WAF, as Istio's sidecars do (off: CRS's tests
    /// are written for the path as sent).
    #[arg(long)]
    pub normalize_path: bool,
    /// Fail when a test file has fields outside the go-ftw schema (go-ftw ignores them).
    #[arg(long)]
    pub strict_schema: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let wasm = match args.wasm {
        Some(path) if path.is_dir() => path.join("meshward_waf.wasm"),
        Some(path) => path,
        None => default_wasm_dir().join("meshward_waf.wasm"),
    };
    let rules = match &args.rules {
        Some(dir) => waf_config::Rules::Dir(dir.clone()),
        None => waf_config::Rules::Embedded,
    };
    let include = args
        .include
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--include: {e}"))?;
    let overrides = match &args.overrides {
        Some(path) => Overrides::load(path)?,
        None => Overrides::default(),
    };
    let suite = ftw::load_suite(&args.tests)?;
    if args.strict_schema {
        if let Some(file) = suite.files.iter().find(|f| !f.unknown_fields.is_empty()) {
            anyhow::bail!(
                "{}: fields outside the go-ftw schema: {}",
                file.name,
                file.unknown_fields.join(", ")
            );
        }
    }
    let options = Options {
        wasm: wasm.clone(),
        config: waf_config::crs_run(&rules)?,
        front_end: if args.as_written {
            FrontEnd::AsWritten
        } else {
            FrontEnd::Envoy
        },
        normalize_path: args.normalize_path,
    };
    let mut runner = ftw::Runner::new(&options).map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = ftw::run(&mut runner, &suite, &overrides, include.as_ref());

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, &wasm, &suite.dir);
    }
    if let Some(min) = args.min_pass_rate {
        if report.pass_rate < min {
            if !args.json {
                println!(
                    "FAIL: pass rate {:.2}% is below --min-pass-rate {min}%",
                    report.pass_rate
                );
            }
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &Report, wasm: &std::path::Path, dir: &std::path::Path) {
    println!("waf: {}", wasm.display());
    println!("tests: {}", dir.display());
    println!();
    println!(
        "{:<60} {:>6} {:>6} {:>6} {:>7}",
        "file", "tests", "passed", "failed", "ignored"
    );
    for file in &report.files {
        let total = file.passed + file.failed + file.ignored;
        if total == 0 {
            continue;
        }
        println!(
            "{:<60} {:>6} {:>6} {:>6} {:>7}",
            file.file, total, file.passed, file.failed, file.ignored
        );
    }
    let schema: Vec<String> = report
        .files
        .iter()
        .filter(|f| !f.unknown_fields.is_empty())
        .map(|f| format!("  {}: {}", f.file, f.unknown_fields.join(", ")))
        .collect();
    if !schema.is_empty() {
        println!();
        println!("fields outside the go-ftw schema (ignored, as go-ftw does):");
        for line in schema {
            println!("{line}");
        }
    }
    let ignored: Vec<String> = report
        .files
        .iter()
        .flat_map(|f| f.ignored_tests.iter())
        .map(|t| format!("  {}: {}", t.id, t.reason))
        .collect();
    if !ignored.is_empty() {
        println!();
        println!("ignored ({}):", ignored.len());
        for line in ignored {
            println!("{line}");
        }
    }
    if !report.unused_overrides.is_empty() {
        println!();
        println!("overrides matching no test:");
        for line in &report.unused_overrides {
            println!("  {line}");
        }
    }
    let failures: Vec<String> = report.failures().map(|f| f.describe()).collect();
    if !failures.is_empty() {
        println!();
        println!("failed ({}):", failures.len());
        for line in failures {
            println!("  {line}");
        }
    }
    println!();
    println!(
        "passed {} of {} tests run: {:.2}% ({} failed, {} ignored by overrides, {} not included)",
        report.passed,
        report.run(),
        report.pass_rate,
        report.failed,
        report.ignored,
        report.skipped
    );
    let per_test_ms = if report.run() == 0 {
        0.0
    } else {
        report.elapsed_seconds * 1000.0 / report.run() as f64
    };
    println!(
        "{} requests through the WAF, {} answered by Envoy before it, in {:.2} s ({:.3} ms per test)",
        report.requests_sent, report.answered_by_envoy, report.elapsed_seconds, per_test_ms
    );
}
