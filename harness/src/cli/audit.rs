//! `meshward audit`: verify exported audit records (signatures, chains, gaps)
//! and single audit headers, with the same code upstream services use
//! (`meshward_shared::audit`).

use anyhow::{anyhow, bail, Context as _};
use meshward_shared::audit::{
    env_var_for_key, verify_header, verify_header_at, AuditClaims, ChainVerifier, Keyring,
};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Verify a file of audit records: every hash and signature, every chain
    /// link, no sequence gaps, no reordering. Exit 1 if anything fails.
    #[command(
        after_help = "Input: one record per line as the filter writes it, Envoy log lines containing\n\
                      `meshward-audit-record: {…}`, or OTLP/HTTP JSON logs requests (one per line, as an\n\
                      OpenTelemetry collector's file exporter writes them). `-` reads standard input.\n\n\
                      Examples:\n  \
                      meshward audit verify records.jsonl --key-env k1 --key-env k2\n  \
                      kubectl logs deploy/api -c istio-proxy | meshward audit verify - --key-env k1"
    )]
    Verify(VerifyArgs),
    /// Verify one `x-meshward-audit` header value against its signature header
    /// and print what it says. Exit 1 if it does not verify.
    #[command(
        after_help = "Example:\n  meshward audit verify-header --header \"$AUDIT\" --signature \"$SIG\" --key-env k1"
    )]
    VerifyHeader(HeaderArgs),
}

#[derive(clap::Args)]
struct Keys {
    /// A key as `ID=SECRET` (repeatable). Prefer --key-env: a command line is visible to
    /// other users of the machine.
    #[arg(long = "key", value_name = "ID=SECRET")]
    key: Vec<String>,
    /// A key read from the environment, as `ID=VAR` or `ID` for MESHWARD_AUDIT_KEY_<ID>
    /// (repeatable).
    #[arg(long = "key-env", value_name = "ID[=VAR]")]
    key_env: Vec<String>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Files of records (JSON lines), or `-` for standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    keys: Keys,
    /// Accept unsigned records (filters run with signing off): hashes and chains still
    /// prove order and completeness, not authorship.
    #[arg(long)]
    allow_unsigned: bool,
    /// Accept streams that start after seq 1 (an export that begins mid-stream).
    #[arg(long)]
    allow_late_start: bool,
}

#[derive(clap::Args)]
struct HeaderArgs {
    /// The `x-meshward-audit` value.
    #[arg(long)]
    header: String,
    /// The `x-meshward-audit-signature` value.
    #[arg(long)]
    signature: String,
    #[command(flatten)]
    keys: Keys,
    /// Also refuse a header older than this many milliseconds (by this machine's clock).
    #[arg(long, value_name = "MS")]
    max_age_ms: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Verify(a) => verify(a),
        Command::VerifyHeader(a) => verify_one_header(a),
    }
}

fn keyring(keys: &Keys) -> anyhow::Result<Keyring> {
    let mut ring = Keyring::new();
    for spec in &keys.key {
        let (id, secret) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--key expects ID=SECRET (got an argument without '=')"))?;
        ring.insert(id, secret.as_bytes())
            .with_context(|| format!("--key {id}=…"))?;
    }
    for spec in &keys.key_env {
        let (id, var) = match spec.split_once('=') {
            Some((id, var)) => (id.to_string(), var.to_string()),
            None => (spec.clone(), env_var_for_key(spec)),
        };
        let secret = std::env::var(&var)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("--key-env {id}: environment variable {var} is not set"))?;
        ring.insert(&id, secret.as_bytes())
            .with_context(|| format!("--key-env {id}"))?;
    }
    Ok(ring)
}

fn open(path: &PathBuf) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let ring = keyring(&args.keys)?;
    if ring.is_empty() && !args.allow_unsigned {
        bail!("no keys: give --key-env ID (or --key ID=SECRET), or --allow-unsigned");
    }
    let mut verifier = ChainVerifier::new(&ring)
        .allow_unsigned(args.allow_unsigned)
        .allow_late_start(args.allow_late_start);
    // Line numbers run on across files, so every problem has one location.
    let mut line_no = 0usize;
    for path in &args.files {
        let mut reader = open(path)?;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            verifier.push_line(line_no, &String::from_utf8_lossy(&buf));
        }
    }
    let report = verifier.finish();
    print!("{report}");
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify_one_header(args: HeaderArgs) -> anyhow::Result<ExitCode> {
    let ring = keyring(&args.keys)?;
    if ring.is_empty() {
        bail!("no keys: give --key-env ID (or --key ID=SECRET)");
    }
    let result = match args.max_age_ms {
        None => verify_header(&args.header, &args.signature, &ring),
        Some(max) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            verify_header_at(&args.header, &args.signature, &ring, now, max)
        }
    };
    match result {
        Ok(claims) => {
            let kid = args
                .signature
                .strip_prefix("kid=")
                .and_then(|s| s.split(';').next())
                .unwrap_or("?");
            println!("OK: signature verifies with key {kid}");
            print_claims(&claims);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("FAILED: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_claims(c: &AuditClaims) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
    let decision = |d: &Option<meshward_shared::filter_state::Decision>| match d {
        None => "(absent: that filter did not decide)".to_string(),
        Some(d) => {
            let mut s = d.outcome.as_str().to_string();
            if let Some(rule) = &d.rule {
                s.push_str(&format!(" rule={rule}"));
            }
            if let Some(reason) = &d.reason {
                s.push_str(&format!(" reason={reason}"));
            }
            s
        }
    };
    println!("  request id:     {}", c.request_id);
    println!(
        "  time:           {} ({} ms)",
        meshward_shared::audit::format_rfc3339_millis(c.time_unix_ms),
        c.time_unix_ms
    );
    println!("  tenant:         {}", opt(&c.tenant));
    println!("  principal:      {}", opt(&c.principal));
    println!("  destination:    {}", opt(&c.destination));
    println!("  request:        {} {}", c.method, c.path);
    println!("  waf:            {}", decision(&c.waf));
    println!("  tenant (authz): {}", decision(&c.authz));
    println!("  ratelimit:      {}", decision(&c.ratelimit));
}
