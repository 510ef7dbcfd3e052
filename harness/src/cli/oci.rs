//! `meshward oci`: build, push, pull and pin the filters' OCI images (see harness/OCI.md).

use anyhow::{bail, Context, Result};
use meshward_harness::oci::{
    self, Client, ClientOptions, DigestLine, Format, ImageMeta, Reference,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The four filters, in Istio's chain order.
const FILTERS: [&str; 4] = ["waf", "tenant", "ratelimit", "audit"];

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(clap::Subcommand)]
enum OciCommand {
    /// Write an OCI image layout per filter (compat and/or oci format); print each manifest digest.
    Build(BuildArgs),
    /// Push one image to a registry over the OCI distribution API; print its manifest digest.
    Push(PushArgs),
    /// Fetch an image as Istio's agent does, check its digests and extract the module.
    Pull(PullArgs),
    /// Set `url:` and `sha256:` of WasmPlugin manifests from a digest file.
    Pin(PinArgs),
}

#[derive(clap::Args, Clone)]
struct RegistryArgs {
    /// Talk http, not https (loopback registries use http anyway).
    #[arg(long)]
    plain_http: bool,
    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// Registry user (else MESHWARD_REGISTRY_USERNAME).
    #[arg(long)]
    username: Option<String>,
    /// Read the registry password from stdin (else MESHWARD_REGISTRY_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
}

impl RegistryArgs {
    fn client(&self) -> Result<Client> {
        let password = if self.password_stdin {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            Some(s.trim_end_matches(['\r', '\n']).to_string())
        } else {
            std::env::var("MESHWARD_REGISTRY_PASSWORD").ok()
        };
        Ok(Client::new(ClientOptions {
            plain_http: self.plain_http,
            insecure_tls: self.insecure,
            username: self
                .username
                .clone()
                .or_else(|| std::env::var("MESHWARD_REGISTRY_USERNAME").ok()),
            password,
            timeout: None,
        }))
    }
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Filters to package (default: all four).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(FILTERS))]
    filters: Vec<String>,
    /// Output directory; layouts go to <out>/<format>/meshward-<filter>.
    #[arg(long, default_value = "target/oci")]
    out: PathBuf,
    /// Only this format (default: both).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Where the built meshward_<filter>.wasm files are (default: $MESHWARD_WASM_DIR,
    /// else target/wasm32-wasip1/release).
    #[arg(long)]
    wasm_dir: Option<PathBuf>,
    /// Repository prefix of the image references.
    #[arg(long, default_value = "ghcr.io/meshward")]
    repo: String,
    /// Image tag.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
    /// Also write the digest lines (`sha256:… <ref> <format> <layout>`) to this file.
    #[arg(long)]
    digest_file: Option<PathBuf>,
    /// Push every image to its reference after building it.
    #[arg(long)]
    push: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["wasm", "layout"])))]
struct PushArgs {
    /// Where to push, e.g. 127.0.0.1:5000/meshward/meshward-waf:0.1.0 (`oci://` optional).
    reference: String,
    /// A .wasm module to package (with --format).
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// An OCI image layout written by `meshward oci build`.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Image format for --wasm.
    #[arg(long, value_enum, default_value_t = Format::Compat)]
    format: Format,
    /// Plugin name recorded in the oci format's runtime config (default: image name without `meshward-`).
    #[arg(long)]
    plugin_name: Option<String>,
    /// Pin this WasmPlugin manifest to the pushed image (url and sha256).
    #[arg(long)]
    pin: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["reference", "layout"])))]
struct PullArgs {
    /// The image, e.g. oci://127.0.0.1:5000/meshward/meshward-waf:0.1.0.
    reference: Option<String>,
    /// Read a local OCI image layout instead of a registry.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Write the module here.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Expected manifest digest (64 hex, as in WasmPlugin.spec.sha256, or sha256:…).
    #[arg(long)]
    sha256: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(clap::Args)]
struct PinArgs {
    /// A WasmPlugin file, or a directory of them.
    #[arg(long, default_value = "wasmplugins")]
    manifests: PathBuf,
    /// Digest lines from `meshward oci build --digest-file`.
    #[arg(long)]
    digest_file: PathBuf,
    /// Which format's digests to pin.
    #[arg(long, value_enum, default_value_t = Format::Compat)]
    format: Format,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        OciCommand::Build(a) => build(a),
        OciCommand::Push(a) => push(a),
        OciCommand::Pull(a) => pull(a),
        OciCommand::Pin(a) => pin(a),
    }
}

fn build(args: BuildArgs) -> Result<ExitCode> {
    let filters: Vec<&str> = if args.filters.is_empty() {
        FILTERS.to_vec()
    } else {
        args.filters.iter().map(String::as_str).collect()
    };
    let formats: Vec<Format> = match args.format {
        Some(f) => vec![f],
        None => Format::ALL.to_vec(),
    };
    let mut client = if args.push {
        Some(args.registry.client()?)
    } else {
        None
    };
    let wasm_dir = args
        .wasm_dir
        .clone()
        .or_else(|| std::env::var_os("MESHWARD_WASM_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/wasm32-wasip1/release"));
    let mut lines = Vec::new();
    for filter in &filters {
        let path = wasm_dir.join(format!("meshward_{filter}.wasm"));
        let wasm = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (build it: cargo build --release --target wasm32-wasip1 -p meshward-{filter})",
                path.display()
            )
        })?;
        for &format in &formats {
            let image = oci::build_image(
                &wasm,
                format,
                &ImageMeta {
                    plugin_name: filter.to_string(),
                },
            )
            .with_context(|| format!("building the {format} image of {}", path.display()))?;
            let layout = args
                .out
                .join(format.as_str())
                .join(format!("meshward-{filter}"));
            oci::write_layout(&layout, &image, &args.tag)?;
            let reference: Reference = format!(
                "{}/meshward-{filter}:{}",
                args.repo.trim_end_matches('/'),
                args.tag
            )
            .parse()?;
            if let Some(client) = client.as_mut() {
                let pushed = client.push(&reference, &image)?;
                eprintln!("pushed {reference} ({format})");
                debug_assert_eq!(pushed, image.digest());
            }
            let line = DigestLine {
                digest: image.digest(),
                reference,
                format,
                layout: Some(layout),
            };
            println!("{line}");
            lines.push(line);
        }
    }
    if let Some(file) = &args.digest_file {
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn image_name(reference: &Reference) -> &str {
    reference
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&reference.repository)
}

fn push(args: PushArgs) -> Result<ExitCode> {
    let reference: Reference = args.reference.parse()?;
    let image = match (&args.wasm, &args.layout) {
        (Some(wasm), None) => {
            let bytes =
                std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let plugin_name = args.plugin_name.clone().unwrap_or_else(|| {
                let name = image_name(&reference);
                name.strip_prefix("meshward-").unwrap_or(name).to_string()
            });
            oci::build_image(&bytes, args.format, &ImageMeta { plugin_name })?
        }
        (None, Some(layout)) => oci::read_layout(layout, None)
            .with_context(|| format!("reading the layout {}", layout.display()))?,
        _ => bail!("give exactly one of --wasm and --layout"),
    };
    let mut client = args.registry.client()?;
    let digest = client.push(&reference, &image)?;
    println!("{digest}");
    if let Some(manifest) = &args.pin {
        let current = std::fs::read_to_string(manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let plain = Reference {
            digest: None,
            ..reference.clone()
        };
        let pinned = oci::pin_yaml(&current, &plain, &digest)
            .with_context(|| manifest.display().to_string())?;
        if pinned != current {
            std::fs::write(manifest, pinned)?;
        }
        eprintln!(
            "pinned {} to oci://{plain} sha256 {}",
            manifest.display(),
            oci::digest_hex(&digest)?
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn pull(args: PullArgs) -> Result<ExitCode> {
    let (digest, wasm, variant) = match (&args.reference, &args.layout) {
        (Some(reference), None) => {
            let reference: Reference = reference.parse()?;
            let mut client = args.registry.client()?;
            let pulled = client.pull(&reference, args.sha256.as_deref())?;
            (pulled.manifest_digest, pulled.wasm, pulled.variant)
        }
        (None, Some(layout)) => {
            let image = oci::read_layout(layout, None)?;
            let digest = image.digest();
            if let Some(expected) = &args.sha256 {
                let expected = oci::normalize_digest(expected)?;
                if expected != digest {
                    bail!(
                        "layout {} has manifest digest {digest}, expected {expected}",
                        layout.display()
                    );
                }
            }
            let (wasm, variant) = oci::extract_from_image(&image)?;
            (digest, wasm, variant)
        }
        _ => bail!("give exactly one of <reference> and --layout"),
    };
    if !wasm.starts_with(b"\0asm") {
        bail!("the extracted module is not WebAssembly (no \\0asm magic)");
    }
    println!("manifest {digest}");
    println!("variant {variant}");
    println!(
        "module {} ({} bytes)",
        oci::sha256_digest(&wasm),
        wasm.len()
    );
    if let Some(out) = &args.output {
        write_file(out, &wasm)?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

fn pin(args: PinArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.digest_file)
        .with_context(|| format!("reading {}", args.digest_file.display()))?;
    let lines = oci::parse_digest_file(&text)?;
    let done = oci::pin_manifests(&args.manifests, &lines, args.format)?;
    if done.is_empty() {
        bail!(
            "no WasmPlugin under {} matches an image of format {} in {}",
            args.manifests.display(),
            args.format,
            args.digest_file.display()
        );
    }
    for (file, url, digest) in done {
        println!("{} {url} {digest}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
