//! `meshward validate`: checks Istio WasmPlugin manifests against Istio's CRD
//! (schema and CEL rules) and each meshward filter's `pluginConfig` against the
//! filter's own parser. One line per document; exit status 1 if any is invalid.

use anyhow::Context as _;
use meshward_harness::validate::{default_crd_path, Crd, Options, Validator, Verdict};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshward validate wasmplugins/\n  meshward validate --require-digests wasmplugins/overlays/bank-a\n  meshward validate --expect-errors ../shared/istio/wasm-invalid.yaml"
)]
pub struct Args {
    /// Manifest files or directories (searched recursively for *.yaml / *.yml).
    /// Kustomizations are rendered and their output validated.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The WasmPlugin CustomResourceDefinition
    /// (default: $MESHWARD_SHARED_DIR/istio/wasmplugin-crd.yaml, else ../shared/istio/…).
    #[arg(long)]
    crd: Option<PathBuf>,
    /// Refuse oci:// and http(s):// modules without a pinned `sha256` (release overlays).
    #[arg(long)]
    require_digests: bool,
    /// Istio corpus convention: a document with a top-level `_err` must fail with that text.
    #[arg(long)]
    expect_errors: bool,
    /// Print only invalid documents and the summary.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let crd_path = args.crd.unwrap_or_else(default_crd_path);
    let crd = Crd::load(&crd_path).with_context(|| "loading the CRD (use --crd PATH)")?;
    let validator = Validator::new(
        crd,
        Options {
            require_digests: args.require_digests,
            expect_errors: args.expect_errors,
        },
    );
    let reports = validator.validate_paths(&args.paths)?;
    let (mut ok, mut invalid, mut skipped) = (0, 0, 0);
    for r in &reports {
        match r.verdict {
            Verdict::Ok(_) => ok += 1,
            Verdict::Invalid(_) => invalid += 1,
            Verdict::Skipped(_) => skipped += 1,
        }
        if !args.quiet || r.is_error() {
            println!("{r}");
        }
    }
    println!("{ok} valid, {invalid} invalid, {skipped} skipped");
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
