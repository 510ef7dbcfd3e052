//! `meshward run`: one request through the chain, and everything about its outcome.

use super::chain::ChainArgs;
use meshward_harness::runner::{self, Runner};
use meshward_harness::{request_file, Outcome};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The request: a JSON file (see the README, "Request files").
    #[arg(long)]
    pub request: PathBuf,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let specs = request_file::read(&args.request)?;
    let mut runner = Runner::new(args.chain.options())?;
    let mut failed = false;
    for spec in &specs {
        for outcome in runner.send(spec)? {
            let problems = spec
                .expect
                .as_ref()
                .map(|e| runner::check(e, &outcome))
                .unwrap_or_default();
            failed |= !problems.is_empty();
            if args.json {
                println!("{}", outcome_json(&outcome));
            } else {
                print_outcome(&spec.label(), &outcome);
                for p in &problems {
                    println!("  UNEXPECTED: {p}");
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 2000 {
        format!(
            "{}… ({} bytes)",
            &s[..s.floor_char_boundary(2000)],
            bytes.len()
        )
    } else {
        s.into_owned()
    }
}

pub fn print_outcome(label: &str, outcome: &Outcome) {
    println!("== {label}");
    println!("client got: {}", runner::describe(outcome));
    for (k, v) in &outcome.response.headers {
        println!("  {k}: {v}");
    }
    if !outcome.response.body.is_empty() {
        println!("  body: {}", text(&outcome.response.body));
    }
    match &outcome.upstream {
        Some(up) => {
            println!("upstream received: {} {}", up.method, up.path);
            for (k, v) in &up.headers {
                println!("  {k}: {v}");
            }
            if !up.body.is_empty() {
                println!("  body: {}", text(&up.body));
            }
        }
        None => println!("upstream received: nothing"),
    }
    if !outcome.logs.is_empty() {
        println!("logs:");
        for l in &outcome.logs {
            println!("  [{}] {}: {}", l.level.as_str(), l.plugin, l.message);
        }
    }
}

pub fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "status": outcome.status(),
        "repliedBy": outcome.replied_by(),
        "details": outcome.local_reply.as_ref().map(|l| l.details.clone()),
        "reset": outcome.reset,
        "responseHeaders": outcome.response.headers,
        "responseBody": String::from_utf8_lossy(&outcome.response.body),
        "upstream": outcome.upstream.as_ref().map(|u| serde_json::json!({
            "method": u.method, "path": u.path, "headers": u.headers,
            "body": String::from_utf8_lossy(&u.body),
        })),
        "logs": outcome.logs,
    })
}
