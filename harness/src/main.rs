//! `meshward`: run requests through a chain of meshward filters in the harness,
//! benchmark it, and the tools around it (validation, images, audit checks).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

#[derive(Parser)]
#[command(
    name = "meshward",
    version,
    about = "meshward filters: harness, tools and checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send one request through the plugin chain and print the outcome.
    Run(cli::run::Args),
    /// Send many requests (JSON lines) through the chain; one outcome line each and a summary.
    Replay(cli::replay::Args),
    /// Measure the chain's per-request cost against a pass-through filter in the same run.
    Bench(cli::bench::Args),
    /// Measure the WAF with OWASP CRS: VM start, memory per VM, per-request cost on CRS's corpus.
    BenchWaf(cli::bench_waf::Args),
    /// Write an Envoy bootstrap (YAML) that runs the manifests' filters behind an mTLS listener.
    EnvoyConfig(cli::envoy_config::Args),
    /// Build, push, pull and pin the filters' OCI images (Istio's compat and oci formats).
    Oci(cli::oci::Args),
    /// Check WasmPlugin manifests against Istio's CRD and each filter's pluginConfig.
    Validate(cli::validate::Args),
    /// Verify audit records (signatures, chains, gaps) and audit headers.
    Audit(cli::audit::Args),
    /// Run CRS's go-ftw regression tests through the WAF and report the pass rate.
    Ftw(cli::ftw::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cli::run::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::BenchWaf(args) => cli::bench_waf::run(args),
        Command::EnvoyConfig(args) => cli::envoy_config::run(args),
        Command::Oci(args) => cli::oci::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Audit(args) => cli::audit::run(args),
        Command::Ftw(args) => cli::ftw::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("meshward: {err:#}");
            ExitCode::from(2)
        }
    }
}
