//! `meshward replay`: many requests through the chain, one outcome line each,
//! and a summary.

use super::chain::ChainArgs;
use meshward_harness::request_file;
use meshward_harness::runner::{self, Runner};
use meshward_shared::audit::LOG_PREFIX;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Requests: JSON lines (see the README, "Request files").
    #[arg(long)]
    pub requests: PathBuf,
    /// One line per request entry, its repeats summed up, instead of one per request.
    #[arg(long)]
    pub group_repeats: bool,
    /// Show these upstream headers on each line (repeatable), e.g. x-meshward-audit.
    #[arg(long = "show-upstream")]
    pub show_upstream: Vec<String>,
    /// Show these response headers on each line (repeatable), e.g. retry-after.
    #[arg(long = "show-response")]
    pub show_response: Vec<String>,
    /// Show these filter-state keys on each line (repeatable), e.g. meshward.waf.rules.
    #[arg(long = "show-filter-state")]
    pub show_filter_state: Vec<String>,
    /// Write the audit records the audit filter logged (JSON lines) to this file.
    #[arg(long)]
    pub audit_records: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let chain = args.chain.options();
    let specs = request_file::read(&args.requests)?;
    let mut runner = Runner::new(chain)?;
    println!("chain: {}", runner.plugin_names().join(" → "));
    println!("{:>4}  {:<46}  outcome", "#", "request");
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    let (mut sent, mut unexpected) = (0usize, 0usize);
    let mut records = Vec::new();
    for (n, spec) in specs.iter().enumerate() {
        let outcomes = runner.send(spec)?;
        let mut grouped: BTreeMap<String, usize> = BTreeMap::new();
        for outcome in &outcomes {
            sent += 1;
            let line = runner::describe(outcome);
            *by_outcome.entry(line.clone()).or_default() += 1;
            *grouped.entry(line.clone()).or_default() += 1;
            let problems = spec
                .expect
                .as_ref()
                .map(|e| runner::check(e, outcome))
                .unwrap_or_default();
            unexpected += usize::from(!problems.is_empty());
            for l in &outcome.logs {
                if let Some(record) = l.message.strip_prefix(LOG_PREFIX) {
                    records.push(record.to_string());
                }
            }
            if !args.group_repeats {
                print_line(n + 1, &spec.label(), &line, outcome, &args, &problems);
            } else if !problems.is_empty() {
                for p in &problems {
                    println!("{:>4}  {:<46}  UNEXPECTED: {p}", n + 1, spec.label());
                }
            }
        }
        if args.group_repeats {
            let summary = grouped
                .iter()
                .map(|(line, count)| {
                    if outcomes.len() > 1 {
                        format!("{count}× {line}")
                    } else {
                        line.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let last = outcomes.last();
            let extra = last.map(|o| extras(o, &args)).unwrap_or_default();
            println!("{:>4}  {:<46}  {summary}{extra}", n + 1, spec.label());
        }
    }
    println!();
    println!("{sent} requests:");
    for (line, count) in &by_outcome {
        println!("  {count:>5}  {line}");
    }
    if let Some(path) = &args.audit_records {
        let mut file = std::fs::File::create(path)?;
        for r in &records {
            writeln!(file, "{r}")?;
        }
        println!(
            "{} audit records written to {}",
            records.len(),
            path.display()
        );
    }
    if unexpected > 0 {
        println!("{unexpected} outcomes differ from their expectation");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn extras(outcome: &meshward_harness::Outcome, args: &Args) -> String {
    let mut out = String::new();
    for name in &args.show_upstream {
        if let Some(v) = outcome.upstream_header(name) {
            let v = if v.len() > 140 {
                format!("{}…", &v[..v.floor_char_boundary(140)])
            } else {
                v.to_string()
            };
            out.push_str(&format!("\n{:>6}{:<46}  ↳ upstream {name}: {v}", "", ""));
        }
    }
    for name in &args.show_response {
        if let Some(v) = outcome.response.get(name) {
            out.push_str(&format!("\n{:>6}{:<46}  ↳ response {name}: {v}", "", ""));
        }
    }
    for key in &args.show_filter_state {
        if let Some(v) = outcome.filter_state_text(key).filter(|v| !v.is_empty()) {
            out.push_str(&format!("\n{:>6}{:<46}  ↳ {key}: {v}", "", ""));
        }
    }
    out
}

fn print_line(
    n: usize,
    label: &str,
    line: &str,
    outcome: &meshward_harness::Outcome,
    args: &Args,
    problems: &[String],
) {
    println!("{n:>4}  {label:<46}  {line}{}", extras(outcome, args));
    for p in problems {
        println!("{:>4}  {:<46}  UNEXPECTED: {p}", "", "");
    }
}
