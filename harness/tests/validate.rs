//! `meshward validate` agrees with Istio's WasmPlugin corpus and accepts the
//! repository's own manifests.
//!
//! The corpus and the CRD are read from `../shared/istio` beside the checkout
//! (`$MESHWARD_SHARED_DIR` overrides).

use meshward_harness::validate::{
    default_crd_path, parse_documents, shared_dir, unknown_cel_rules, Crd, Options, Validator,
    Verdict,
};
use std::path::{Path, PathBuf};

fn crd() -> Crd {
    Crd::load(&default_crd_path()).expect("the WasmPlugin CRD loads")
}

fn validator() -> Validator {
    Validator::new(crd(), Options::default())
}

fn corpus(name: &str) -> Vec<(usize, serde_json::Value)> {
    let path = shared_dir().join("istio").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_documents(&text).expect("corpus is YAML")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_document_of_istios_valid_corpus_passes() {
    let v = validator();
    let docs = corpus("wasm-valid.yaml");
    assert_eq!(docs.len(), 4, "the valid corpus has four documents");
    for (n, doc) in docs {
        let report = v.validate_document(&format!("wasm-valid.yaml#{n}"), doc);
        assert!(matches!(report.verdict, Verdict::Ok(_)), "{report}");
    }
}

#[test]
fn every_document_of_istios_invalid_corpus_fails_with_the_expected_text() {
    let v = validator();
    let docs = corpus("wasm-invalid.yaml");
    assert_eq!(docs.len(), 15, "the invalid corpus has fifteen documents");
    for (n, mut doc) in docs {
        let expected = doc
            .as_object_mut()
            .and_then(|o| o.remove("_err"))
            .and_then(|e| e.as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("document {n} has an _err"));
        let report = v.validate_document(&format!("wasm-invalid.yaml#{n}"), doc);
        assert!(
            report.is_error(),
            "#{n} should fail with {expected:?}: {report}"
        );
        assert!(
            report.errors().iter().any(|e| e.contains(&expected)),
            "#{n}: no error contains {expected:?}: {report}"
        );
    }
}

#[test]
fn expect_errors_mode_reads_the_corpus_convention() {
    let v = Validator::new(
        crd(),
        Options {
            expect_errors: true,
            ..Options::default()
        },
    );
    let path = shared_dir().join("istio/wasm-invalid.yaml");
    let reports = v.validate_paths(&[path]).unwrap();
    assert_eq!(reports.len(), 15);
    assert!(reports.iter().all(|r| !r.is_error()), "{reports:#?}");

    let wrong = "_err: 'some other text'\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: x}\nspec: {url: ''}\n";
    let reports = v.validate_text("wrong.yaml", wrong);
    assert!(reports[0].is_error(), "{}", reports[0]);
    assert!(reports[0]
        .to_string()
        .contains("expected to fail with \"some other text\""));
}

#[test]
fn every_cel_rule_of_the_crd_is_implemented() {
    let crd = crd();
    let rules = crd.cel_rules();
    // The CRD's seven distinct rules sit at eight places (targetRef and targetRefs share one).
    assert!(rules.len() >= 8, "the CRD walk found only {rules:?}");
    let unknown = unknown_cel_rules(&crd);
    assert!(
        unknown.is_empty(),
        "the CRD has CEL rules that `meshward validate` does not implement; add them to validate/cel.rs: {unknown:#?}"
    );
}

#[test]
fn the_repository_manifests_validate() {
    let v = validator();
    let reports = v.validate_paths(&[repo().join("wasmplugins")]).unwrap();
    let errors: Vec<String> = reports
        .iter()
        .filter(|r| r.is_error())
        .map(|r| r.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let plugins = reports
        .iter()
        .filter(|r| r.object.starts_with("WasmPlugin/") && matches!(r.verdict, Verdict::Ok(_)))
        .count();
    // 4 files + 4 (base) + 3 (gateway) + 3 (gateway-api) + 3 × 4 (tenants).
    assert_eq!(plugins, 26, "{reports:#?}");
}

#[test]
fn overlays_render_into_their_namespaces_with_their_scope() {
    use meshward_harness::validate::kustomize::render;
    let base = repo().join("wasmplugins");
    for tenant in ["bank-a", "bank-b", "shared"] {
        let r = render(&base.join("overlays").join(tenant)).unwrap();
        assert_eq!(r.objects.len(), 4, "{tenant}");
        for o in &r.objects {
            assert_eq!(o.pointer("/metadata/namespace").unwrap(), tenant);
            assert_eq!(o.pointer("/spec/match/0/mode").unwrap(), "SERVER");
            assert!(o.pointer("/spec/selector").is_none());
        }
    }
    let gw = render(&base.join("gateway")).unwrap();
    let names: Vec<&str> = gw
        .objects
        .iter()
        .map(|o| o.pointer("/metadata/name").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "meshward-waf-gateway",
            "meshward-ratelimit-gateway",
            "meshward-audit-gateway"
        ]
    );
    for o in &gw.objects {
        assert_eq!(
            o.pointer("/spec/selector/matchLabels/istio").unwrap(),
            "ingressgateway"
        );
        assert_eq!(o.pointer("/spec/match/0/mode").unwrap(), "CLIENT");
        assert_eq!(o.pointer("/metadata/namespace").unwrap(), "istio-system");
    }
    let api = render(&base.join("gateway/gateway-api")).unwrap();
    assert_eq!(api.objects.len(), 3, "no tenant filter at the gateway");
    // Every kustomization builds on wasmplugins/base: plain `kubectl apply -k` works.
    for r in [&gw, &api] {
        assert!(
            r.notes.iter().all(|n| !n.contains("outside")),
            "{:?}",
            r.notes
        );
    }
    for o in &api.objects {
        assert_eq!(o.pointer("/spec/targetRefs/0/kind").unwrap(), "Gateway");
        assert!(o.pointer("/spec/match").is_none());
        assert_eq!(o.pointer("/metadata/namespace").unwrap(), "istio-ingress");
    }
}

#[test]
fn a_base_that_contains_its_overlay_is_a_cycle() {
    let dir = std::env::temp_dir().join(format!("meshward-validate-cycle-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("overlay")).unwrap();
    std::fs::write(dir.join("kustomization.yaml"), "resources: []\n").unwrap();
    std::fs::write(
        dir.join("overlay/kustomization.yaml"),
        "resources: [\"..\"]\n",
    )
    .unwrap();
    let err = meshward_harness::validate::kustomize::render(&dir.join("overlay")).unwrap_err();
    assert!(format!("{err:#}").contains("cycle detected"), "{err:#}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn selector_and_target_refs_together_are_rejected() {
    let text = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: both, namespace: istio-ingress}
spec:
  url: oci://ghcr.io/meshward/meshward-waf:0.1.0
  selector: {matchLabels: {istio: ingressgateway}}
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: bank-gateway, namespace: other}]
"#;
    let r = &validator().validate_text("both.yaml", text)[0];
    let all = r.errors().join("\n");
    assert!(
        all.contains(
            "spec: Invalid value: \"object\": only one of targetRefs or selector can be set"
        ),
        "{all}"
    );
    assert!(all.contains("spec.targetRefs[0].namespace: Invalid value: \"string\": cross namespace referencing is not currently supported"), "{all}");
}

#[test]
fn unknown_spec_fields_and_bad_enums_are_rejected() {
    let text = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: typo}
spec:
  url: oci://ghcr.io/meshward/meshward-waf:0.1.0
  phase: AUTHORIZATION
  failStrategy: FAIL_CLOSED
  priorty: 10
"#;
    let r = &validator().validate_text("typo.yaml", text)[0];
    let all = r.errors().join("\n");
    assert!(
        all.contains("spec.phase: Unsupported value: \"AUTHORIZATION\""),
        "{all}"
    );
    assert!(
        all.contains("spec.failStrategy: Unsupported value: \"FAIL_CLOSED\""),
        "{all}"
    );
    assert!(all.contains("spec.priorty: unknown field"), "{all}");
}

#[test]
fn require_digests_refuses_unpinned_oci_modules() {
    let v = Validator::new(
        crd(),
        Options {
            require_digests: true,
            ..Options::default()
        },
    );
    let unpinned = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: a}\nspec: {url: 'oci://r/meshward-waf:1', pluginName: waf}\n";
    let r = &v.validate_text("a.yaml", unpinned)[0];
    assert!(
        r.errors()
            .iter()
            .any(|e| e.starts_with("spec.sha256: Required value")),
        "{r}"
    );
    let pinned = format!(
        "{}  sha256: {}\n",
        unpinned.replace(
            "spec: {url: 'oci://r/meshward-waf:1', pluginName: waf}\n",
            "spec:\n  url: oci://r/meshward-waf:1\n  pluginName: waf\n"
        ),
        "a".repeat(64)
    );
    let r = &v.validate_text("b.yaml", &pinned)[0];
    assert!(!r.errors().iter().any(|e| e.contains("sha256")), "{r}");
}

#[test]
fn plugin_name_must_match_the_meshward_module() {
    let text = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: a}\nspec: {url: 'oci://r/meshward-waf:1', pluginName: tenant}\n";
    let r = &validator().validate_text("a.yaml", text)[0];
    assert!(
        r.errors()
            .iter()
            .any(|e| e.starts_with("spec.pluginName: Invalid value: \"tenant\"")),
        "{r}"
    );
}

/// A WasmPlugin of a meshward filter with this `pluginConfig` (JSON).
fn plugin(filter: &str, config: &str) -> String {
    format!(
        "apiVersion: extensions.istio.io/v1alpha1\n\
         kind: WasmPlugin\n\
         metadata: {{name: meshward-{filter}, namespace: istio-system}}\n\
         spec:\n  url: oci://ghcr.io/meshward/meshward-{filter}:0.1.0\n  pluginName: {filter}\n  pluginConfig: {config}\n"
    )
}

#[test]
fn each_filters_plugin_config_is_checked_by_its_own_parser_with_the_path() {
    let v = validator();
    let cases = [
        (
            "ratelimit",
            r#"{"rules": [{"name": "per-caller", "key": {"principal": true}, "limit": {"requests": 10, "per": "second", "burst": 0}}]}"#,
            "spec.pluginConfig.rules[0].limit.burst",
        ),
        (
            "tenant",
            r#"{"mode": "enforce-ish"}"#,
            "spec.pluginConfig.mode",
        ),
        (
            "audit",
            r#"{"signing": {"activeKeyId": "k9", "keys": [{"id": "k1"}]}}"#,
            "spec.pluginConfig.signing.activeKeyId",
        ),
        (
            "waf",
            r#"{"directives": ["Include @recommended", "SecRule ARGS \"@rx a\" \"id:1,exec:/bin/sh\""]}"#,
            "spec.pluginConfig.directives: directives[1]:1: SecRule: unsupported action `exec`",
        ),
    ];
    for (filter, config, path) in cases {
        let r = &v.validate_text("p.yaml", &plugin(filter, config))[0];
        assert!(r.is_error(), "{filter}: {r}");
        let errors = r.errors();
        assert!(
            errors.iter().any(|e| e.starts_with(path) && e.ends_with(&format!("(meshward-{filter} config)"))),
            "{filter}: {errors:?}"
        );
    }
    // The shipped configurations pass the same parsers.
    for filter in ["waf", "tenant", "ratelimit", "audit"] {
        let file = repo()
            .join("wasmplugins/base")
            .join(format!("{filter}.yaml"));
        let text = std::fs::read_to_string(&file).expect("manifest");
        let r = &v.validate_text(&file.display().to_string(), &text)[0];
        assert!(!r.is_error(), "{r}");
        assert!(!r.to_string().contains("not checked"), "{r}");
    }
}
