//! The WAF filter over the built `.wasm`, in the harness: what a client, the
//! upstream, the filters after it and an operator reading logs and metrics see
//! when SecLang rules (ours, or OWASP CRS) allow, block or only detect.
//!
//! The engine itself is tested natively in `filters/waf/tests/engine.rs` and
//! CRS's regression suite runs in `crs.rs`; these tests are about the filter:
//! which callback runs which phase, body buffering and limits, local replies,
//! filter state, metrics, log lines and configuration rejection.

use meshward_harness::{LogLevel, Outcome, Phase, PluginSpec, Proxy, Request, Response};
use meshward_shared::filter_state::{
    Decision, Outcome as Verdict, WAF_DECISION, WAF_RULES, WAF_SCORE,
};
use serde_json::{json, Value};

// ----- helpers ----------------------------------------------------------

fn waf(config: Value) -> PluginSpec {
    PluginSpec::new("waf", meshward_tests::wasm("waf"))
        .config_json(config)
        .phase(Phase::Authn)
        .priority(1000)
}

fn proxy(config: Value) -> Proxy {
    Proxy::builder()
        .plugin(waf(config))
        .build()
        .unwrap_or_else(|e| panic!("the WAF did not load: {e}"))
}

/// Our own small rule set on top of `@recommended` (body processors, limits).
const RULES: &str = r#"
SecRule REQUEST_HEADERS:X-Attack "@streq yes" "id:1001,phase:1,deny,log,msg:'attack header'"
SecRule ARGS "@contains evilpayload" "id:1002,phase:2,deny,status:406,log,msg:'evil argument',logdata:'in %{MATCHED_VAR_NAME}'"
SecRule XML:/* "@contains evilpayload" "id:1003,phase:2,deny,log,msg:'evil XML'"
SecRule FILES "@rx \.php$" "id:1004,phase:2,deny,log,msg:'PHP upload',logdata:'%{MATCHED_VAR}'"
SecRule REQUEST_HEADERS:Host "@streq blocked.example" "id:1005,phase:1,deny,status:421,log,msg:'blocked host'"
SecAction "id:1006,phase:1,pass,nolog,setvar:tx.anomaly_score=+0"
SecRule ARGS:watch "@streq me" "id:1007,phase:1,pass,log,msg:'watched',setvar:tx.anomaly_score=+3"
"#;

fn own_rules() -> Proxy {
    proxy(json!({ "directives": ["Include @recommended", RULES] }))
}

fn full_crs() -> Value {
    json!({ "directives": ["Include @recommended", "Include @crs-setup", "Include @owasp_crs/*.conf"] })
}

/// A request with a body, as a real client sends it (Content-Length set).
fn with_body(method: &str, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
    Request::new(method, path)
        .header("content-type", content_type)
        .body(body)
        .http1_framing()
}

fn form(path: &str, body: &str) -> Request {
    with_body(
        "POST",
        path,
        "application/x-www-form-urlencoded",
        body.as_bytes(),
    )
}

fn json_post(path: &str, body: &str) -> Request {
    with_body("POST", path, "application/json", body.as_bytes())
}

/// Headers a browser or API client sends (CRS flags requests without them).
fn browser(req: Request) -> Request {
    req.authority("api.bank-a.example")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .header("accept", "application/json, text/html;q=0.9, */*;q=0.8")
        .header("accept-language", "en-GB,en;q=0.7")
}

const BOUNDARY: &str = "----meshwardFormBoundary7MA4YWxkTrZu0gW";

/// A multipart/form-data body: (field, filename for a file part, content).
fn multipart(parts: &[(&str, Option<&str>, &str)]) -> Request {
    let mut body = String::new();
    for (name, filename, content) in parts {
        body.push_str(&format!("--{BOUNDARY}\r\n"));
        match filename {
            Some(file) => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )),
            None => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            )),
        }
        body.push_str(content);
        body.push_str("\r\n");
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    with_body(
        "POST",
        "/upload",
        &format!("multipart/form-data; boundary={BOUNDARY}"),
        body.into_bytes(),
    )
}

fn reply(out: &Outcome) -> Value {
    serde_json::from_slice(&out.response.body).unwrap_or_else(|_| {
        panic!(
            "status {}: body is not JSON: {:?}",
            out.status(),
            out.response.body_text()
        )
    })
}

/// The WAF's ModSecurity-style warn lines for this request.
fn alert_lines(out: &Outcome) -> Vec<&str> {
    out.logs
        .iter()
        .filter(|l| l.plugin == "waf" && l.level == LogLevel::Warn)
        .map(|l| l.message.as_str())
        .collect()
}

/// Every `[id "N"]` field of a line.
fn ids_in(line: &str) -> Vec<u64> {
    line.match_indices("[id \"")
        .filter_map(|(i, m)| {
            let rest = &line[i + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

/// The ids of the rules that alerted (logged) for this request, in order.
fn alerts(out: &Outcome) -> Vec<u64> {
    alert_lines(out).iter().flat_map(|l| ids_in(l)).collect()
}

fn decision(out: &Outcome) -> Option<Decision> {
    out.filter_state
        .get(WAF_DECISION)
        .and_then(|b| Decision::decode(b))
}

fn state(out: &Outcome, key: &str) -> String {
    out.filter_state_text(key)
        .unwrap_or_else(|| panic!("no filter state {key}: {:?}", out.filter_state.keys()))
}

fn waf_deny(rule: &str) -> Decision {
    Decision::new(Verdict::Deny)
        .with_rule(rule)
        .with_reason("waf_rule")
}

/// A block by the WAF: its status, its JSON reason, and the upstream untouched.
#[track_caller]
fn assert_blocked(out: &Outcome, status: u16, rule: u64) {
    assert_eq!(
        out.status(),
        status,
        "{:?} {:?}",
        out.response.body_text(),
        alert_lines(out)
    );
    assert!(
        out.upstream.is_none(),
        "a blocked request never reaches the upstream"
    );
    let local = out.local_reply.as_ref().expect("a local reply");
    assert_eq!(
        (local.plugin.as_str(), local.details.as_str()),
        ("waf", "meshward_waf_denied")
    );
    assert_eq!(reply(out)["reason"], json!(format!("rule {rule}")));
}

#[track_caller]
fn assert_passed(out: &Outcome) {
    assert_eq!(
        out.status(),
        200,
        "{:?} {:?}",
        out.response.body_text(),
        alert_lines(out)
    );
    assert!(out.upstream.is_some(), "reached the upstream");
    assert!(out.local_reply.is_none(), "{:?}", out.local_reply);
}

// ----- blocking and passing ---------------------------------------------

#[test]
fn a_blocked_request_gets_the_rule_status_and_a_json_reason_and_never_reaches_the_upstream() {
    let mut p = own_rules();
    let out = p.send(
        Request::get("/accounts/1")
            .header("x-attack", "yes")
            .header("x-request-id", "req-7"),
    );
    assert_blocked(&out, 403, 1001);
    assert_eq!(
        reply(&out),
        json!({"error": "request blocked by the WAF", "reason": "rule 1001", "request_id": "req-7"})
    );
    assert_eq!(out.response.get("content-type"), Some("application/json"));

    // A rule with `status:406` answers 406.
    let out = p.send(form("/search", "q=evilpayload").header("x-request-id", "req-8"));
    assert_blocked(&out, 406, 1002);
    assert_eq!(reply(&out)["request_id"], json!("req-8"));
}

#[test]
fn an_allowed_request_reaches_the_upstream_unchanged() {
    let mut p = own_rules();
    let body =
        r#"{"from":"DE89370400440532013000","to":"FR1420041010050500013M02606","amount":"250.00"}"#;
    let out = p.send(
        json_post("/transfers?dry=false&watch=you", body)
            .header("authorization", "Bearer abc.def.ghi")
            .header("x-custom", "kept \"as\" is; a=b")
            .header("x-request-id", "req-1"),
    );
    assert_passed(&out);
    let up = out.upstream.as_ref().unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, "/transfers?dry=false&watch=you");
    assert_eq!(up.body, body.as_bytes());
    assert_eq!(up.header("authorization"), Some("Bearer abc.def.ghi"));
    assert_eq!(up.header("x-custom"), Some("kept \"as\" is; a=b"));
    assert_eq!(up.header("content-type"), Some("application/json"));
    assert_eq!(up.header("x-request-id"), Some("req-1"));
    assert_eq!(out.response.body, body.as_bytes(), "the echo came back");
    assert!(alert_lines(&out).is_empty(), "{:?}", alert_lines(&out));
}

#[test]
fn a_header_rule_blocks_in_phase_1_before_the_body_is_inspected() {
    let mut p = own_rules();
    // The body would match the phase-2 rule 1002; phase 1 decides first.
    let out = p.send(form("/search", "q=evilpayload").header("x-attack", "yes"));
    assert_blocked(&out, 403, 1001);
    assert_eq!(alerts(&out), vec![1001]);
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"1\"}"), Some(1));
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"2\"}"), None);
}

#[test]
fn body_rules_block_in_phase_2_for_urlencoded_json_multipart_and_xml_bodies() {
    let mut p = own_rules();
    let out = p.send(form("/search", "page=2&q=an+evilpayload+here"));
    assert_blocked(&out, 406, 1002);
    assert!(
        alert_lines(&out)[0].contains("[data \"in ARGS:q\"]"),
        "{:?}",
        alert_lines(&out)
    );

    let out = p.send(json_post(
        "/transfers",
        r#"{"amount":"1.00","meta":{"note":["ok","evilpayload"]}}"#,
    ));
    assert_blocked(&out, 406, 1002);
    assert!(
        alert_lines(&out)[0].contains("[data \"in ARGS:json.meta.note.array_1\"]"),
        "{:?}",
        alert_lines(&out)
    );

    // A normal field beside a file part.
    let out = p.send(multipart(&[
        ("comment", None, "this is evilpayload"),
        (
            "statement",
            Some("march.pdf"),
            "%PDF-1.7 binary-ish content",
        ),
    ]));
    assert_blocked(&out, 406, 1002);
    // The file part's name.
    let out = p.send(multipart(&[
        ("comment", None, "fine"),
        (
            "statement",
            Some("shell.php"),
            "<?php system($_GET['c']); ?>",
        ),
    ]));
    assert_blocked(&out, 403, 1004);
    assert!(
        alert_lines(&out)[0].contains("[data \"shell.php\"]"),
        "{:?}",
        alert_lines(&out)
    );

    let out = p.send(with_body(
        "POST",
        "/soap",
        "application/xml",
        &b"<?xml version=\"1.0\"?><transfer><note lang=\"en\">an evilpayload</note></transfer>"[..],
    ));
    assert_blocked(&out, 403, 1003);

    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"2\"}"), Some(5));
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"1\"}"), None);

    // The same kinds of bodies without the attack pass, byte for byte.
    let benign = [
        form("/search", "page=2&q=statements"),
        json_post("/transfers", r#"{"amount":"1.00","meta":{"note":["ok"]}}"#),
        multipart(&[
            ("comment", None, "fine"),
            (
                "statement",
                Some("march.pdf"),
                "%PDF-1.7 binary-ish content",
            ),
        ]),
        with_body(
            "POST",
            "/soap",
            "application/xml",
            &b"<?xml version=\"1.0\"?><transfer><note>rent</note></transfer>"[..],
        ),
    ];
    for req in benign {
        let sent = req.body_chunks.concat();
        let out = p.send(req);
        assert_passed(&out);
        assert_eq!(out.upstream.as_ref().unwrap().body, sent);
    }
}

#[test]
fn the_waf_sees_host_from_the_authority() {
    let mut p = own_rules();
    let out = p.send(Request::get("/").authority("blocked.example"));
    assert_blocked(&out, 421, 1005);
    assert!(
        alert_lines(&out)[0].contains("[hostname \"blocked.example\"]"),
        "{:?}",
        alert_lines(&out)
    );
    assert_passed(&p.send(Request::get("/").authority("allowed.example")));
}

// ----- OWASP CRS --------------------------------------------------------

#[test]
fn full_crs_blocks_sqli_and_xss_and_passes_a_json_bank_transfer_without_alerts() {
    let started = std::time::Instant::now();
    let mut p = proxy(full_crs());
    eprintln!(
        "full CRS loaded (canary, worker, main VMs) in {:?}",
        started.elapsed()
    );

    // SQL injection in the query string.
    let out = p.send(browser(Request::get(
        "/accounts?id=1%27%20OR%20%271%27%3D%271",
    )));
    assert_blocked(&out, 403, 949110);
    let rules = state(&out, WAF_RULES);
    let listed: Vec<&str> = rules.split(',').collect();
    assert!(
        listed.contains(&"942100") && listed.contains(&"949110"),
        "{rules}"
    );
    assert!(
        state(&out, WAF_SCORE).parse::<i64>().unwrap() >= 5,
        "{}",
        state(&out, WAF_SCORE)
    );
    assert_eq!(decision(&out), Some(waf_deny("949110")));

    // SQL injection in a form body.
    let out = p.send(browser(form(
        "/login",
        "user=admin%27--&password=x%27%20or%201%3D1--",
    )));
    assert_blocked(&out, 403, 949110);
    assert!(alerts(&out).iter().any(|id| (942000..943000).contains(id)));

    // Cross-site scripting inside a JSON body.
    let out = p.send(browser(json_post(
        "/transfers",
        r#"{"amount":"10.00","reference":"<script>alert(document.cookie)</script>"}"#,
    )));
    assert_blocked(&out, 403, 949110);
    let found = alerts(&out);
    assert!(
        found.iter().any(|id| (941000..942000).contains(id)),
        "{found:?}"
    );

    // A bank transfer: passes, untouched, and no rule alerts at all.
    let transfer = r#"{"from":{"iban":"DE89370400440532013000","name":"Alice Example"},"to":{"iban":"FR1420041010050500013M02606","name":"Bob Example"},"amount":"1250.75","currency":"EUR","reference":"Invoice 2026-0042, thanks!","executeOn":"2026-01-15"}"#;
    let out = p.send(browser(
        json_post("/api/v1/transfers", transfer).header("authorization", "Bearer eyJhbGciOi.x.y"),
    ));
    assert_passed(&out);
    assert_eq!(out.upstream.as_ref().unwrap().body, transfer.as_bytes());
    assert!(alert_lines(&out).is_empty(), "{:#?}", alert_lines(&out));
    assert_eq!(state(&out, WAF_RULES), "");
    assert_eq!(state(&out, WAF_SCORE), "0");
    assert_eq!(decision(&out), Some(Decision::new(Verdict::Allow)));

    // An ordinary page view, likewise.
    let out = p.send(browser(Request::get("/accounts?page=2&sort=desc")));
    assert_passed(&out);
    assert!(alert_lines(&out).is_empty(), "{:#?}", alert_lines(&out));
    eprintln!("full CRS test took {:?}", started.elapsed());
}

// ----- body buffering and limits ----------------------------------------

#[test]
fn a_body_sent_in_chunks_is_inspected_whole() {
    let mut p = own_rules();
    // "evilpayload" exists only across the chunk boundary.
    let out = p.send(
        Request::new("POST", "/search")
            .header("content-type", "application/x-www-form-urlencoded")
            .body_chunks(vec![b"page=2&q=an+evil".to_vec(), b"payload&x=1".to_vec()]),
    );
    assert_blocked(&out, 406, 1002);

    // JSON split mid-token parses (a per-chunk parse would fail: rule 200002).
    let chunks = vec![
        b"{\"amount\":\"12".to_vec(),
        b".50\",\"note\":\"re".to_vec(),
        b"nt\"}".to_vec(),
    ];
    let out = p.send(
        Request::new("POST", "/transfers")
            .header("content-type", "application/json")
            .body_chunks(chunks.clone()),
    );
    assert_passed(&out);
    assert_eq!(out.upstream.as_ref().unwrap().body, chunks.concat());
}

fn limited(action: &str) -> Proxy {
    proxy(json!({ "directives": [
        "Include @recommended",
        format!("SecRequestBodyLimit 100\nSecRequestBodyLimitAction {action}"),
        RULES,
    ]}))
}

#[test]
fn a_body_over_the_limit_is_rejected_with_413_when_the_action_is_reject() {
    let mut p = limited("Reject");
    let fill = |n: usize| format!("a={}", "x".repeat(n - 2));
    assert_passed(&p.send(form("/f", &fill(100))));

    let out = p.send(form("/f", &fill(101)).header("x-request-id", "req-413"));
    assert_eq!(out.status(), 413, "{:?}", out.response.body_text());
    assert!(out.upstream.is_none());
    assert_eq!(
        out.local_reply.as_ref().map(|l| l.details.as_str()),
        Some("meshward_waf_denied")
    );
    assert_eq!(
        reply(&out),
        json!({"error": "request blocked by the WAF", "reason": "request body too large", "request_id": "req-413"})
    );
    assert_eq!(
        decision(&out),
        Some(Decision::new(Verdict::Deny).with_reason("body_too_large"))
    );

    // The limit counts the whole body, not each chunk.
    let out = p.send(
        Request::new("POST", "/f")
            .header("content-type", "application/x-www-form-urlencoded")
            .body_chunks(vec![fill(60).into_bytes(), b"&b=".to_vec(), vec![b'y'; 60]]),
    );
    assert_eq!(out.status(), 413);
    assert!(out.upstream.is_none());
}

/// As in ModSecurity, a multipart body's fields are held to
/// `SecRequestBodyNoFilesLimit`; only file contents may use the larger
/// `SecRequestBodyLimit`. (Fuzzing found multi-megabyte text fields costing
/// CRS seconds each.)
#[test]
fn multipart_fields_are_held_to_the_no_files_limit_and_files_are_not() {
    let mut p = proxy(json!({ "directives": [
        "Include @recommended",
        "SecRequestBodyLimit 100000\nSecRequestBodyNoFilesLimit 1000",
        RULES,
    ]}));
    let text = "x".repeat(5000);
    let out = p.send(multipart(&[("memo", None, &text)]).header("x-request-id", "req-mp"));
    assert_eq!(out.status(), 413, "{:?}", out.response.body_text());
    assert!(out.upstream.is_none());
    assert_eq!(
        reply(&out),
        json!({"error": "request blocked by the WAF", "reason": "request body too large", "request_id": "req-mp"})
    );
    assert!(
        out.logs.iter().any(|l| l
            .message
            .contains("larger than the configured limit (1000)")),
        "{:?}",
        out.logs
    );
    // The same bytes as a file pass, and small fields beside it are inspected.
    assert_passed(&p.send(multipart(&[
        ("statement", Some("s.pdf"), &text),
        ("memo", None, "hi"),
    ])));
    assert_blocked(
        &p.send(multipart(&[
            ("statement", Some("s.pdf"), &text),
            ("q", None, "evilpayload"),
        ])),
        406,
        1002,
    );
}

#[test]
fn process_partial_inspects_up_to_the_limit_and_passes_the_whole_body() {
    let mut p = limited("ProcessPartial");
    // The attack starts at byte 200: past the limit, not inspected.
    let late = format!("a={}&q=evilpayload", "x".repeat(196));
    let out = p.send(form("/f", &late));
    assert_passed(&out);
    assert_eq!(out.upstream.as_ref().unwrap().body, late.as_bytes());
    assert!(alert_lines(&out).is_empty(), "{:?}", alert_lines(&out));

    // Within the first 100 bytes it is found, however long the body.
    let early = format!("q=evilpayload&a={}", "x".repeat(300));
    assert_blocked(&p.send(form("/f", &early)), 406, 1002);
    let out = p.send(
        Request::new("POST", "/f")
            .header("content-type", "application/x-www-form-urlencoded")
            .body_chunks(vec![
                b"q=evilpayload&a=".to_vec(),
                vec![b'x'; 80],
                vec![b'y'; 80],
            ]),
    );
    assert_blocked(&out, 406, 1002);
    // A long body in chunks passes whole.
    let chunks = vec![vec![b'x'; 70], vec![b'y'; 70], vec![b'z'; 70]];
    let out = p.send(
        Request::new("POST", "/f")
            .header("content-type", "application/octet-stream")
            .body_chunks(chunks.clone()),
    );
    assert_passed(&out);
    assert_eq!(out.upstream.as_ref().unwrap().body, chunks.concat());
}

// ----- response phases --------------------------------------------------

const RESPONSE_RULES: &str = r#"
SecRule RESPONSE_STATUS "@streq 500" "id:3001,phase:3,deny,log,msg:'upstream error hidden'"
SecRule RESPONSE_HEADERS:X-Powered-By "@rx ^PHP/" "id:3002,phase:3,deny,status:502,log,msg:'stack disclosure'"
SecRule RESPONSE_BODY "@contains 078-05-1120" "id:4001,phase:4,deny,log,msg:'SSN leak'"
"#;

fn response_rules() -> Proxy {
    proxy(json!({ "directives": ["Include @recommended", RESPONSE_RULES] }))
}

#[test]
fn phase_3_rules_on_response_status_and_headers_replace_the_response() {
    let mut p = response_rules();
    p.set_upstream(|req| match req.path.as_str() {
        "/error" => Response::new(500)
            .header("content-type", "text/plain")
            .body("panic at db.rs:42: password=hunter2"),
        "/php" => Response::new(200)
            .header("content-type", "application/json")
            .header("x-powered-by", "PHP/5.4.1")
            .body("{\"ok\":true}"),
        _ => Response::new(200)
            .header("content-type", "application/json")
            .header("x-powered-by", "meshward")
            .body("{\"ok\":true}"),
    });
    let out = p.send(Request::get("/error").header("x-request-id", "req-500"));
    assert_eq!(out.status(), 403);
    assert!(out.upstream.is_some(), "the request reached the upstream");
    assert_eq!(
        out.local_reply
            .as_ref()
            .map(|l| (l.plugin.as_str(), l.details.as_str())),
        Some(("waf", "meshward_waf_denied"))
    );
    assert_eq!(
        reply(&out),
        json!({"error": "request blocked by the WAF", "reason": "rule 3001", "request_id": "req-500"})
    );
    assert!(!out.response.body_text().contains("hunter2"));

    let out = p.send(Request::get("/php"));
    assert_eq!(out.status(), 502);
    assert_eq!(reply(&out)["reason"], json!("rule 3002"));
    assert_eq!(
        out.response.get("x-powered-by"),
        None,
        "upstream headers dropped"
    );

    let out = p.send(Request::get("/fine"));
    assert_passed(&out);
    assert_eq!(out.response.body, b"{\"ok\":true}");
    assert_eq!(out.response.get("x-powered-by"), Some("meshward"));
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"3\"}"), Some(2));
}

#[test]
fn a_phase_4_response_body_rule_keeps_the_leaked_body_from_the_client() {
    let mut p = response_rules();
    let page = "<html><body>Customer SSN: 078-05-1120</body></html>";
    p.set_upstream(move |req| match req.path.as_str() {
        "/leak" => Response::new(200)
            .header("content-type", "text/html; charset=utf-8")
            .body(page),
        "/leak.json" => Response::new(200)
            .header("content-type", "application/json")
            .body("{\"ssn\":\"078-05-1120\"}"),
        _ => Response::new(200)
            .header("content-type", "text/html")
            .body("<html><body>Balance: 12.00</body></html>"),
    });
    // The WAF lets the response headers go on (a Pause there would stop the
    // body callbacks) and holds the body. In Envoy those headers have reached
    // the client when phase 4 blocks, so the local reply resets the stream;
    // replaced or reset, the client must never get the body.
    let out = p.send(Request::get("/leak"));
    assert!(
        !out.response.body_text().contains("078-05-1120"),
        "the leaked body reached the client: status {}, reset {}, {:?}, body {:?}",
        out.status(),
        out.reset,
        out.local_reply,
        out.response.body_text()
    );
    assert!(
        out.reset || out.local_reply.as_ref().is_some_and(|l| l.plugin == "waf"),
        "the response was neither reset nor replaced"
    );
    assert_ne!(out.status(), 200);
    assert_eq!(alerts(&out), vec![4001]);
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"4\"}"), Some(1));

    // A text/html body without the pattern passes unchanged.
    let out = p.send(Request::get("/page"));
    assert_passed(&out);
    assert_eq!(
        out.response.body_text(),
        "<html><body>Balance: 12.00</body></html>"
    );

    // application/json is not in SecResponseBodyMimeType: not buffered, not inspected.
    let out = p.send(Request::get("/leak.json"));
    assert_passed(&out);
    assert_eq!(out.response.body_text(), "{\"ssn\":\"078-05-1120\"}");
    assert!(alert_lines(&out).is_empty(), "{:?}", alert_lines(&out));
}

// ----- DetectionOnly, filter state, metrics -----------------------------

#[test]
fn detection_only_passes_the_request_and_logs_what_it_would_have_blocked() {
    let mut p = proxy(json!({ "directives": [
        "Include @recommended",
        "SecRuleEngine DetectionOnly",
        RULES,
    ]}));
    let out = p.send(form("/search", "q=evilpayload"));
    assert_passed(&out);
    assert_eq!(out.upstream.as_ref().unwrap().body, b"q=evilpayload");
    let lines = alert_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("[id \"1002\"]"), "{}", lines[0]);
    assert_eq!(
        decision(&out),
        Some(
            Decision::new(Verdict::DryRunDeny)
                .with_rule("1002")
                .with_reason("waf_rule")
        )
    );
    assert_eq!(
        p.metric("meshward_waf_detected_total{phase=\"2\"}"),
        Some(1)
    );
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"2\"}"), None);

    // A phase-1 rule too: counted under its phase.
    let out = p.send(Request::get("/").header("x-attack", "yes"));
    assert_passed(&out);
    assert_eq!(
        p.metric("meshward_waf_detected_total{phase=\"1\"}"),
        Some(1)
    );
    let out = p.send(Request::get("/"));
    assert_eq!(decision(&out), Some(Decision::new(Verdict::Allow)));
    assert_eq!(
        p.metric("meshward_waf_detected_total{phase=\"2\"}"),
        Some(1)
    );
}

#[test]
fn filter_state_carries_score_alerting_rules_and_decision_for_later_filters() {
    let mut p = own_rules();
    // 1006 (nolog) and 200001 (nolog, selects the JSON processor) match but
    // do not alert; 1007 alerts and adds 3 to the score.
    let out = p.send(json_post("/transfers?watch=me", r#"{"amount":"1.00"}"#));
    assert_passed(&out);
    assert_eq!(state(&out, WAF_RULES), "1007");
    assert_eq!(state(&out, WAF_SCORE), "3");
    assert_eq!(decision(&out), Some(Decision::new(Verdict::Allow)));

    let out = p.send(form("/search?watch=me", "q=evilpayload"));
    assert_eq!(state(&out, WAF_RULES), "1007,1002");
    assert_eq!(decision(&out), Some(waf_deny("1002")));

    let out = p.send(Request::get("/"));
    assert_eq!(state(&out, WAF_RULES), "");
    assert_eq!(state(&out, WAF_SCORE), "0");
    assert_eq!(decision(&out), Some(Decision::new(Verdict::Allow)));
}

#[test]
fn metrics_count_requests_blocks_per_phase_and_matches_per_rule() {
    let mut p = own_rules();
    p.send(Request::get("/"));
    p.send(Request::get("/").header("x-attack", "yes"));
    p.send(form("/s", "q=evilpayload"));
    p.send(form("/s?watch=me", "q=evilpayload"));
    p.send(Request::get("/?watch=me"));
    assert_eq!(p.metric("meshward_waf_requests_total"), Some(5));
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"1\"}"), Some(1));
    assert_eq!(p.metric("meshward_waf_blocked_total{phase=\"2\"}"), Some(2));
    assert_eq!(
        p.metric("meshward_waf_rule_matches_total{rule=\"1001\"}"),
        Some(1)
    );
    assert_eq!(
        p.metric("meshward_waf_rule_matches_total{rule=\"1002\"}"),
        Some(2)
    );
    assert_eq!(
        p.metric("meshward_waf_rule_matches_total{rule=\"1007\"}"),
        Some(2)
    );
    // nolog rules match on every request but are not counted.
    assert_eq!(
        p.metric("meshward_waf_rule_matches_total{rule=\"1006\"}"),
        None
    );
}

// ----- log lines --------------------------------------------------------

#[test]
fn each_alerting_rule_is_one_warn_line_in_modsecurity_format() {
    let mut p = proxy(json!({ "directives": [
        "SecRuleEngine On",
        "SecRule ARGS:q \"@rx ^a\" \"id:1010,phase:1,pass,log,msg:'argument %{MATCHED_VAR_NAME}',logdata:'value %{MATCHED_VAR}',severity:WARNING,tag:demo\"\nSecRule ARGS:q \"@contains z\" \"id:1011,phase:1,pass,log,msg:'second'\"",
    ]}));
    let out = p.send(Request::get("/search?q=abcz").header("x-request-id", "req-log"));
    assert_passed(&out);
    let lines = alert_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = lines[0];
    let want_start =
        "meshward-waf: ModSecurity: Warning. Matched \"Operator `Rx' with parameter `^a' against variable `ARGS:q' (Value: `abcz' )\" [file \"directives[1]\"] [line \"1\"] [id \"1010\"]";
    assert!(first.starts_with(want_start), "{first}");
    for field in [
        "[msg \"argument ARGS:q\"]",
        "[data \"value abcz\"]",
        "[severity \"4\"]",
        "[tag \"demo\"]",
        "[hostname \"service.local\"]",
        "[uri \"/search?q=abcz\"]",
        "[unique_id \"req-log\"]",
    ] {
        assert!(first.contains(field), "{field} missing: {first}");
    }
    assert_eq!(ids_in(first), vec![1010]);
    assert_eq!(ids_in(lines[1]), vec![1011]);
    assert!(lines[1].contains("[line \"2\"]"), "{}", lines[1]);
}

#[test]
fn a_client_value_cannot_forge_a_rule_id_or_a_log_line() {
    let mut p = proxy(json!({ "directives": [
        "SecRuleEngine On",
        "SecRule ARGS|REQUEST_HEADERS:User-Agent \"@rx .\" \"id:1010,phase:1,pass,log,msg:'seen %{MATCHED_VAR}',logdata:'value %{MATCHED_VAR}'\"",
    ]}));
    // q = `"] [id "999"] [msg "x` NL `ModSecurity: Warning. [id "998"]`
    let out = p.send(
        Request::get(
            "/s?q=%22%5D%20%5Bid%20%22999%22%5D%20%5Bmsg%20%22x%0AModSecurity%3A%20Warning.%20%5Bid%20%22998%22%5D%0D",
        )
        .header("user-agent", "curl\"] [id \"997\"] [data \"x"),
    );
    assert_passed(&out);
    let lines = alert_lines(&out);
    assert_eq!(lines.len(), 1, "one rule, one line: {lines:?}");
    let line = lines[0];
    assert_eq!(ids_in(line), vec![1010], "{line}");
    assert!(
        !line.contains('\n') && !line.contains('\r'),
        "a raw line break: {line:?}"
    );
    for forged in ["999", "998", "997"] {
        assert!(line.contains(forged), "the value is still shown: {line}");
    }
    assert_eq!(
        out.logs
            .iter()
            .filter(|l| l.message.contains("[id \"99"))
            .count(),
        0
    );
}

// ----- configuration ----------------------------------------------------

#[test]
fn a_bad_configuration_is_rejected_with_one_line_naming_file_line_and_construct() {
    // (what is wrong, pluginConfig, how the line starts, the construct it names)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "unknown directive",
            json!({"directives": "SecRuleEngine On\nSecFooBar On"}),
            "meshward-waf: invalid config: directives: directives[0]:2: ",
            "`SecFooBar`",
        ),
        (
            "unknown action",
            json!({"directives": ["SecRuleEngine On", "SecRule ARGS \"@rx a\" \"id:1,phase:1,deny\"\n\nSecRule ARGS \"@rx b\" \"id:2,exec:/bin/sh\""]}),
            "meshward-waf: invalid config: directives: directives[1]:3: ",
            "`exec`",
        ),
        (
            "bad regex",
            json!({"directives": "SecRule ARGS \"@rx (?<=a)b\" \"id:1,phase:1,deny\""}),
            "meshward-waf: invalid config: directives: directives[0]:1: ",
            "@rx",
        ),
        (
            "unknown include",
            json!({"directives": ["Include @recommended", "Include @no-such-file"]}),
            "meshward-waf: invalid config: directives: directives[1]:1: ",
            "`@no-such-file`",
        ),
        (
            "duplicate id",
            json!({"directives": "SecAction \"id:7,phase:1,pass\"\nSecAction \"id:7,phase:2,pass\""}),
            "meshward-waf: invalid config: directives: directives[0]:2: ",
            "rule id 7",
        ),
        (
            "an error inside an included file",
            json!({"directives": "Include site.conf", "files": {"site.conf": "SecRuleEngine On\n\n\nSecRule ARGS \"@nope x\" \"id:9,phase:1\""}}),
            "meshward-waf: invalid config: directives: site.conf:4: ",
            "@nope",
        ),
        (
            "an error in a directive set",
            json!({"directiveSets": {"strict": "SecRule ARGS \"@rx a\" \"id:1,phase:1,exec:x\""}, "defaultSet": "strict"}),
            "meshward-waf: invalid config: directiveSets.strict: directiveSets.strict[0]:1: ",
            "`exec`",
        ),
        (
            "unknown JSON field",
            json!({"directive": "SecRuleEngine On"}),
            "meshward-waf: invalid config: directive: ",
            "unknown field `directive`",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, config, prefix, construct) in cases {
        let err = match Proxy::builder().plugin(waf(config)).build() {
            Ok(_) => {
                wrong.push(format!("{name}: the configuration loaded"));
                continue;
            }
            Err(e) => e,
        };
        assert_eq!(err.plugin, "waf");
        let line = err.logs.first().cloned().unwrap_or_default();
        if err.logs.len() != 1 || line.contains('\n') {
            wrong.push(format!("{name}: not exactly one line: {:?}", err.logs));
        }
        if !line.starts_with(prefix) || !line.contains(construct) {
            wrong.push(format!(
                "{name}: {line:?} does not start with {prefix:?} and name {construct:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn an_empty_plugin_config_runs_the_recommended_engine_and_baseline_rules() {
    let mut p = Proxy::builder()
        .plugin(PluginSpec::new("waf", meshward_tests::wasm("waf")).phase(Phase::Authn))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = p.send(Request::get("/accounts?id=1%27%20OR%20%271%27%3D%271"));
    assert_blocked(&out, 403, 10001);
    // Envoy normalizes the path to /etc/passwd: a restricted file.
    assert_blocked(
        &p.send(Request::get("/static/../../etc/passwd")),
        403,
        10006,
    );
    let out = p.send(json_post(
        "/transfers",
        r#"{"to":"DE89370400440532013000","amount":"10.00"}"#,
    ));
    assert_passed(&out);
    assert_passed(&p.send(Request::get("/accounts?id=12345&sort=desc")));
}

#[test]
fn per_authority_sets_are_chosen_by_exact_and_wildcard_authority_ignoring_the_port() {
    let mut p = proxy(json!({
        "directiveSets": {
            "strict": "SecRule ARGS:q \"@streq evil\" \"id:100,phase:1,deny,log\"",
            "relaxed": "SecRule ARGS:q \"@streq evil\" \"id:200,phase:1,deny,status:451,log\"",
            "legacy": "SecRuleEngine DetectionOnly\nSecRule ARGS:q \"@streq evil\" \"id:300,phase:1,deny,log\""
        },
        "defaultSet": "strict",
        "perAuthority": {
            "api.bank-a.example": "relaxed",
            "*.internal.example": "legacy"
        }
    }));
    let mut send = |authority: &str| p.send(Request::get("/?q=evil").authority(authority));
    assert_blocked(&send("api.bank-a.example"), 451, 200);
    assert_blocked(&send("api.bank-a.example:8443"), 451, 200);
    assert_blocked(&send("API.Bank-A.example"), 451, 200);
    let out = send("ledger.internal.example:443");
    assert_passed(&out);
    assert_eq!(alerts(&out), vec![300]);
    assert_passed(&send("a.b.internal.example"));
    // The wildcard matches subdomains only; other hosts get the default set.
    assert_blocked(&send("internal.example"), 403, 100);
    assert_blocked(&send("other.example"), 403, 100);
    assert_blocked(&send("api.bank-a.example.evil"), 403, 100);
}

// ----- odd input --------------------------------------------------------

#[test]
fn odd_input_never_traps_the_vm_and_the_next_request_is_served() {
    let mut p =
        proxy(json!({ "directives": ["Include @recommended", "Include @meshward-baseline"] }));
    // 120 000 bytes: under @recommended's 128 KiB limit for bodies without files.
    let deep_json = format!("{}{}", "[".repeat(60_000), "]".repeat(60_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let many_args: String = (0..1000)
        .map(|i| format!("a{i}={i}"))
        .collect::<Vec<_>>()
        .join("&");
    // (what, request, the (status, rule) it must be answered with, where one is certain)
    type Case = (&'static str, Request, Option<(u16, u64)>);
    let cases: Vec<Case> = vec![
        (
            "a 256 KiB header",
            Request::get("/").header("x-big", &"v".repeat(256 * 1024)),
            None,
        ),
        (
            "3000 headers",
            (0..3000).fold(Request::get("/"), |r, i| {
                r.header(&format!("x-h{i}"), &i.to_string())
            }),
            None,
        ),
        (
            "a 64 KiB path",
            Request::get(&format!("/{}", "p/".repeat(32 * 1024))),
            None,
        ),
        (
            "1000 query arguments",
            Request::get(&format!("/?{many_args}")),
            Some((400, 200007)),
        ),
        (
            "1000 form arguments",
            form("/f", &many_args),
            Some((400, 200007)),
        ),
        (
            "a cookie with 5000 pairs",
            Request::get("/").header(
                "cookie",
                &(0..5000)
                    .map(|i| format!("c{i}=v"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None,
        ),
        (
            "JSON nested 60 000 deep",
            json_post("/j", &deep_json),
            Some((400, 200002)),
        ),
        (
            "JSON objects nested 20 000 deep",
            json_post("/j", &deep_object),
            Some((400, 200002)),
        ),
        (
            "JSON that ends early",
            json_post("/j", "{\"a\": [1, 2, {\"b\": "),
            Some((400, 200002)),
        ),
        (
            "JSON with invalid UTF-8",
            with_body(
                "POST",
                "/j",
                "application/json",
                &b"{\"a\":\"\xff\xfe\xc3\"}"[..],
            ),
            None,
        ),
        (
            "a form body with invalid UTF-8 and bad escapes",
            with_body(
                "POST",
                "/f",
                "application/x-www-form-urlencoded",
                &b"a=\xff\xfe%zz%&b=%c3%28&\xc0\xaf=1"[..],
            ),
            None,
        ),
        (
            "multipart without its boundary",
            with_body(
                "POST",
                "/u",
                &format!("multipart/form-data; boundary={BOUNDARY}"),
                &b"this is not multipart at all"[..],
            ),
            None,
        ),
        (
            "multipart with an empty boundary",
            with_body(
                "POST",
                "/u",
                "multipart/form-data; boundary=",
                &b"--\r\n\r\n--"[..],
            ),
            None,
        ),
        (
            "multipart cut off in a part header",
            with_body(
                "POST",
                "/u",
                &format!("multipart/form-data; boundary={BOUNDARY}"),
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; na").into_bytes(),
            ),
            None,
        ),
        (
            "XML nested 50 000 deep",
            with_body(
                "POST",
                "/x",
                "application/xml",
                format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000)).into_bytes(),
            ),
            None,
        ),
        (
            "XML with invalid UTF-8 and an unclosed tag",
            with_body(
                "POST",
                "/x",
                "text/xml",
                &b"<?xml version=\"1.0\"?><a>\xff\xfe<b"[..],
            ),
            Some((400, 200002)),
        ),
        (
            "a binary body",
            with_body(
                "POST",
                "/b",
                "application/octet-stream",
                (0..=255u8).cycle().take(70_000).collect::<Vec<u8>>(),
            ),
            None,
        ),
    ];
    for (name, req, expected) in cases {
        let started = std::time::Instant::now();
        let out = p.send(req);
        let took = started.elapsed();
        assert_ne!(
            out.local_reply.as_ref().map(|l| l.details.as_str()),
            Some("wasm_fail_stream"),
            "{name}: the VM trapped"
        );
        assert!(!out.reset, "{name}: reset");
        assert!(
            [200, 400, 403, 413].contains(&out.status()),
            "{name}: status {} {:?}",
            out.status(),
            alerts(&out)
        );
        if let Some((status, rule)) = expected {
            assert_blocked(&out, status, rule);
        }
        eprintln!("{name}: {} {:?} in {took:?}", out.status(), alerts(&out));
        let next = p.send(Request::get("/accounts/1"));
        assert_passed(&next);
    }
    assert!(
        !p.logs().iter().any(|l| l.message.contains("panicked")),
        "a panic was logged"
    );
}
