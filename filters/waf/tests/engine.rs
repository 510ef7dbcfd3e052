//! The engine end to end, natively: SecLang in, decisions and log lines out.

use meshward_waf::config::Settings;
use meshward_waf::transaction::{Connection, Transaction};
use std::rc::Rc;

fn crs_config(extra: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "directives": [
            "Include @recommended",
            "Include @crs-setup",
            extra,
            "Include @owasp_crs/*.conf",
        ]
    }))
    .unwrap()
}

struct Req<'a> {
    method: &'a str,
    protocol: &'a str,
    uri: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fn get(uri: &str) -> Req<'_> {
    Req {
        method: "GET",
        protocol: "HTTP/1.1",
        uri,
        headers: vec![
            ("Host", "localhost"),
            ("User-Agent", "OWASP CRS test agent"),
            ("Accept", "text/xml,application/xml,application/xhtml+xml,text/html;q=0.9,text/plain;q=0.8,image/png,*/*;q=0.5"),
        ],
        body: b"",
    }
}

fn run(settings: &Settings, req: &Req) -> Transaction {
    let rules = Rc::clone(settings.for_authority("localhost"));
    let mut tx = Transaction::new(
        rules,
        Connection {
            remote_addr: "10.0.0.1".into(),
            remote_port: 40000,
            server_addr: "10.0.0.2".into(),
            server_port: 80,
        },
        "test-id".into(),
    );
    tx.set_request_line(
        req.method.as_bytes(),
        req.uri.as_bytes(),
        req.protocol.as_bytes(),
    );
    for (k, v) in &req.headers {
        tx.add_request_header(k.as_bytes(), v.as_bytes());
    }
    if tx.process_request_headers().is_none() {
        tx.append_request_body(req.body);
        tx.process_request_body();
    }
    tx.process_logging();
    tx
}

fn ids(tx: &Transaction) -> Vec<u64> {
    tx.matched_rules()
        .iter()
        .filter(|r| r.log_line.is_some())
        .map(|r| r.id)
        .collect()
}

#[test]
fn full_crs_loads_and_flags_sqli_at_paranoia_4() {
    let started = std::time::Instant::now();
    let settings = Settings::parse(&crs_config(
        "SecAction \"id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,ctl:ruleRemoveById=910000,\
         setvar:tx.blocking_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,\
         setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,\
         setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535\"",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "load: {:?}, {} rules",
        started.elapsed(),
        settings.default_set().rule_count()
    );
    let benign = run(&settings, &get("/index.html?page=2"));
    assert_eq!(
        ids(&benign),
        Vec::<u64>::new(),
        "{:?}",
        benign
            .matched_rules()
            .iter()
            .map(|r| &r.log_line)
            .collect::<Vec<_>>()
    );
    let mut sqli = get("/post");
    sqli.method = "POST";
    sqli.headers
        .push(("Content-Type", "application/x-www-form-urlencoded"));
    sqli.body = b"var=1234 OR 1=1";
    let tx = run(&settings, &sqli);
    let found = ids(&tx);
    assert!(found.contains(&942100), "{found:?}");
    assert!(found.contains(&949110), "{found:?}");
    eprintln!("{found:?}");
}

fn settings(directives: &str) -> Settings {
    let cfg = serde_json::to_vec(&serde_json::json!({ "directives": directives })).unwrap();
    Settings::parse(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn load_error(directives: &str) -> String {
    let cfg = serde_json::to_vec(&serde_json::json!({ "directives": directives })).unwrap();
    Settings::parse(&cfg).unwrap_err().to_string()
}

fn all_ids(tx: &Transaction) -> Vec<u64> {
    tx.matched_rules().iter().map(|r| r.id).collect()
}

#[test]
fn deny_interrupts_with_the_rule_status_and_stops_the_phase() {
    let s = settings(
        "SecRule ARGS:q \"@contains attack\" \"id:1,phase:1,deny,status:418,log,msg:'bad %{MATCHED_VAR_NAME}'\"\n\
         SecAction \"id:2,phase:1,pass,log\"",
    );
    let tx = run(&s, &get("/?q=an+attack"));
    let i = tx.interruption().expect("interrupted");
    assert_eq!((i.rule_id, i.status, i.phase), (1, 418, 1));
    assert_eq!(all_ids(&tx), vec![1], "rule 2 must not run after the deny");
    assert_eq!(tx.matched_rules()[0].msg, "bad ARGS:q");
    let line = tx.matched_rules()[0].log_line.as_deref().unwrap();
    assert!(
        line.contains("[id \"1\"]") && line.contains("[msg \"bad ARGS:q\"]"),
        "{line}"
    );
}

#[test]
fn detection_only_logs_and_remembers_but_never_interrupts() {
    let s = settings(
        "SecRuleEngine DetectionOnly\nSecRule ARGS \"@rx evil\" \"id:1,phase:1,deny,log\"\nSecAction \"id:2,phase:1,pass,log\"",
    );
    let tx = run(&s, &get("/?a=evil"));
    assert!(tx.interruption().is_none());
    assert_eq!(tx.detected().map(|d| d.rule_id), Some(1));
    assert_eq!(all_ids(&tx), vec![1, 2]);
}

#[test]
fn a_chain_matches_only_when_every_link_does_and_setvar_runs_per_link() {
    let s = settings(
        "SecRule REQUEST_METHOD \"@streq GET\" \"id:1,phase:1,pass,log,chain,setvar:tx.first=1\"\n\
         SecRule ARGS:a \"@eq 5\" \"setvar:tx.second=1\"\n\
         SecRule TX:FIRST \"@eq 1\" \"id:2,phase:1,pass,log\"\n\
         SecRule TX:SECOND \"@eq 1\" \"id:3,phase:1,pass,log\"",
    );
    assert_eq!(all_ids(&run(&s, &get("/?a=5"))), vec![1, 2, 3]);
    // The first link matched (its setvar ran) but the chain did not.
    assert_eq!(all_ids(&run(&s, &get("/?a=6"))), vec![2]);
}

#[test]
fn skip_after_jumps_to_the_marker_and_skip_counts_rules() {
    let s = settings(
        "SecAction \"id:1,phase:1,pass,nolog,skipAfter:END\"\n\
         SecAction \"id:2,phase:1,pass,log\"\n\
         SecMarker END\n\
         SecAction \"id:3,phase:1,pass,log,skip:1\"\n\
         SecAction \"id:4,phase:1,pass,log\"\n\
         SecAction \"id:5,phase:1,pass,log\"",
    );
    assert_eq!(all_ids(&run(&s, &get("/"))), vec![1, 3, 5]);
}

#[test]
fn setvar_arithmetic_and_macros() {
    let s = settings(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.score=5,setvar:tx.score=+%{tx.score},setvar:tx.score=-3,setvar:'tx.who=%{REQUEST_HEADERS.host}'\"\n\
         SecRule TX:score \"@eq 7\" \"id:2,phase:1,pass,log,msg:'%{tx.who} %{rule.id}'\"\n\
         SecAction \"id:3,phase:1,pass,nolog,setvar:!tx.score\"\n\
         SecRule &TX:score \"@eq 0\" \"id:4,phase:1,pass,log\"",
    );
    let tx = run(&s, &get("/"));
    assert_eq!(all_ids(&tx), vec![1, 2, 3, 4]);
    assert_eq!(tx.matched_rules()[1].msg, "localhost 2");
}

#[test]
fn exclusions_counts_and_regex_selectors() {
    let s = settings(
        "SecRule ARGS|!ARGS:safe \"@rx x\" \"id:1,phase:1,pass,log\"\n\
         SecRule &ARGS \"@eq 3\" \"id:2,phase:1,pass,log\"\n\
         SecRule ARGS:/^utm_/ \"@rx y\" \"id:3,phase:1,pass,log\"\n\
         SecRule REQUEST_HEADERS:user-agent \"@contains test agent\" \"id:4,phase:1,pass,log\"",
    );
    assert_eq!(
        all_ids(&run(&s, &get("/?safe=x&utm_a=y&b=1"))),
        vec![2, 3, 4]
    );
    assert_eq!(all_ids(&run(&s, &get("/?SAFE=x&utm_a=z&b=1"))), vec![2, 4]);
}

#[test]
fn ctl_removes_rules_and_targets_for_this_request_only() {
    let s = settings(
        "SecRule ARGS:off \"@streq 1\" \"id:1,phase:1,pass,nolog,ctl:ruleRemoveById=3,ctl:ruleRemoveTargetById=4;ARGS:token\"\n\
         SecAction \"id:2,phase:1,pass,nolog\"\n\
         SecRule ARGS \"@rx .\" \"id:3,phase:1,pass,log\"\n\
         SecRule ARGS \"@rx secret\" \"id:4,phase:1,pass,log\"",
    );
    assert_eq!(all_ids(&run(&s, &get("/?off=1&token=secret"))), vec![1, 2]);
    assert_eq!(
        all_ids(&run(&s, &get("/?off=0&token=secret"))),
        vec![2, 3, 4]
    );
}

#[test]
fn update_directives_tune_loaded_rules_by_id_tag_and_msg() {
    let rules = "SecDefaultAction \"phase:1,log,deny,status:406\"\n\
         SecRule ARGS \"@rx evil\" \"id:1,phase:1,deny,status:403,log,msg:'evil arg',tag:'attack-x'\"\n\
         SecRule ARGS \"@rx bad\" \"id:2,phase:1,pass,log,msg:'bad arg'\"\n\
         SecRule REQUEST_HEADERS:x-a \"@rx bad\" \"id:3,phase:1,pass,log\"\n\
         SecRule ARGS:level \"@rx high\" \"id:4,phase:1,pass,log\"\n";
    let s = settings(&format!(
        "{rules}\
         SecRuleUpdateTargetByTag attack-x \"!ARGS:comment\"\n\
         SecRuleUpdateTargetByMsg \"bad arg\" \"!ARGS:note\"\n\
         SecRuleUpdateTargetById 3 REQUEST_HEADERS:x-b REQUEST_HEADERS:x-a\n\
         SecRuleUpdateActionById 4 block"
    ));
    let blocked_by = |req: &Req| run(&s, req).interruption().map(|i| (i.rule_id, i.status));
    assert_eq!(blocked_by(&get("/?comment=evil")), None);
    assert_eq!(blocked_by(&get("/?q=evil")), Some((1, 403)));
    assert_eq!(all_ids(&run(&s, &get("/?note=bad"))), Vec::<u64>::new());
    assert_eq!(all_ids(&run(&s, &get("/?q=bad"))), vec![2]);
    let header = |name| {
        let mut req = get("/");
        req.headers.push((name, "bad"));
        all_ids(&run(&s, &req))
    };
    assert_eq!(header("x-a"), Vec::<u64>::new(), "x-a was replaced by x-b");
    assert_eq!(header("x-b"), vec![3]);
    // `block` means the phase's default action: deny with status 406.
    assert_eq!(blocked_by(&get("/?level=high")), Some((4, 406)));

    // Monitor a rule instead of blocking on it, with a new message and
    // transformations.
    let s = settings(&format!(
        "{rules}SecRuleUpdateActionById 1 \"pass,msg:'evil arg (monitored)',t:none,t:lowercase\""
    ));
    let tx = run(&s, &get("/?q=EVIL"));
    assert!(tx.interruption().is_none());
    assert_eq!(all_ids(&tx), vec![1]);
    assert_eq!(tx.matched_rules()[0].msg, "evil arg (monitored)");

    for (directive, expected) in [
        (
            "SecRuleUpdateTargetByTag nosuch \"!ARGS:x\"",
            "no rule loaded before this line matches `nosuch`",
        ),
        (
            "SecRuleUpdateTargetById 99 \"!ARGS:x\"",
            "no rule loaded before this line matches `99`",
        ),
        (
            "SecRuleUpdateTargetById 3 ARGS:x ARGS:y",
            "rule 3 has no target `ARGS:y`",
        ),
        (
            "SecRuleUpdateActionById 1 \"id:9\"",
            "cannot change a rule's id, phase or chain",
        ),
        (
            "SecRuleUpdateActionById 1 \"exec:/bin/sh\"",
            "unsupported action `exec`",
        ),
    ] {
        let e = load_error(&format!("{rules}{directive}"));
        assert!(e.contains(expected) && e.contains(":6"), "{directive}: {e}");
    }
}

/// The README's tuning example, as written there, loads with full CRS and
/// does what its comments say.
#[test]
fn the_readme_tuning_example_excludes_fields_and_changes_the_block_status() {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("## Tuning CRS").expect("tuning section")..];
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block");
    let config: serde_yaml::Value = serde_yaml::from_str(block).unwrap();
    let s =
        Settings::parse(&serde_json::to_vec(&config).unwrap()).unwrap_or_else(|e| panic!("{e}"));

    let sqli = "1%27%20or%20%271%27%3D%271";
    let blocked = run(&s, &get(&format!("/transfer?q={sqli}")));
    let i = blocked
        .interruption()
        .expect("SQL injection in q is blocked");
    assert_eq!((i.rule_id, i.status), (949110, 406));
    assert!(ids(&blocked).contains(&942100), "{:?}", ids(&blocked));
    let excluded = run(&s, &get(&format!("/transfer?reference={sqli}")));
    assert!(excluded.interruption().is_none(), "{:?}", ids(&excluded));
    assert!(!ids(&excluded)
        .iter()
        .any(|id| (942000..943000).contains(id)));
}

/// A gRPC unary call: a protobuf message in its 5-byte frame (NUL bytes and
/// a newline included).
fn grpc_call<'a>(user_agent: &'a str, content_type: &'a str) -> Req<'a> {
    Req {
        method: "POST",
        // Envoy's `request.protocol` for gRPC, which needs no content-length.
        protocol: "HTTP/2",
        uri: "/bank.v1.Accounts/GetBalance",
        headers: vec![
            ("Host", "accounts.bank-a.svc.cluster.local"),
            ("Content-Type", content_type),
            ("TE", "trailers"),
            ("grpc-timeout", "5S"),
            ("User-Agent", user_agent),
        ],
        body: b"\0\0\0\0\x07\n\x0542-ab",
    }
}

#[test]
fn grpc_calls_pass_crs_with_meshward_grpc_and_their_metadata_is_still_inspected() {
    let plain = Settings::parse(&crs_config("")).unwrap_or_else(|e| panic!("{e}"));
    let tx = run(&plain, &grpc_call("grpc-go/1.62.0", "application/grpc"));
    assert!(
        tx.interruption().is_some(),
        "without @meshward-grpc CRS refuses gRPC (why the include exists): {:?}",
        ids(&tx)
    );

    let grpc =
        Settings::parse(&crs_config("Include @meshward-grpc")).unwrap_or_else(|e| panic!("{e}"));
    for content_type in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web+proto",
        "application/grpc-web-text",
        "application/x-protobuf",
        "Application/GRPC; charset=utf-8",
    ] {
        let tx = run(&grpc, &grpc_call("grpc-go/1.62.0", content_type));
        assert!(
            tx.interruption().is_none(),
            "{content_type}: {:?}",
            ids(&tx)
        );
        assert_eq!(ids(&tx), Vec::<u64>::new(), "{content_type}");
    }
    // The path and headers are still CRS's: a scanner is refused.
    let tx = run(&grpc, &grpc_call("sqlmap/1.7.2#stable", "application/grpc"));
    assert_eq!(tx.interruption().map(|i| i.rule_id), Some(949110));
    assert!(ids(&tx).contains(&913100), "{:?}", ids(&tx));
    // A look-alike content type gets no pass.
    let tx = run(&grpc, &grpc_call("grpc-go/1.62.0", "application/grpcx"));
    assert!(tx.interruption().is_some(), "{:?}", ids(&tx));
}

#[test]
fn transformations_apply_in_order_and_multimatch_checks_every_step() {
    let s = settings(
        "SecRule ARGS:a \"@streq <script>\" \"id:1,phase:1,pass,log,t:none,t:urlDecodeUni,t:lowercase\"\n\
         SecRule ARGS:b \"@streq %41\" \"id:2,phase:1,pass,log,t:urlDecode,multiMatch\"\n\
         SecRule ARGS:b \"@streq %41\" \"id:3,phase:1,pass,log,t:urlDecode\"",
    );
    assert_eq!(
        all_ids(&run(&s, &get("/?a=%253CSCRIPT%253E&b=%2541"))),
        vec![1, 2]
    );
}

#[test]
fn transformed_values_are_reused_across_rules_but_never_for_changing_variables() {
    // Rules 5 and 6 share a transformation list over the same argument (the
    // second reuses the first's result). Rule 3 deletes TX:v and sets it
    // again, so its new bytes likely sit at the freed address of the old
    // ones: a cache keyed by address would wrongly give rule 4 "ABC".
    let s = settings(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.v=abc\"\n\
         SecRule TX:v \"@streq ABC\" \"id:2,phase:1,pass,log,t:uppercase\"\n\
         SecAction \"id:3,phase:1,pass,nolog,setvar:!tx.v,setvar:tx.v=xyz\"\n\
         SecRule TX:v \"@streq XYZ\" \"id:4,phase:1,pass,log,t:uppercase\"\n\
         SecRule ARGS:a \"@streq HELLO\" \"id:5,phase:1,pass,log,t:uppercase,t:trim\"\n\
         SecRule ARGS:a \"@streq HELLO\" \"id:6,phase:1,pass,log,t:uppercase,t:trim\"\n\
         SecRule ARGS:a \"@streq Hello\" \"id:7,phase:1,pass,log,t:trim\"\n\
         SecRule ARGS \"@streq hello \" \"id:8,phase:1,pass,log,t:lowercase\"",
    );
    assert_eq!(
        all_ids(&run(&s, &get("/?a=Hello+"))),
        vec![1, 2, 3, 4, 5, 6, 7, 8]
    );
}

#[test]
fn capture_fills_tx_0_to_9() {
    let s = settings(
        "SecRule ARGS:v \"@rx (\\d+)-(\\d+)\" \"id:1,phase:1,pass,nolog,capture\"\n\
         SecRule TX:2 \"@eq 42\" \"id:2,phase:1,pass,log,msg:'%{TX.0}'\"",
    );
    let tx = run(&s, &get("/?v=7-42"));
    assert_eq!(all_ids(&tx), vec![1, 2]);
    assert_eq!(tx.matched_rules()[1].msg, "7-42");
}

#[test]
fn default_action_supplies_block_and_log() {
    let s = settings(
        "SecDefaultAction \"phase:1,nolog,deny,status:401\"\nSecRule ARGS \"@rx x\" \"id:1,phase:1,block\"",
    );
    let tx = run(&s, &get("/?a=x"));
    assert_eq!(tx.interruption().map(|i| i.status), Some(401));
    assert!(tx.matched_rules()[0].log_line.is_none());
}

#[test]
fn allow_skips_the_remaining_rules() {
    let s = settings(
        "SecRule REMOTE_ADDR \"@ipMatch 10.0.0.0/8\" \"id:1,phase:1,allow,nolog\"\nSecAction \"id:2,phase:1,deny\"\nSecAction \"id:3,phase:2,deny\"",
    );
    let tx = run(&s, &get("/"));
    assert!(tx.interruption().is_none());
    assert_eq!(all_ids(&tx), vec![1]);
}

#[test]
fn client_values_cannot_forge_log_fields() {
    let s = settings("SecRule ARGS \"@rx .\" \"id:1,phase:1,pass,log,logdata:'%{MATCHED_VAR}'\"");
    let tx = run(&s, &get("/?a=%22%5D%20%5Bid%20%22999%22%5D%0a"));
    let line = tx.matched_rules()[0].log_line.clone().unwrap();
    let ids: Vec<&str> = line
        .match_indices("[id \"")
        .map(|(i, _)| &line[i..i + 8])
        .collect();
    assert_eq!(ids, vec!["[id \"1\"]"], "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn load_errors_name_the_file_line_and_construct() {
    assert!(load_error(
        "SecRule ARGS \"@rx a\" \"id:1\"\n\nSecRule ARGS \"@rx b\" \"id:2,exec:/bin/sh\""
    )
    .contains("directives[0]:3: SecRule: unsupported action `exec`"));
    assert!(load_error("SecFooBar On").contains("unsupported directive `SecFooBar`"));
    assert!(load_error("SecRule ARGS \"@nope x\" \"id:1\"").contains("@nope"));
    assert!(load_error("SecRule ARGS \"@rx (?<=a)b\" \"id:1\"").contains("@rx"));
    assert!(
        load_error("SecRule ARGS \"@rx a\" \"id:1\"\nSecRule ARGS \"@rx a\" \"id:1\"")
            .contains("duplicated")
    );
    assert!(load_error("SecRule ARGS \"@rx a\" \"id:1,chain\"").contains("chain"));
    assert!(load_error("SecRule ARGS \"@rx a\" \"phase:1\"").contains("needs an `id`"));
    assert!(load_error("SecRule XML:/a/b \"@rx a\" \"id:1\"").contains("XPath"));
    assert!(load_error("Include @owasp_crs/NOPE-*.conf").contains("no embedded CRS file"));
}

#[test]
fn includes_are_capped_in_depth_and_in_number() {
    // Six levels of ten includes each would be a million files.
    let mut files = serde_json::Map::new();
    for level in 0..6 {
        let text = format!("Include f{}\n", level + 1).repeat(10);
        files.insert(format!("f{level}"), text.into());
    }
    files.insert("f6".into(), "SecRuleEngine On\n".into());
    let cfg = serde_json::json!({ "directives": "Include f0", "files": files });
    let error = Settings::parse(&serde_json::to_vec(&cfg).unwrap())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("more than 1024 files included"), "{error}");
}

#[test]
fn empty_config_loads_the_recommended_engine_and_baseline_rules() {
    let s = Settings::parse(b"").unwrap();
    let mut sqli = get("/accounts?id=1%27%20OR%20%271%27%3D%271");
    sqli.headers.push(("Content-Length", "0"));
    let tx = run(&s, &sqli);
    assert_eq!(
        tx.interruption().map(|i| (i.rule_id, i.status)),
        Some((10001, 403))
    );
    let benign = run(&s, &get("/accounts?id=12345&sort=desc"));
    assert!(benign.interruption().is_none(), "{:?}", all_ids(&benign));
}

#[test]
fn per_authority_sets_choose_by_host_and_wildcard() {
    let cfg = serde_json::json!({
        "directiveSets": {
            "strict": "SecAction \"id:1,phase:1,deny\"",
            "open": "SecAction \"id:2,phase:1,pass\""
        },
        "defaultSet": "strict",
        "perAuthority": { "*.open.example": "open", "exact.example": "open" }
    });
    let s = Settings::parse(&serde_json::to_vec(&cfg).unwrap()).unwrap();
    assert!(s.for_authority("a.open.example:8080").rule(2).is_some());
    assert!(s.for_authority("exact.example").rule(2).is_some());
    assert!(s.for_authority("open.example").rule(1).is_some());
    assert!(s.for_authority("other").rule(1).is_some());
    let bad = serde_json::json!({ "perAuthority": { "x": "missing" } });
    let err = Settings::parse(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("perAuthority.x: no directive set named `missing`"),
        "{err}"
    );
}

#[test]
fn web_server_directives_load_with_a_note_instead_of_silently() {
    let s = settings(
        "SecAuditEngine RelevantOnly\nSecTmpDir /tmp\nSecWebAppId payments\nSecAction \"id:1,phase:1,pass\"",
    );
    let notes = s.notes();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes[0].starts_with("directives[0]:1: SecAuditEngine has no effect"),
        "{notes:?}"
    );
}

#[test]
fn a_coraza_proxy_wasm_configuration_loads_as_it_is() {
    let cfg = serde_json::json!({
        "directives_map": {
            "rs1": ["Include @recommended-conf", "SecRuleEngine On", "SecAction \"id:1,phase:1,deny,status:418\""],
            "rs2": ["Include @recommended-conf", "Include @crs-setup-conf", "SecAction \"id:2,phase:1,pass\""]
        },
        "default_directives": "rs1",
        "per_authority_directives": { "foo.example.com": "rs2" }
    });
    let s = Settings::parse(&serde_json::to_vec(&cfg).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.for_authority("foo.example.com").rule(2).is_some());
    let tx = run(&s, &get("/"));
    assert_eq!(tx.interruption().map(|i| i.status), Some(418));
}
