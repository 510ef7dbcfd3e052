//! Registry round trip: a real registry (Debian's `docker-registry`, i.e. CNCF distribution)
//! on loopback; all four filters pushed in both of Istio's formats, pulled back the way
//! Istio's agent pulls them, bytes and digests compared.
//!
//! The registry binary is required: without it these tests FAIL (CI installs the package).

use meshward_harness::oci::{self, Client, ClientOptions, Format, ImageMeta, Reference, Variant};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FILTERS: [&str; 4] = ["waf", "tenant", "ratelimit", "audit"];

/// A registry process on a free loopback port, killed when dropped (also on panic).
struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn start() -> Registry {
        let bin = std::env::var_os("MESHWARD_REGISTRY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
        assert!(
            bin.is_file(),
            "the registry round-trip test needs Debian's docker-registry at {} \
             (apt-get install -y docker-registry; or set MESHWARD_REGISTRY_BIN). \
             It does not skip: CI installs the package.",
            bin.display()
        );
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let dir = tempfile::tempdir().expect("temp dir");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("data").display()
                ),
            )
            .expect("write config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut reg = Registry {
                child,
                addr: format!("127.0.0.1:{port}"),
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // exited (port taken by someone else?): try another port
                }
                let ok = ureq::get(&format!("http://{}/v2/", reg.addr))
                    .call()
                    .map(|r| r.status() == 200)
                    .unwrap_or(false);
                if ok {
                    return reg;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = reg.log();
        }
        panic!("docker-registry did not come up on loopback; its log:\n{last_log}");
    }
}

fn wasm_dir() -> PathBuf {
    std::env::var_os("MESHWARD_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/release")
        })
}

fn filter_wasm(filter: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("meshward_{filter}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} — build the filters first: cargo build --release --target wasm32-wasip1 \
             -p meshward-waf -p meshward-tenant -p meshward-ratelimit -p meshward-audit",
            path.display()
        )
    })
}

fn client() -> Client {
    Client::new(ClientOptions::default())
}

#[test]
fn all_four_filters_round_trip_through_a_real_registry_in_both_formats() {
    let started = Instant::now();
    let registry = Registry::start();
    let mut client = client();
    let mut report = Vec::new();
    for filter in FILTERS {
        let wasm = filter_wasm(filter);
        for (format, variant) in [
            (Format::Compat, Variant::Compat),
            (Format::Oci, Variant::Oci),
        ] {
            let image = oci::build_image(
                &wasm,
                format,
                &ImageMeta {
                    plugin_name: filter.to_string(),
                },
            )
            .unwrap();
            let reference: Reference = format!(
                "oci://{}/meshward/{format}/meshward-{filter}:0.1.0",
                registry.addr
            )
            .parse()
            .unwrap();
            let pushed = client.push(&reference, &image).unwrap_or_else(|e| {
                panic!("push {reference}: {e:#}\nregistry log:\n{}", registry.log())
            });
            assert_eq!(pushed, image.digest(), "push returns the manifest digest");

            // Pull by tag, pinned to the digest, as the agent does with WasmPlugin.sha256.
            let pulled = client
                .pull(&reference, Some(oci::digest_hex(&pushed).unwrap()))
                .unwrap_or_else(|e| panic!("pull {reference}: {e:#}"));
            assert_eq!(pulled.manifest_digest, pushed);
            assert_eq!(
                pulled.manifest, image.manifest,
                "manifest bytes survive the registry"
            );
            assert_eq!(pulled.variant, variant);
            assert!(
                pulled.wasm == wasm,
                "{filter} {format}: module bytes differ after pull"
            );

            // Pull by digest gives the same.
            let by_digest = Reference {
                tag: None,
                digest: Some(pushed.clone()),
                ..reference.clone()
            };
            let again = client.pull(&by_digest, None).unwrap();
            assert!(again.wasm == wasm);

            // A WasmPlugin pinned to another digest is refused, as by Istio's agent.
            let wrong = "0".repeat(64);
            let err = client.pull(&reference, Some(&wrong)).unwrap_err();
            assert!(format!("{err:#}").contains("does not match"), "{err:#}");

            report.push(format!("{filter:9} {format:6} {pushed}"));
        }
    }
    // Pushing the same image again uploads no blob and gives the same digest.
    let wasm = filter_wasm("waf");
    let image = oci::build_image(
        &wasm,
        Format::Compat,
        &ImageMeta {
            plugin_name: "waf".into(),
        },
    )
    .unwrap();
    let reference: Reference = format!("{}/meshward/compat/meshward-waf:0.1.0", registry.addr)
        .parse()
        .unwrap();
    for blob in &image.blobs {
        assert!(
            !client.upload_blob(&reference, blob).unwrap(),
            "blob re-uploaded"
        );
    }
    assert_eq!(client.push(&reference, &image).unwrap(), image.digest());
    eprintln!(
        "registry round trip ({:.1?}):\n{}",
        started.elapsed(),
        report.join("\n")
    );
}

#[test]
fn pulling_a_missing_image_or_a_cncf_wasm_artifact_fails_clearly() {
    let registry = Registry::start();
    let mut client = client();
    let missing: Reference = format!("{}/meshward/nothing:0.1.0", registry.addr)
        .parse()
        .unwrap();
    let err = format!("{:#}", client.pull(&missing, None).unwrap_err());
    assert!(err.contains("404"), "{err}");

    // The CNCF wasm artifact layout (one `application/wasm` layer) is not what Istio reads.
    let wasm = filter_wasm("tenant");
    let config = oci::Blob::new("application/vnd.wasm.config.v0+json", b"{}".to_vec());
    let layer = oci::Blob::new("application/wasm", wasm.clone());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.data.len()},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.data.len()}],
    });
    let image = oci::Image {
        manifest: serde_json::to_vec(&manifest).unwrap(),
        manifest_media_type: oci::OCI_MANIFEST.to_string(),
        blobs: vec![config, layer],
    };
    let reference: Reference = format!("{}/meshward/cncf-tenant:0.1.0", registry.addr)
        .parse()
        .unwrap();
    client.push(&reference, &image).unwrap();
    let err = format!("{:#}", client.pull(&reference, None).unwrap_err());
    assert!(err.contains("invalid format as an OCI image"), "{err}");
}

#[test]
fn meshward_oci_push_prints_the_digest_that_pull_and_pin_use() {
    let registry = Registry::start();
    let bin = env!("CARGO_BIN_EXE_meshward");
    let tmp = tempfile::tempdir().unwrap();
    let wasm_path = wasm_dir().join("meshward_audit.wasm");
    let wasm = filter_wasm("audit");
    let reference = format!("{}/meshward/meshward-audit:0.1.0", registry.addr);
    let manifest = tmp.path().join("audit.yaml");
    let yaml = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: meshward-audit\nspec:\n  # keep me\n  url: oci://ghcr.io/meshward/meshward-audit:0.1.0\n  pluginName: audit\n  pluginConfig:\n    url: http://collector\n";
    std::fs::write(&manifest, yaml).unwrap();

    let out = Command::new(bin)
        .args(["oci", "push", &reference, "--format", "oci", "--wasm"])
        .arg(&wasm_path)
        .arg("--pin")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let expected = oci::build_image(
        &wasm,
        Format::Oci,
        &ImageMeta {
            plugin_name: "audit".into(),
        },
    )
    .unwrap()
    .digest();
    assert_eq!(digest, expected);
    let hex = oci::digest_hex(&digest).unwrap();
    let pinned = std::fs::read_to_string(&manifest).unwrap();
    assert_eq!(
        pinned,
        yaml.replace(
            "  url: oci://ghcr.io/meshward/meshward-audit:0.1.0\n",
            &format!("  url: oci://{reference}\n  sha256: {hex}\n")
        )
    );

    let module = tmp.path().join("plugin.wasm");
    let out = Command::new(bin)
        .args([
            "oci",
            "pull",
            &format!("oci://{reference}"),
            "--sha256",
            hex,
            "-o",
        ])
        .arg(&module)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("manifest {digest}")), "{stdout}");
    assert!(stdout.contains("variant oci"), "{stdout}");
    assert!(std::fs::read(&module).unwrap() == wasm);

    let out = Command::new(bin)
        .args(["oci", "pull", &reference, "--sha256", &"f".repeat(64)])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong --sha256 must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
}
