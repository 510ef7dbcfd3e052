//! OCI images of the meshward filters, in the two formats Istio's agent accepts, and a
//! small client of the OCI distribution API to push and pull them.
//!
//! What Istio's agent (`pkg/wasm/imagefetcher.go`) does with an `oci://` URL, and what
//! [`extract_wasm`] reproduces:
//! 1. fetch the manifest (an index is resolved to its `linux/amd64` image); the image's
//!    digest — the sha256 of the raw manifest bytes — is what `WasmPlugin.spec.sha256` pins;
//! 2. a Docker schema-2 manifest: the last layer must be
//!    `application/vnd.docker.image.rootfs.diff.tar.gzip` and hold `plugin.wasm`;
//! 3. otherwise "compat": the last layer is `application/vnd.oci.image.layer.v1.tar+gzip`
//!    and holds a file whose base name is `plugin.wasm`;
//! 4. otherwise "oci": exactly two layers, the first one typed
//!    `application/vnd.module.wasm.content.layer.v1+wasm` is the raw module.
//!
//! Everything is built deterministically (fixed tar metadata, gzip header without a
//! timestamp, JSON with a fixed field order), so the same `.wasm` always gives the same
//! manifest digest, on any machine.

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, tar+gzip: the "compat" layer.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker layer, tar+gzip: also accepted for "compat" when the manifest is a Docker one.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The raw module layer of the "oci" format.
pub const WASM_CONTENT_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The runtime configuration of the "oci" format.
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// The file Istio looks for in a "compat" layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Istio's default `MaxWasmBinarySizeBytes` (256 MiB): the most the agent reads of a module.
pub const MAX_WASM_BINARY_SIZE: u64 = 256 << 20;
/// The largest manifest we accept from a registry (the distribution API's own limit is 4 MiB).
const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The OCI annotation naming a manifest in an image layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Which of Istio's two image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    /// Last layer `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`.
    Compat,
    /// Two layers: the raw module (`…wasm.content.layer.v1+wasm`) and its runtime config.
    Oci,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Compat, Format::Oci];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Compat => "compat",
            Format::Oci => "oci",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "compat" => Ok(Format::Compat),
            "oci" => Ok(Format::Oci),
            other => bail!("unknown image format {other:?} (expected compat or oci)"),
        }
    }
}

/// `sha256:<64 lowercase hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The 64 lowercase hex digits of the sha256 of `data` (the form `WasmPlugin.spec.sha256` uses).
pub fn sha256_hex(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks that `digest` is `sha256:<64 lowercase hex>` and returns the hex part.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow!("unsupported digest {digest:?} (only sha256 is supported)"))?;
    ensure!(is_hex64(hex), "malformed digest {digest:?}");
    Ok(hex)
}

/// Accepts `sha256:<hex>` or bare `<hex>` (as in a WasmPlugin) and returns `sha256:<hex>`.
pub fn normalize_digest(s: &str) -> Result<String> {
    let s = s.trim();
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    ensure!(
        is_hex64(&hex),
        "malformed sha256 {s:?} (expected 64 hex digits)"
    );
    Ok(format!("sha256:{hex}"))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker); also an image layout's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// Bytes with their media type and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }

    fn descriptor(&self, annotations: &[(&str, &str)]) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.data.len() as u64,
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            platform: None,
        }
    }
}

/// A single-platform image: its raw manifest and every blob the manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest exactly as pushed; its sha256 is the image digest.
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    /// The config blob first, then the layers (each digest once).
    pub blobs: Vec<Blob>,
}

impl Image {
    /// `sha256:<hex>` of the manifest: what a registry calls the image and Istio pins.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    pub fn parsed_manifest(&self) -> Result<Manifest> {
        serde_json::from_slice(&self.manifest).context("parsing the image manifest")
    }

    fn blob(&self, digest: &str) -> Option<&Blob> {
        self.blobs.iter().find(|b| b.digest == digest)
    }
}

/// What an image says about the module it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageMeta {
    /// The plugin / root id, e.g. `waf` (recorded in the "oci" runtime config).
    pub plugin_name: String,
}

/// The deterministic `tar+gzip` layer of the "compat" format: one regular file
/// `plugin.wasm`, mode 0644, uid/gid 0, mtime 0, no user names; gzip header without
/// name or timestamp. Returns `(gzip bytes, uncompressed tar bytes)`.
pub fn compat_layer(wasm: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_username("")?;
    header.set_groupname("")?;
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    let tar = builder.into_inner()?;

    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    Ok((gz.finish()?, tar))
}

/// Serialises JSON compactly with struct field order (serde_json keeps it), so the bytes
/// are a pure function of the value.
fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// Builds the image of one module in `format`. Deterministic: same inputs, same digest.
pub fn build_image(wasm: &[u8], format: Format, meta: &ImageMeta) -> Result<Image> {
    ensure!(
        wasm.starts_with(b"\0asm"),
        "not a WebAssembly module (no \\0asm magic)"
    );
    ensure!(
        wasm.len() as u64 <= MAX_WASM_BINARY_SIZE,
        "module is {} bytes, more than Istio's limit of {MAX_WASM_BINARY_SIZE}",
        wasm.len()
    );
    let (config, layers, layer_descs, annotations) = match format {
        Format::Compat => {
            let (gz, tar) = compat_layer(wasm)?;
            let config = serde_json::json!({
                "architecture": "wasm",
                "os": "wasi",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar)]},
            });
            let config = Blob::new(OCI_CONFIG, json_bytes(&config)?);
            let layer = Blob::new(OCI_LAYER_TAR_GZIP, gz);
            let desc = layer.descriptor(&[]);
            (
                config,
                vec![layer],
                vec![desc],
                vec![("module.wasm.image/variant", "compat")],
            )
        }
        Format::Oci => {
            // solo-io's "oci" spec: a runtime-config layer and the module layer. Istio only
            // requires exactly two layers and picks the one typed as wasm content.
            let runtime = serde_json::json!({
                "type": "envoy_proxy",
                "abiVersions": ["v0.2.1"],
                "config": {"root_ids": [meta.plugin_name]},
            });
            let config = Blob::new(WASM_CONFIG, json_bytes(&runtime)?);
            let module = Blob::new(WASM_CONTENT_LAYER, wasm.to_vec());
            let descs = vec![
                config.descriptor(&[(TITLE_ANNOTATION, "runtime-config.json")]),
                module.descriptor(&[(TITLE_ANNOTATION, PLUGIN_FILE)]),
            ];
            (config.clone(), vec![config, module], descs, vec![])
        }
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: config.descriptor(&[]),
        layers: layer_descs,
        annotations: annotations
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut blobs = vec![config];
    for layer in layers {
        if !blobs.iter().any(|b| b.digest == layer.digest) {
            blobs.push(layer);
        }
    }
    Ok(Image {
        manifest: json_bytes(&manifest)?,
        manifest_media_type: OCI_MANIFEST.to_string(),
        blobs,
    })
}

// ---------------------------------------------------------------------------------------
// Extraction, as Istio's agent does it
// ---------------------------------------------------------------------------------------

/// Which rule of Istio's agent found the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Docker schema-2 manifest, last layer Docker tar+gzip with `plugin.wasm`.
    Docker,
    /// Last layer OCI tar+gzip with `plugin.wasm`.
    Compat,
    /// Two layers, one of them the raw module.
    Oci,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Variant::Docker => "docker",
            Variant::Compat => "compat",
            Variant::Oci => "oci",
        })
    }
}

/// Finds the module in an image the way Istio's agent does. `fetch` returns a blob's bytes
/// (it must check the digest); only the layers the agent would read are fetched.
pub fn extract_wasm(
    manifest_bytes: &[u8],
    mut fetch: impl FnMut(&Descriptor) -> Result<Vec<u8>>,
) -> Result<(Vec<u8>, Variant)> {
    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).context("parsing the image manifest")?;
    if manifest.media_type.as_deref() == Some(DOCKER_MANIFEST) {
        let wasm = extract_tar_gzip_layer(&manifest, DOCKER_LAYER_TAR_GZIP, &mut fetch)
            .context("could not extract Wasm file from the image as Docker container")?;
        return Ok((wasm, Variant::Docker));
    }
    let compat = match extract_tar_gzip_layer(&manifest, OCI_LAYER_TAR_GZIP, &mut fetch) {
        Ok(wasm) => return Ok((wasm, Variant::Compat)),
        Err(e) => e,
    };
    let oci = match extract_oci_artifact(&manifest, &mut fetch) {
        Ok(wasm) => return Ok((wasm, Variant::Oci)),
        Err(e) => e,
    };
    bail!(
        "the given image is in invalid format as an OCI image: \
         could not parse as compat variant: {compat:#}; could not parse as oci variant: {oci:#}"
    )
}

fn extract_tar_gzip_layer(
    manifest: &Manifest,
    want: &str,
    fetch: &mut impl FnMut(&Descriptor) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let layer = manifest
        .layers
        .last()
        .ok_or_else(|| anyhow!("number of layers must be greater than zero"))?;
    ensure!(
        layer.media_type == want,
        "invalid media type {} (expect {want})",
        layer.media_type
    );
    let data = fetch(layer)?;
    plugin_from_tar_gzip(&data)
}

/// Istio's `extractWasmPluginBinary`: the first entry whose base name is `plugin.wasm`,
/// reading at most [`MAX_WASM_BINARY_SIZE`] of the uncompressed stream.
pub fn plugin_from_tar_gzip(data: &[u8]) -> Result<Vec<u8>> {
    let gz = flate2::read::GzDecoder::new(data);
    let mut archive = tar::Archive::new(gz.take(MAX_WASM_BINARY_SIZE));
    for entry in archive
        .entries()
        .context("failed to parse layer as tar.gz")?
    {
        let mut entry = entry.context("reading the layer's tar")?;
        let path = entry.path()?.into_owned();
        if path.file_name().and_then(|n| n.to_str()) == Some(PLUGIN_FILE) {
            let mut out = Vec::with_capacity(entry.size().min(MAX_WASM_BINARY_SIZE) as usize);
            entry
                .read_to_end(&mut out)
                .with_context(|| format!("failed to read {PLUGIN_FILE}"))?;
            ensure!(
                out.len() as u64 == entry.size(),
                "failed to read {PLUGIN_FILE}: unexpected EOF"
            );
            return Ok(out);
        }
    }
    bail!("{PLUGIN_FILE} not found in the archive")
}

fn extract_oci_artifact(
    manifest: &Manifest,
    fetch: &mut impl FnMut(&Descriptor) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    ensure!(
        manifest.layers.len() == 2,
        "number of layers must be 2 but got {}",
        manifest.layers.len()
    );
    let layer = manifest
        .layers
        .iter()
        .find(|l| l.media_type == WASM_CONTENT_LAYER)
        .ok_or_else(|| anyhow!("could not find the layer of type {WASM_CONTENT_LAYER}"))?;
    ensure!(
        layer.size <= MAX_WASM_BINARY_SIZE,
        "wasm layer is {} bytes, more than {MAX_WASM_BINARY_SIZE}",
        layer.size
    );
    fetch(layer)
}

/// Checks that `data` is what `desc` describes (size and sha256).
pub fn verify_blob(desc: &Descriptor, data: &[u8]) -> Result<()> {
    ensure!(
        data.len() as u64 == desc.size,
        "blob {} is {} bytes, the descriptor says {}",
        desc.digest,
        data.len(),
        desc.size
    );
    let actual = sha256_digest(data);
    ensure!(
        actual == desc.digest,
        "blob digest mismatch: expected {}, got {actual}",
        desc.digest
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// OCI image layout on disk
// ---------------------------------------------------------------------------------------

/// Writes `image` as an OCI image layout in `dir` (created if needed; an existing
/// `index.json` is replaced), naming the manifest `tag` in `index.json`.
pub fn write_layout(dir: &Path, image: &Image, tag: &str) -> Result<()> {
    let blobs_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir)
        .with_context(|| format!("creating {}", blobs_dir.display()))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let manifest_digest = image.digest();
    let mut all: Vec<(&str, &[u8])> = vec![(&manifest_digest, &image.manifest)];
    all.extend(
        image
            .blobs
            .iter()
            .map(|b| (b.digest.as_str(), b.data.as_slice())),
    );
    for (digest, data) in all {
        let path = blobs_dir.join(digest_hex(digest)?);
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: vec![Descriptor {
            media_type: image.manifest_media_type.clone(),
            digest: manifest_digest,
            size: image.manifest.len() as u64,
            annotations: [(REF_NAME_ANNOTATION.to_string(), tag.to_string())]
                .into_iter()
                .collect(),
            platform: None,
        }],
    };
    std::fs::write(dir.join("index.json"), json_bytes(&index)?)?;
    Ok(())
}

/// Reads the image a layout's `index.json` names (the one tagged `tag`, or the only one),
/// checking every blob's digest.
pub fn read_layout(dir: &Path, tag: Option<&str>) -> Result<Image> {
    let index_path = dir.join("index.json");
    let index: Index = serde_json::from_slice(
        &std::fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?,
    )
    .with_context(|| format!("parsing {}", index_path.display()))?;
    let desc = match tag {
        Some(tag) => index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(tag))
            .ok_or_else(|| anyhow!("{} names no manifest {tag:?}", index_path.display()))?,
        None => match index.manifests.as_slice() {
            [one] => one,
            other => bail!(
                "{} names {} manifests; say which tag",
                index_path.display(),
                other.len()
            ),
        },
    };
    let read_blob = |desc: &Descriptor| -> Result<Vec<u8>> {
        let path = dir
            .join("blobs")
            .join("sha256")
            .join(digest_hex(&desc.digest)?);
        let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        verify_blob(desc, &data)?;
        Ok(data)
    };
    let manifest_bytes = read_blob(desc)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).context("parsing the image manifest")?;
    let mut blobs: Vec<Blob> = Vec::new();
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        if blobs.iter().any(|b| b.digest == d.digest) {
            continue;
        }
        blobs.push(Blob {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            data: read_blob(d)?,
        });
    }
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| desc.media_type.clone());
    Ok(Image {
        manifest: manifest_bytes,
        manifest_media_type: media_type,
        blobs,
    })
}

/// Extracts the module from an image held in memory, as Istio's agent would.
pub fn extract_from_image(image: &Image) -> Result<(Vec<u8>, Variant)> {
    extract_wasm(&image.manifest, |d| {
        let blob = image
            .blob(&d.digest)
            .ok_or_else(|| anyhow!("image has no blob {}", d.digest))?;
        verify_blob(d, &blob.data)?;
        Ok(blob.data.clone())
    })
}

// ---------------------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------------------

/// `host[:port]/path[:tag][@sha256:…]`, with an optional `oci://` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`; `index.docker.io` when the reference names no registry.
    pub registry: String,
    /// The repository path, e.g. `meshward/meshward-waf`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// What to put after `/manifests/`: the digest if any, else the tag (default `latest`).
    pub fn identifier(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the registry is on this machine (then plain http is the default, as in
    /// go-containerregistry which Istio's agent uses).
    pub fn is_loopback(&self) -> bool {
        let host = registry_host(&self.registry);
        host == "localhost"
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = anyhow::Error;

    fn from_str(input: &str) -> Result<Reference> {
        let s = input.strip_prefix("oci://").unwrap_or(input);
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                digest_hex(d).with_context(|| format!("in reference {input:?}"))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            ensure!(ok, "invalid tag {tag:?} in reference {input:?}");
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ if !name.contains('/') => ("index.docker.io".to_string(), format!("library/{name}")),
            _ => ("index.docker.io".to_string(), name.to_string()),
        };
        ensure!(!registry.is_empty(), "no registry in reference {input:?}");
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        };
        ensure!(
            repository.split('/').all(component_ok),
            "invalid repository {repository:?} in reference {input:?} \
             (lowercase letters, digits, '.', '_', '-', separated by '/')"
        );
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Distribution API client
// ---------------------------------------------------------------------------------------

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Use `http://` even for a non-loopback registry (loopback registries use http anyway).
    pub plain_http: bool,
    /// Skip TLS certificate verification (self-signed test registries).
    pub insecure_tls: bool,
    /// Basic credentials, used directly or to obtain a bearer token.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-request timeout (default 120 s).
    pub timeout: Option<Duration>,
}

/// The result of [`Client::pull`].
#[derive(Clone, Debug)]
pub struct Pulled {
    /// `sha256:<hex>` of the image manifest — what `WasmPlugin.spec.sha256` pins (as hex).
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
    pub wasm: Vec<u8>,
    pub variant: Variant,
}

/// A blocking client of the OCI distribution API (push and pull of single images).
pub struct Client {
    agent: ureq::Agent,
    direct_agent: ureq::Agent,
    opts: ClientOptions,
    /// Bearer token per `registry/repository`.
    tokens: BTreeMap<String, String>,
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error(&self, what: &str) -> anyhow::Error {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let text: String = text.chars().take(500).collect();
        anyhow!("{what}: HTTP {}: {text}", self.status)
    }
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        let build = |proxy: bool| -> ureq::Agent {
            let mut config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(opts.timeout.unwrap_or(Duration::from_secs(120))))
                .user_agent(concat!("meshward/", env!("CARGO_PKG_VERSION")))
                .tls_config(
                    ureq::tls::TlsConfig::builder()
                        .disable_verification(opts.insecure_tls)
                        .build(),
                );
            if !proxy {
                config = config.proxy(None);
            }
            config.build().into()
        };
        Client {
            agent: build(true),
            direct_agent: build(false),
            opts,
            tokens: BTreeMap::new(),
        }
    }

    fn base_url(&self, r: &Reference) -> String {
        let scheme = if self.opts.plain_http || r.is_loopback() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", r.registry, r.repository)
    }

    /// Sends one request; on a 401 obtains credentials as the registry asks (Basic, or a
    /// Bearer token from its realm) and retries once.
    fn send(
        &mut self,
        r: &Reference,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        limit: u64,
    ) -> Result<Reply> {
        let mut reply = self.send_once(r, method, url, headers, body, limit)?;
        if reply.status == 401 {
            let challenge = reply
                .header("www-authenticate")
                .map(str::to_string)
                .unwrap_or_default();
            self.authenticate(r, &challenge)?;
            reply = self.send_once(r, method, url, headers, body, limit)?;
        }
        Ok(reply)
    }

    fn send_once(
        &self,
        r: &Reference,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        limit: u64,
    ) -> Result<Reply> {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(auth) = self.tokens.get(&r.name()) {
            req = req.header("authorization", auth.as_str());
        }
        let agent = if r.is_loopback() {
            &self.direct_agent
        } else {
            &self.agent
        };
        let result = match body {
            Some(b) => agent.run(req.body(b)?),
            None => agent.run(req.body(())?),
        };
        let mut resp = result.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(limit)
                .read_to_vec()
                .with_context(|| format!("reading the reply to {method} {url}"))?
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn authenticate(&mut self, r: &Reference, challenge: &str) -> Result<()> {
        let basic = match (&self.opts.username, &self.opts.password) {
            (Some(u), Some(p)) => {
                use base64::Engine as _;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                ))
            }
            _ => None,
        };
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let basic = basic.ok_or_else(|| {
                    anyhow!(
                        "{} asks for credentials (use --username/--password-stdin)",
                        r.registry
                    )
                })?;
                self.tokens.insert(r.name(), basic);
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| anyhow!("bearer challenge without realm: {challenge}"))?;
                let mut url = format!("{realm}?");
                if let Some(service) = params.get("service") {
                    url.push_str(&format!("service={}&", url_encode(service)));
                }
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull,push", r.repository));
                url.push_str(&format!("scope={}", url_encode(&scope)));
                let mut req = self.agent.get(&url);
                if let Some(basic) = &basic {
                    req = req.header("authorization", basic.as_str());
                }
                let mut resp = req.call().with_context(|| format!("GET {url}"))?;
                let status = resp.status().as_u16();
                let body = resp.body_mut().with_config().limit(1 << 20).read_to_vec()?;
                ensure!(
                    status == 200,
                    "token request to {realm} failed: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| anyhow!("token reply from {realm} has no token"))?;
                self.tokens.insert(r.name(), format!("Bearer {token}"));
            }
            _ => bail!(
                "{} refused the request (HTTP 401) with challenge {challenge:?}",
                r.registry
            ),
        }
        Ok(())
    }

    /// Whether the repository already has the blob.
    pub fn blob_exists(&mut self, r: &Reference, digest: &str) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", self.base_url(r));
        let reply = self.send(r, "HEAD", &url, &[], None, 0)?;
        match reply.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(reply.error(&format!("HEAD {url}"))),
        }
    }

    /// Uploads a blob unless the repository has it: `POST …/blobs/uploads/` then one
    /// monolithic `PUT <location>?digest=…`. Returns whether it was uploaded.
    pub fn upload_blob(&mut self, r: &Reference, blob: &Blob) -> Result<bool> {
        if self.blob_exists(r, &blob.digest)? {
            return Ok(false);
        }
        let url = format!("{}/blobs/uploads/", self.base_url(r));
        let reply = self.send(
            r,
            "POST",
            &url,
            &[("content-length", "0")],
            Some(&[]),
            1 << 20,
        )?;
        if reply.status != 202 {
            return Err(reply.error(&format!("POST {url}")));
        }
        let location = reply
            .header("location")
            .ok_or_else(|| anyhow!("POST {url}: no Location in the reply"))?;
        let location = resolve_location(&url, location);
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={}", url_encode(&blob.digest));
        let reply = self.send(
            r,
            "PUT",
            &put_url,
            &[("content-type", "application/octet-stream")],
            Some(&blob.data),
            1 << 20,
        )?;
        if reply.status != 201 {
            return Err(reply.error(&format!("PUT blob {}", blob.digest)));
        }
        Ok(true)
    }

    /// Pushes every blob, then the manifest under `r`'s tag (or digest). Returns the
    /// manifest digest, checked against the registry's `Docker-Content-Digest`.
    pub fn push(&mut self, r: &Reference, image: &Image) -> Result<String> {
        for blob in &image.blobs {
            self.upload_blob(r, blob)
                .with_context(|| format!("pushing blob {} to {r}", blob.digest))?;
        }
        let digest = image.digest();
        if let Some(d) = &r.digest {
            ensure!(
                *d == digest,
                "reference {r} names digest {d} but the image's manifest is {digest}"
            );
        }
        let url = format!("{}/manifests/{}", self.base_url(r), r.identifier());
        let reply = self.send(
            r,
            "PUT",
            &url,
            &[("content-type", image.manifest_media_type.as_str())],
            Some(&image.manifest),
            1 << 20,
        )?;
        if reply.status != 201 {
            return Err(reply.error(&format!("PUT manifest {r}")));
        }
        if let Some(server) = reply.header("docker-content-digest") {
            ensure!(
                server == digest,
                "registry computed manifest digest {server}, we computed {digest}"
            );
        }
        Ok(digest)
    }

    /// Fetches the raw manifest for a reference; returns `(bytes, content type, digest)`.
    /// An index is resolved to its `linux/amd64` image, as go-containerregistry does.
    pub fn get_manifest(&mut self, r: &Reference) -> Result<(Vec<u8>, String, String)> {
        let accept = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ]
        .join(", ");
        let url = format!("{}/manifests/{}", self.base_url(r), r.identifier());
        let reply = self.send(
            r,
            "GET",
            &url,
            &[("accept", &accept)],
            None,
            MAX_MANIFEST_SIZE,
        )?;
        if reply.status != 200 {
            return Err(reply.error(&format!("GET manifest {r}")));
        }
        let digest = sha256_digest(&reply.body);
        if let Some(d) = &r.digest {
            ensure!(
                *d == digest,
                "registry returned a manifest with digest {digest} for {r}"
            );
        }
        if let Some(server) = reply.header("docker-content-digest") {
            ensure!(
                server == digest,
                "registry says the manifest of {r} is {server} but its bytes hash to {digest}"
            );
        }
        let value: serde_json::Value =
            serde_json::from_slice(&reply.body).context("parsing the manifest")?;
        let content_type = reply
            .header("content-type")
            .map(str::to_string)
            .or_else(|| {
                value
                    .get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let is_index = content_type == OCI_INDEX
            || content_type == DOCKER_MANIFEST_LIST
            || value.get("manifests").is_some();
        if is_index {
            let index: Index = serde_json::from_value(value).context("parsing the index")?;
            let child = index
                .manifests
                .iter()
                .find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .ok_or_else(|| anyhow!("index {r} has no linux/amd64 image"))?;
            digest_hex(&child.digest)?;
            let child_ref = Reference {
                tag: None,
                digest: Some(child.digest.clone()),
                ..r.clone()
            };
            return self.get_manifest(&child_ref);
        }
        Ok((reply.body, content_type, digest))
    }

    /// Fetches a blob and checks its size and digest.
    pub fn get_blob(&mut self, r: &Reference, desc: &Descriptor) -> Result<Vec<u8>> {
        digest_hex(&desc.digest)?;
        let url = format!("{}/blobs/{}", self.base_url(r), desc.digest);
        let reply = self.send(r, "GET", &url, &[], None, desc.size.saturating_add(1))?;
        if reply.status != 200 {
            return Err(reply.error(&format!("GET blob {}", desc.digest)));
        }
        verify_blob(desc, &reply.body)?;
        Ok(reply.body)
    }

    /// Pulls an image as Istio's agent does: manifest, its digest, then the module from
    /// the layer the agent would pick. With `expected` (hex or `sha256:hex`), a manifest
    /// with another digest is an error, as in the agent.
    pub fn pull(&mut self, r: &Reference, expected: Option<&str>) -> Result<Pulled> {
        let (manifest, _content_type, manifest_digest) = self.get_manifest(r)?;
        if let Some(expected) = expected {
            let expected = normalize_digest(expected)?;
            ensure!(
                expected == manifest_digest,
                "module downloaded from {r} has checksum {}, which does not match: {}",
                digest_hex(&manifest_digest)?,
                digest_hex(&expected)?
            );
        }
        let (wasm, variant) = extract_wasm(&manifest, |d| self.get_blob(r, d))?;
        Ok(Pulled {
            manifest_digest,
            manifest,
            wasm,
            variant,
        })
    }
}

/// `Bearer realm="…",service="…",scope="…"` → ("Bearer", params).
fn parse_challenge(challenge: &str) -> (String, BTreeMap<String, String>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = next.trim_start_matches(',').trim();
    }
    (scheme.to_string(), params)
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `Location` header may be absolute, or a path relative to the registry.
fn resolve_location(request_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = request_url
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| request_url[start..].find('/').map(|j| start + j))
        .unwrap_or(request_url.len());
    format!("{}{location}", &request_url[..origin_end])
}

// ---------------------------------------------------------------------------------------
// Pinning WasmPlugin manifests
// ---------------------------------------------------------------------------------------

/// One line of a digest file: `sha256:<hex> <ref> <format> [<layout dir>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestLine {
    pub digest: String,
    pub reference: Reference,
    pub format: Format,
    pub layout: Option<PathBuf>,
}

impl fmt::Display for DigestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.digest, self.reference, self.format)?;
        if let Some(layout) = &self.layout {
            write!(f, " {}", layout.display())?;
        }
        Ok(())
    }
}

/// Parses a digest file (blank lines and `#` comments ignored).
pub fn parse_digest_file(text: &str) -> Result<Vec<DigestLine>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = (|| -> Result<DigestLine> {
            ensure!(
                (3..=4).contains(&fields.len()),
                "expected `sha256:<hex> <ref> <format> [<layout>]`"
            );
            Ok(DigestLine {
                digest: normalize_digest(fields[0])?,
                reference: fields[1].parse()?,
                format: fields[2].parse()?,
                layout: fields.get(3).map(PathBuf::from),
            })
        })();
        out.push(parsed.with_context(|| format!("digest file line {}", n + 1))?);
    }
    Ok(out)
}

/// The image name a WasmPlugin's `spec.url: oci://…` points at (last path component).
pub fn manifest_image_name(yaml: &str) -> Option<String> {
    let keys = spec_keys(yaml).ok()?;
    let line = yaml.lines().nth(keys.url?)?;
    let value = yaml_value(line, "url");
    let reference: Reference = value.strip_prefix("oci://")?.parse().ok()?;
    reference.repository.rsplit('/').next().map(str::to_string)
}

/// Where `spec.url` and `spec.sha256` are in a WasmPlugin text.
struct SpecKeys {
    indent: String,
    /// The `spec:` line.
    spec: usize,
    url: Option<usize>,
    sha256: Option<usize>,
}

/// Finds the direct children `url:` and `sha256:` of the top-level `spec:` mapping (keys
/// nested deeper, e.g. in `pluginConfig`, are not these).
fn spec_keys(yaml: &str) -> Result<SpecKeys> {
    let lines: Vec<&str> = yaml.lines().collect();
    let is_spec = |l: &&str| strip_yaml_comment(l).trim_end() == "spec:";
    let specs: Vec<usize> = (0..lines.len()).filter(|&i| is_spec(&lines[i])).collect();
    let spec = match specs.as_slice() {
        [one] => *one,
        [] => bail!("no top-level `spec:`"),
        _ => bail!("more than one top-level `spec:` (one WasmPlugin per file, please)"),
    };
    let mut keys = SpecKeys {
        indent: String::new(),
        spec,
        url: None,
        sha256: None,
    };
    for (i, line) in lines.iter().enumerate().skip(spec + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        if indent.is_empty() {
            break;
        }
        if keys.indent.is_empty() {
            keys.indent = indent.to_string();
        }
        if indent != keys.indent {
            continue;
        }
        for (key, slot) in [("url", &mut keys.url), ("sha256", &mut keys.sha256)] {
            if trimmed
                .strip_prefix(key)
                .is_some_and(|r| r.starts_with(':'))
            {
                ensure!(slot.is_none(), "`spec.{key}` appears twice");
                *slot = Some(i);
            }
        }
    }
    Ok(keys)
}

/// The scalar value of a `key: value  # comment` line, unquoted.
fn yaml_value<'a>(line: &'a str, key: &str) -> &'a str {
    let rest = line.trim_start().strip_prefix(key).unwrap_or("");
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    strip_yaml_comment(rest).trim().trim_matches(['"', '\''])
}

fn strip_yaml_comment(s: &str) -> &str {
    if s.trim_start().starts_with('#') {
        return "";
    }
    match s.find(" #") {
        Some(i) => &s[..i],
        None => s,
    }
}

/// Rewrites the `spec.url` and `spec.sha256` lines of one WasmPlugin YAML text, keeping
/// every other line (comments, order, formatting) byte for byte, and a trailing comment on
/// those two lines. `sha256:` is added after `url:` when missing (and `url:` after `spec:`).
pub fn pin_yaml(yaml: &str, reference: &Reference, digest: &str) -> Result<String> {
    let hex = digest_hex(digest)?;
    let keys = spec_keys(yaml)?;
    let indent = if keys.indent.is_empty() {
        "  ".to_string()
    } else {
        keys.indent.clone()
    };
    let comment_of = |body: &str| -> String {
        match body.find(" #") {
            Some(i) => body[i..].to_string(),
            None => String::new(),
        }
    };
    let url_text = format!("{indent}url: oci://{reference}");
    let sha_text = format!("{indent}sha256: {hex}");
    let mut out = String::with_capacity(yaml.len() + 100);
    for (i, line) in yaml.split_inclusive('\n').enumerate() {
        let (body, eol) = match line.strip_suffix("\r\n") {
            Some(b) => (b, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (line, ""),
            },
        };
        let nl = if eol.is_empty() { "\n" } else { eol };
        if Some(i) == keys.url {
            out.push_str(&format!("{url_text}{}{nl}", comment_of(body)));
            if keys.sha256.is_none() {
                out.push_str(&format!("{sha_text}{nl}"));
            }
        } else if Some(i) == keys.sha256 {
            out.push_str(&format!("{sha_text}{}{eol}", comment_of(body)));
        } else {
            out.push_str(line);
            if i == keys.spec && keys.url.is_none() {
                out.push_str(&format!(
                    "{}{url_text}{nl}",
                    if eol.is_empty() { nl } else { "" }
                ));
                if keys.sha256.is_none() {
                    out.push_str(&format!("{sha_text}{nl}"));
                }
            }
        }
    }
    Ok(out)
}

/// Splits a YAML stream into its documents (each keeps its `---` line and line ends).
fn yaml_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let is_marker = line.starts_with("---")
            && line[3..]
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c == '#');
        if is_marker && pos > start {
            docs.push(&text[start..pos]);
            start = pos;
        }
        pos += line.len();
    }
    docs.push(&text[start..]);
    docs
}

/// Pins each WasmPlugin document of a YAML text whose `oci://` image name matches a digest
/// line of `format`. Returns the new text and `(url, digest)` per pinned document.
pub fn pin_text(
    text: &str,
    lines: &[DigestLine],
    format: Format,
) -> Result<(String, Vec<(String, String)>)> {
    let mut out = String::with_capacity(text.len() + 100);
    let mut pinned = Vec::new();
    for doc in yaml_documents(text) {
        let line = manifest_image_name(doc).and_then(|name| {
            lines.iter().find(|l| {
                l.format == format
                    && l.reference.repository.rsplit('/').next() == Some(name.as_str())
            })
        });
        match line {
            Some(line) => {
                let reference = Reference {
                    digest: None,
                    ..line.reference.clone()
                };
                out.push_str(&pin_yaml(doc, &reference, &line.digest)?);
                pinned.push((format!("oci://{reference}"), line.digest.clone()));
            }
            None => out.push_str(doc),
        }
    }
    Ok((out, pinned))
}

fn yaml_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                yaml_files(&entry, out)?;
            } else if matches!(
                entry.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(entry);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Pins every WasmPlugin under `manifests` (a file, or a directory searched recursively
/// for `*.yaml`/`*.yml`) whose `oci://` image name matches a digest line of `format`.
/// Only the `spec.url` and `spec.sha256` lines change. Each file is re-read right before
/// it is rewritten (other tools edit these files too), and written only if it changed.
/// Returns `(file, url, digest)` per pinned document, changed or already up to date.
pub fn pin_manifests(
    manifests: &Path,
    lines: &[DigestLine],
    format: Format,
) -> Result<Vec<(PathBuf, String, String)>> {
    let mut files = Vec::new();
    yaml_files(manifests, &mut files)?;
    let mut done = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let (_, pinned) =
            pin_text(&text, lines, format).with_context(|| file.display().to_string())?;
        if pinned.is_empty() {
            continue;
        }
        let current = std::fs::read_to_string(&file)?;
        let (new, pinned) =
            pin_text(&current, lines, format).with_context(|| file.display().to_string())?;
        if new != current {
            std::fs::write(&file, &new).with_context(|| format!("writing {}", file.display()))?;
        }
        done.extend(
            pinned
                .into_iter()
                .map(|(url, digest)| (file.clone(), url, digest)),
        );
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_wasm(seed: u8) -> Vec<u8> {
        let mut v = b"\0asm\x01\0\0\0".to_vec();
        v.extend((0..5000u32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed)));
        v
    }

    fn meta() -> ImageMeta {
        ImageMeta {
            plugin_name: "waf".into(),
        }
    }

    #[test]
    fn same_module_gives_the_same_manifest_digest_in_both_formats() {
        for format in Format::ALL {
            let a = build_image(&fake_wasm(3), format, &meta()).unwrap();
            let b = build_image(&fake_wasm(3), format, &meta()).unwrap();
            assert_eq!(a, b, "{format}");
            assert_eq!(a.digest(), b.digest());
            let c = build_image(&fake_wasm(4), format, &meta()).unwrap();
            assert_ne!(
                a.digest(),
                c.digest(),
                "{format}: a different module must change the digest"
            );
        }
        let compat = build_image(&fake_wasm(3), Format::Compat, &meta()).unwrap();
        let oci = build_image(&fake_wasm(3), Format::Oci, &meta()).unwrap();
        assert_ne!(compat.digest(), oci.digest());
    }

    /// Pinned WasmPlugin digests must not move when nothing but a dependency changed: if
    /// this fails after a crate update (tar, flate2/miniz_oxide, serde_json), every pinned
    /// manifest would need re-pinning; decide that on purpose.
    #[test]
    fn digests_of_a_fixed_module_are_stable_across_builds_and_machines() {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        wasm.extend((0..4096u32).map(|i| (i % 251) as u8));
        let digest = |format| build_image(&wasm, format, &meta()).unwrap().digest();
        assert_eq!(
            digest(Format::Compat),
            "sha256:c3f59de0c239f6d61b02ea852323b44cfa81d615547e730c977cfa9824a81b5f"
        );
        assert_eq!(
            digest(Format::Oci),
            "sha256:fefe7a0e3b602121a151537b9b6bf292e061ad87bfa91b0e0b77de2182a2c94d"
        );
    }

    #[test]
    fn compat_layer_is_a_reproducible_tar_with_fixed_metadata() {
        let (gz, tar) = compat_layer(&fake_wasm(7)).unwrap();
        let (gz2, _) = compat_layer(&fake_wasm(7)).unwrap();
        assert_eq!(gz, gz2);
        // gzip header: no mtime (bytes 4..8 zero), OS "unknown".
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(gz[9], 255);
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive.entries().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 1);
        let h = entries[0].header();
        assert_eq!(h.path().unwrap().to_str(), Some("plugin.wasm"));
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(plugin_from_tar_gzip(&gz).unwrap(), fake_wasm(7));
    }

    #[test]
    fn compat_image_has_the_media_types_istio_reads() {
        let img = build_image(&fake_wasm(1), Format::Compat, &meta()).unwrap();
        let m = img.parsed_manifest().unwrap();
        assert_eq!(m.media_type.as_deref(), Some(OCI_MANIFEST));
        assert_eq!(m.config.media_type, OCI_CONFIG);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, OCI_LAYER_TAR_GZIP);
        assert_eq!(
            m.annotations
                .get("module.wasm.image/variant")
                .map(String::as_str),
            Some("compat")
        );
        // The config's diff_id is the uncompressed tar's digest.
        let config: serde_json::Value =
            serde_json::from_slice(&img.blob(&m.config.digest).unwrap().data).unwrap();
        let (_, tar) = compat_layer(&fake_wasm(1)).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar));
    }

    #[test]
    fn oci_image_has_exactly_two_layers_one_of_them_the_raw_module() {
        let wasm = fake_wasm(2);
        let img = build_image(&wasm, Format::Oci, &meta()).unwrap();
        let m = img.parsed_manifest().unwrap();
        assert_eq!(m.layers.len(), 2);
        let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(types, [WASM_CONFIG, WASM_CONTENT_LAYER]);
        assert_eq!(m.layers[1].digest, sha256_digest(&wasm));
        assert_eq!(m.config.media_type, WASM_CONFIG);
    }

    #[test]
    fn both_formats_extract_back_to_the_same_module() {
        let wasm = fake_wasm(9);
        for (format, variant) in [
            (Format::Compat, Variant::Compat),
            (Format::Oci, Variant::Oci),
        ] {
            let img = build_image(&wasm, format, &meta()).unwrap();
            let (out, v) = extract_from_image(&img).unwrap();
            assert_eq!(out, wasm);
            assert_eq!(v, variant);
        }
    }

    #[test]
    fn layout_round_trip_keeps_bytes_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        for format in Format::ALL {
            let img = build_image(&fake_wasm(5), format, &meta()).unwrap();
            let d = dir.path().join(format.as_str());
            write_layout(&d, &img, "0.1.0").unwrap();
            let back = read_layout(&d, Some("0.1.0")).unwrap();
            assert_eq!(back, img);
            let index: Index =
                serde_json::from_slice(&std::fs::read(d.join("index.json")).unwrap()).unwrap();
            assert_eq!(index.manifests[0].digest, img.digest());
            assert!(d
                .join("blobs/sha256")
                .join(digest_hex(&img.digest()).unwrap())
                .is_file());
            // A corrupted blob is refused.
            let layer = img
                .parsed_manifest()
                .unwrap()
                .layers
                .last()
                .unwrap()
                .clone();
            let p = d
                .join("blobs/sha256")
                .join(digest_hex(&layer.digest).unwrap());
            let mut bytes = std::fs::read(&p).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&p, bytes).unwrap();
            let err = read_layout(&d, None).unwrap_err();
            assert!(format!("{err:#}").contains("digest mismatch"), "{err:#}");
        }
    }

    fn image_with_layers(manifest_type: Option<&str>, layers: Vec<Blob>) -> Image {
        let config = Blob::new(OCI_CONFIG, b"{}".to_vec());
        let manifest = Manifest {
            schema_version: 2,
            media_type: manifest_type.map(str::to_string),
            config: config.descriptor(&[]),
            layers: layers.iter().map(|l| l.descriptor(&[])).collect(),
            annotations: BTreeMap::new(),
        };
        let mut blobs = vec![config];
        blobs.extend(layers);
        Image {
            manifest: serde_json::to_vec(&manifest).unwrap(),
            manifest_media_type: manifest_type.unwrap_or(OCI_MANIFEST).to_string(),
            blobs,
        }
    }

    #[test]
    fn docker_manifest_needs_a_docker_layer_and_compat_reads_the_last_layer() {
        let wasm = fake_wasm(6);
        let (gz, _) = compat_layer(&wasm).unwrap();
        let (other, _) = compat_layer(&fake_wasm(8)).unwrap();
        // Docker schema 2 with Docker layers: the last layer wins.
        let img = image_with_layers(
            Some(DOCKER_MANIFEST),
            vec![
                Blob::new(DOCKER_LAYER_TAR_GZIP, other.clone()),
                Blob::new(DOCKER_LAYER_TAR_GZIP, gz.clone()),
            ],
        );
        assert_eq!(
            extract_from_image(&img).unwrap(),
            (wasm.clone(), Variant::Docker)
        );
        // Docker manifest with an OCI layer is refused (Istio does not fall through).
        let img = image_with_layers(
            Some(DOCKER_MANIFEST),
            vec![Blob::new(OCI_LAYER_TAR_GZIP, gz.clone())],
        );
        let err = extract_from_image(&img).unwrap_err();
        assert!(format!("{err:#}").contains("invalid media type"), "{err:#}");
        // OCI manifest (or none), several layers: the last one is read.
        let img = image_with_layers(
            None,
            vec![
                Blob::new(OCI_LAYER_TAR_GZIP, other),
                Blob::new(OCI_LAYER_TAR_GZIP, gz),
            ],
        );
        assert_eq!(extract_from_image(&img).unwrap(), (wasm, Variant::Compat));
    }

    #[test]
    fn cncf_application_wasm_layout_is_refused_like_istio() {
        let img = image_with_layers(None, vec![Blob::new("application/wasm", fake_wasm(1))]);
        let err = format!("{:#}", extract_from_image(&img).unwrap_err());
        assert!(err.contains("invalid media type application/wasm"), "{err}");
        assert!(
            err.contains("number of layers must be 2 but got 1"),
            "{err}"
        );
    }

    #[test]
    fn oci_variant_needs_exactly_two_layers_and_a_wasm_content_layer() {
        let three = image_with_layers(
            None,
            vec![
                Blob::new(WASM_CONFIG, b"{}".to_vec()),
                Blob::new(WASM_CONTENT_LAYER, fake_wasm(1)),
                Blob::new(WASM_CONFIG, b"{ }".to_vec()),
            ],
        );
        let err = format!("{:#}", extract_from_image(&three).unwrap_err());
        assert!(
            err.contains("number of layers must be 2 but got 3"),
            "{err}"
        );
        let no_wasm = image_with_layers(
            None,
            vec![
                Blob::new("aaa", b"x".to_vec()),
                Blob::new("aaa", b"y".to_vec()),
            ],
        );
        let err = format!("{:#}", extract_from_image(&no_wasm).unwrap_err());
        assert!(err.contains("could not find the layer of type"), "{err}");
        // Wasm layer first, config second: still found.
        let swapped = image_with_layers(
            None,
            vec![
                Blob::new(WASM_CONTENT_LAYER, fake_wasm(2)),
                Blob::new(WASM_CONFIG, b"{}".to_vec()),
            ],
        );
        assert_eq!(
            extract_from_image(&swapped).unwrap(),
            (fake_wasm(2), Variant::Oci)
        );
    }

    #[test]
    fn compat_layer_without_plugin_wasm_is_refused_and_nested_paths_match_by_base_name() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("filter.wasm").unwrap();
        h.set_size(3);
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("dir/plugin.wasm").unwrap();
        h.set_size(4);
        h.set_cksum();
        b.append(&h, &b"wasm"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(plugin_from_tar_gzip(&gz).unwrap(), b"wasm");

        let (only_other, _) = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_path("filter.wasm").unwrap();
            h.set_size(3);
            h.set_cksum();
            b.append(&h, &b"abc"[..]).unwrap();
            let tar = b.into_inner().unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            (gz.finish().unwrap(), ())
        };
        let err = plugin_from_tar_gzip(&only_other).unwrap_err();
        assert!(err.to_string().contains("plugin.wasm not found"), "{err}");
    }

    #[test]
    fn references_parse_registry_port_path_tag_and_digest() {
        let r: Reference = "oci://127.0.0.1:5000/meshward/meshward-waf:0.1.0"
            .parse()
            .unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "meshward/meshward-waf");
        assert_eq!(r.tag.as_deref(), Some("0.1.0"));
        assert!(r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r: Reference = format!("ghcr.io/meshward/waf@{d}").parse().unwrap();
        assert_eq!(r.identifier(), d);
        assert!(!r.is_loopback());
        let r: Reference = format!("localhost:5000/waf:1@{d}").parse().unwrap();
        assert_eq!(
            (r.tag.as_deref(), r.digest.as_deref()),
            (Some("1"), Some(d.as_str()))
        );
        assert!(r.is_loopback());
        let r: Reference = "nginx".parse().unwrap();
        assert_eq!(r.to_string(), "index.docker.io/library/nginx");
        assert_eq!(r.identifier(), "latest");
        assert!("ghcr.io/Upper/x:1".parse::<Reference>().is_err());
        assert!("ghcr.io/x@sha256:abc".parse::<Reference>().is_err());
        assert!("ghcr.io/x:".parse::<Reference>().is_err());
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://ghcr.io/token");
        assert_eq!(p["service"], "ghcr.io");
        assert_eq!(p["scope"], "repository:a/b:pull");
        assert_eq!(
            resolve_location(
                "http://127.0.0.1:5000/v2/x/blobs/uploads/",
                "/v2/x/blobs/uploads/u?_state=1"
            ),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/u?_state=1"
        );
    }

    const PLUGIN_YAML: &str = "apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: meshward-waf
spec:
  # Image name meshward-waf maps to the harness wasm.
  url: oci://ghcr.io/meshward/meshward-waf:0.1.0
  imagePullPolicy: IfNotPresent
  pluginConfig:
    url: not-this-one-but-nested
";

    #[test]
    fn pinning_changes_only_the_url_and_sha256_lines() {
        let yaml = PLUGIN_YAML.replace("    url: not-this-one-but-nested\n", "    mode: x\n");
        let r: Reference = "ghcr.io/meshward/meshward-waf:0.2.0".parse().unwrap();
        let d = format!("sha256:{}", "b".repeat(64));
        let pinned = pin_yaml(&yaml, &r, &d).unwrap();
        let expected = yaml.replace(
            "  url: oci://ghcr.io/meshward/meshward-waf:0.1.0\n",
            &format!(
                "  url: oci://ghcr.io/meshward/meshward-waf:0.2.0\n  sha256: {}\n",
                "b".repeat(64)
            ),
        );
        assert_eq!(pinned, expected);
        // Pinning again replaces the sha256 in place and keeps a trailing comment.
        let with_comment = pinned.replace(&"b".repeat(64), &format!("{} # pinned", "c".repeat(64)));
        let d2 = format!("sha256:{}", "d".repeat(64));
        let again = pin_yaml(&with_comment, &r, &d2).unwrap();
        assert!(
            again.contains(&format!("  sha256: {} # pinned\n", "d".repeat(64))),
            "{again}"
        );
        assert_eq!(again.lines().count(), pinned.lines().count());
        assert_eq!(manifest_image_name(&again).as_deref(), Some("meshward-waf"));
        // A `url:` nested deeper (in pluginConfig) is not spec.url and stays as it is.
        let nested = pin_yaml(PLUGIN_YAML, &r, &d).unwrap();
        assert!(
            nested.contains("    url: not-this-one-but-nested\n"),
            "{nested}"
        );
        assert!(
            nested.contains("  url: oci://ghcr.io/meshward/meshward-waf:0.2.0\n"),
            "{nested}"
        );
        // Two spec.url keys are ambiguous for a textual edit: refuse.
        let twice = yaml.replace("  imagePullPolicy", "  url: oci://x/y:1\n  imagePullPolicy");
        assert!(pin_yaml(&twice, &r, &d).is_err());
    }

    #[test]
    fn pin_manifests_updates_matching_files_of_the_chosen_format() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = PLUGIN_YAML.replace("    url: not-this-one-but-nested\n", "    {}\n");
        std::fs::write(dir.path().join("waf.yaml"), &yaml).unwrap();
        std::fs::write(
            dir.path().join("other.yaml"),
            yaml.replace("meshward-waf", "meshward-audit"),
        )
        .unwrap();
        let compat = format!("sha256:{}", "1".repeat(64));
        let oci = format!("sha256:{}", "2".repeat(64));
        let text = format!(
            "# digests\n{compat} 127.0.0.1:5000/mesh/meshward-waf:0.3.0 compat\n{oci} 127.0.0.1:5000/mesh/meshward-waf:0.3.0 oci target/oci/oci/meshward-waf\n"
        );
        let lines = parse_digest_file(&text).unwrap();
        assert_eq!(lines.len(), 2);
        let done = pin_manifests(dir.path(), &lines, Format::Oci).unwrap();
        assert_eq!(done.len(), 1);
        let waf = std::fs::read_to_string(dir.path().join("waf.yaml")).unwrap();
        assert!(
            waf.contains("  url: oci://127.0.0.1:5000/mesh/meshward-waf:0.3.0\n"),
            "{waf}"
        );
        assert!(
            waf.contains(&format!("  sha256: {}\n", "2".repeat(64))),
            "{waf}"
        );
        let other = std::fs::read_to_string(dir.path().join("other.yaml")).unwrap();
        assert_eq!(other, yaml.replace("meshward-waf", "meshward-audit"));
        // Subdirectories and multi-document files: each matching document is pinned.
        std::fs::create_dir(dir.path().join("gateway")).unwrap();
        let multi = format!(
            "{yaml}---\n{}",
            yaml.replace("meshward-waf", "meshward-audit")
        );
        std::fs::write(dir.path().join("gateway/chain.yaml"), &multi).unwrap();
        let done = pin_manifests(dir.path(), &lines, Format::Compat).unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        let chain = std::fs::read_to_string(dir.path().join("gateway/chain.yaml")).unwrap();
        let (first, second) = chain.split_once("---\n").unwrap();
        assert!(
            first.contains(&format!("  sha256: {}\n", "1".repeat(64))),
            "{chain}"
        );
        assert_eq!(second, yaml.replace("meshward-waf", "meshward-audit"));
    }
}
