//! The Envoy behaviours the harness reproduces (ARCHITECTURE §4), each shown
//! with a real Wasm module (the ABI probe, `tests/abi-probe`) driven by a script.

mod harness_probe;

use harness_probe::*;
use meshward_harness::certs::TestCa;
use meshward_harness::{
    CallReply, FailStrategy, GrpcReply, LogLevel, LogLine, Phase, Proxy, Request,
    DEFAULT_START_NANOS,
};
use std::time::Duration;

const MS: u64 = 1_000_000;

fn build(builder: meshward_harness::ProxyBuilder) -> Proxy {
    builder.build().unwrap_or_else(|e| panic!("{e}"))
}

fn traces<'a>(logs: &'a [LogLine], prefix: &str) -> Vec<&'a LogLine> {
    logs.iter()
        .filter(|l| l.message.starts_with(prefix))
        .collect()
}

// ----- start-up ----------------------------------------------------------------

#[test]
fn start_up_creates_the_root_context_then_starts_and_configures_a_canary_vm_then_each_worker_then_the_main_thread(
) {
    let (vm_config, config) = (
        "vm_start: echo vm-started",
        "configure: define_metric COUNTER starts; increment_metric starts 1",
    );
    let proxy = build(
        builder()
            .workers(2)
            .plugin(probe("probe", config).vm_config(vm_config)),
    );
    let logs = proxy.logs();
    let order: Vec<(usize, String)> = logs
        .iter()
        .filter(|l| l.message.starts_with("probe on_") || l.message.starts_with("probe echo"))
        .map(|l| (l.worker, l.message.clone()))
        .collect();
    let one_vm = |w: usize| {
        vec![
            (w, "probe on_context_create context=1 parent=0".to_string()),
            (
                w,
                format!("probe on_vm_start context=1 size={}", vm_config.len()),
            ),
            (w, "probe echo vm-started".to_string()),
            (
                w,
                format!("probe on_configure context=1 size={}", config.len()),
            ),
        ]
    };
    // As Envoy 1.40: the canary (index 3 == workers + 1), workers 0 and 1, then
    // the main thread's VM (index 2 == workers).
    let want: Vec<(usize, String)> = [3, 0, 1, 2].into_iter().flat_map(one_vm).collect();
    assert_eq!(order, want);
    // Side effects of start-up happen twice more than there are workers.
    assert_eq!(proxy.metric("starts"), Some(4));
}

#[test]
fn on_vm_start_returning_false_rejects_the_plugin_with_its_log_lines() {
    let err = builder()
        .plugin(probe("probe", "").vm_config("vm_start: log WARN refusing-this-vm; return false"))
        .build()
        .err()
        .expect("the plugin must be rejected");
    assert_eq!(err.plugin, "probe");
    assert!(
        err.reason.contains("proxy_on_vm_start returned false"),
        "{}",
        err.reason
    );
    assert!(
        err.logs.iter().any(|l| l == "refusing-this-vm"),
        "{:?}",
        err.logs
    );
    assert!(err.to_string().contains("refusing-this-vm"));
}

#[test]
fn on_configure_returning_false_rejects_the_plugin_with_its_log_lines() {
    let err = builder()
        .plugin(probe(
            "probe",
            "configure: log ERROR \"bad config: x\"; return false",
        ))
        .build()
        .err()
        .expect("the plugin must be rejected");
    assert!(
        err.reason.contains("proxy_on_configure returned false"),
        "{}",
        err.reason
    );
    assert!(
        err.logs.iter().any(|l| l == "bad config: x"),
        "{:?}",
        err.logs
    );
    assert!(err.to_string().contains("bad config: x"));
}

// ----- memory and contexts ----------------------------------------------------------

#[test]
fn an_empty_value_is_returned_as_pointer_0_size_0_without_allocating() {
    let mut proxy = proxy(
        "request_headers: show_alloc; get_header HTTP_REQUEST_HEADERS x-empty; get_header HTTP_REQUEST_HEADERS :path",
    );
    let out = proxy.send(Request::get("/").header("x-empty", ""));
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, "x-empty")"#
        ),
        r#"OK "" [ptr=0 size=0 allocations=0]"#
    );
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, ":path")"#
        ),
        r#"OK "/" [ptr=set size=1 allocations=1]"#
    );
}

#[test]
fn context_ids_are_per_vm_from_1_and_root_and_streams_share_the_counter() {
    let mut proxy = build(builder().workers(2).plugin(probe("probe", "")));
    proxy.send(Request::get("/").worker(0));
    proxy.send(Request::get("/").worker(0));
    proxy.send(Request::get("/").worker(1));
    let created: Vec<(usize, String)> = traces(&proxy.logs(), "probe on_context_create")
        .into_iter()
        .filter(|l| l.worker < 2)
        .map(|l| (l.worker, l.message.clone()))
        .collect();
    let c = |w: usize, id: u32, parent: u32| {
        (
            w,
            format!("probe on_context_create context={id} parent={parent}"),
        )
    };
    assert_eq!(
        created,
        [c(0, 1, 0), c(1, 1, 0), c(0, 2, 1), c(0, 3, 1), c(1, 2, 1)]
    );
}

// ----- shared data and queues across workers ----------------------------------------

#[test]
fn shared_data_is_shared_by_all_workers_with_envoys_cas_rules() {
    let mut proxy = build(builder().workers(2).plugin(probe(
        "probe",
        "request_headers: when_header x-write; set_shared k from-w0 0; get_shared k\n\
         request_headers: when_header x-read; get_shared k; set_shared k stale 1; set_shared k from-w1 last; \
         set_shared k \"\" 0; get_shared k",
    )));
    let w0 = proxy.send(Request::get("/").header("x-write", "1").worker(0));
    assert_eq!(
        answer(&w0.logs, r#"proxy_set_shared_data("k", "from-w0", 0)"#),
        "OK"
    );
    assert_eq!(
        answer(&w0.logs, r#"proxy_get_shared_data("k")"#),
        r#"OK "from-w0" cas=1"#
    );
    // Worker 0 writes once more (cas 0: unconditional), so cas 1 is stale now.
    proxy.send(Request::get("/").header("x-write", "1").worker(0));
    let w1 = proxy.send(Request::get("/").header("x-read", "1").worker(1));
    assert!(w1
        .logs
        .iter()
        .all(|l| l.worker == 1 || !l.message.starts_with("probe proxy")));
    assert_eq!(
        answers(&w1.logs, r#"proxy_get_shared_data("k")"#),
        [r#"OK "from-w0" cas=2"#, r#"OK "" cas=4"#]
    );
    assert_eq!(
        answer(&w1.logs, r#"proxy_set_shared_data("k", "stale", 1)"#),
        "CAS_MISMATCH"
    );
    assert_eq!(
        answer(&w1.logs, r#"proxy_set_shared_data("k", "from-w1", 2)"#),
        "OK"
    );
    // There is no delete: an empty value is still a value.
    assert_eq!(
        answer(&w1.logs, r#"proxy_set_shared_data("k", "", 0)"#),
        "OK"
    );
    assert_eq!(proxy.shared_data("k"), Some((Vec::new(), 4)));
}

#[test]
fn a_shared_queue_carries_items_between_workers_and_wakes_its_owner_with_on_queue_ready() {
    let mut proxy = build(builder().workers(2).plugin(probe(
        "probe",
        "configure: register_queue jobs\n\
         request_headers: resolve_queue \"\" jobs; enqueue last job-1\n\
         queue_ready: dequeue last; dequeue last",
    )));
    let out = proxy.send(Request::get("/").worker(0));
    assert_eq!(
        answer(&out.logs, r#"proxy_resolve_shared_queue("", "jobs")"#),
        "OK 1"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_enqueue_shared_queue(1, "job-1")"#),
        "OK"
    );
    // The last VM to register the queue owns it and is woken: the last one
    // configured (the main thread's VM, which serves no stream).
    let owner = proxy
        .logs()
        .iter()
        .rev()
        .find(|l| l.message.starts_with("probe on_configure"))
        .map(|l| l.worker)
        .expect("configured");
    assert_ne!(owner, 0, "not the sending worker");
    let ready = traces(&out.logs, "probe on_queue_ready");
    assert_eq!(ready.len(), 1);
    assert_eq!(
        (ready[0].worker, ready[0].message.as_str()),
        (owner, "probe on_queue_ready context=1 queue=1")
    );
    let dequeued: Vec<(usize, &str)> = out
        .logs
        .iter()
        .filter(|l| l.message.starts_with("probe proxy_dequeue_shared_queue(1)"))
        .map(|l| (l.worker, l.message.as_str()))
        .collect();
    assert_eq!(
        dequeued,
        [
            (owner, r#"probe proxy_dequeue_shared_queue(1) = OK "job-1""#),
            (owner, "probe proxy_dequeue_shared_queue(1) = EMPTY")
        ]
    );
}

// ----- wire formats --------------------------------------------------------------

/// The ABI's header map: u32 count, count × (u32 key_len, u32 value_len), then
/// each key and value followed by a NUL, little-endian (written out by hand).
fn wire_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

#[test]
fn header_maps_cross_the_abi_as_count_lengths_then_nul_terminated_keys_and_values() {
    let wire = wire_map(&[
        (":authority", "h"),
        (":path", "/w"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-a", "1"),
    ]);
    let script = format!(
        "request_headers: get_pairs_raw HTTP_RESPONSE_HEADERS; set_pairs_raw HTTP_REQUEST_HEADERS {}; get_pairs_raw HTTP_REQUEST_HEADERS",
        esc(&wire)
    );
    let mut proxy = proxy(&script);
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(
            &out.logs,
            &format!(
                "proxy_set_header_map_pairs(HTTP_REQUEST_HEADERS, {})",
                esc(&wire)
            )
        ),
        "OK"
    );
    assert_eq!(
        answer(
            &out.logs,
            "proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS)"
        ),
        format!("OK {}", esc(&wire))
    );
    // An unavailable map is the empty value.
    assert_eq!(
        answer(
            &out.logs,
            "proxy_get_header_map_pairs(HTTP_RESPONSE_HEADERS)"
        ),
        r#"OK """#
    );
    let upstream = out.upstream.expect("upstream");
    assert_eq!(upstream.path, "/w");
    assert_eq!(upstream.header("x-a"), Some("1"));
}

#[test]
fn properties_encode_integers_as_8_byte_le_booleans_as_1_byte_and_paths_as_nul_joined_segments() {
    let mut proxy = proxy(
        "request_headers: get_property connection id; get_property connection mtls; get_property request time; \
         get_property destination port; get_property request.path; get_property request path",
    );
    let out = proxy.send(
        Request::get("/p")
            .connection_id(7)
            .destination("10.0.0.9:8443"),
    );
    let logs = &out.logs;
    assert_eq!(
        answer(logs, r#"proxy_get_property("connection\x00id")"#),
        int(7)
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("connection\x00mtls")"#),
        r#"OK "\x00""#
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("request\x00time")"#),
        int(DEFAULT_START_NANOS)
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("destination\x00port")"#),
        int(8443)
    );
    // One segment "request.path" is not the path ["request", "path"].
    assert_eq!(
        answer(logs, r#"proxy_get_property("request.path")"#),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("request\x00path")"#),
        r#"OK "/p""#
    );
}

// ----- pausing and buffering -----------------------------------------------------------

#[test]
fn pause_in_request_headers_holds_the_body_until_continue_stream_then_delivers_it_whole() {
    let mut proxy = proxy(
        "request_headers: http_call upstream-svc 1000; pause\n\
         http_call_response: set_effective_context caller; continue HTTP_REQUEST\n\
         request_body: get_buffer HTTP_REQUEST_BODY 0 100",
    );
    proxy.on_http_call(CLUSTER, |_| CallReply::response(200, vec![], ""));
    let out = proxy.send(Request::new("POST", "/").body_chunks(vec![
        b"a".to_vec(),
        b"b".to_vec(),
        b"c".to_vec(),
    ]));
    let resumed = position(&out.logs, "probe proxy_continue_stream(HTTP_REQUEST) = OK");
    let bodies = traces(&out.logs, "probe on_request_body");
    assert_eq!(
        bodies.len(),
        1,
        "one body callback with everything buffered"
    );
    assert_eq!(
        bodies[0].message,
        "probe on_request_body context=2 size=3 end=1"
    );
    assert!(
        position(&out.logs, "probe on_request_body") > resumed,
        "no body callback while paused"
    );
    assert_eq!(
        answer(
            &out.logs,
            "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, 100)"
        ),
        r#"OK "abc""#
    );
    assert_eq!(out.upstream.expect("upstream").body, b"abc");
}

#[test]
fn pause_in_a_body_callback_buffers_and_the_next_call_sees_the_whole_body_and_its_size() {
    let mut proxy = proxy("request_body: get_buffer HTTP_REQUEST_BODY 0 100; unless_end; pause");
    let out = proxy.send(Request::new("POST", "/").body_chunks(vec![
        b"ab".to_vec(),
        b"cd".to_vec(),
        b"ef".to_vec(),
    ]));
    let bodies: Vec<&str> = traces(&out.logs, "probe on_request_body")
        .iter()
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        bodies,
        [
            "probe on_request_body context=2 size=2 end=0",
            "probe on_request_body context=2 size=4 end=0",
            "probe on_request_body context=2 size=6 end=1"
        ]
    );
    assert_eq!(
        answers(
            &out.logs,
            "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, 100)"
        ),
        [r#"OK "ab""#, r#"OK "abcd""#, r#"OK "abcdef""#]
    );
    assert_eq!(out.upstream.expect("upstream").body, b"abcdef");
}

#[test]
fn after_continue_a_map_is_gone_single_reads_and_writes_are_bad_argument_pairs_empty_until_on_log()
{
    let mut proxy = proxy(
        "request_body: get_header HTTP_REQUEST_HEADERS :path; add_header HTTP_REQUEST_HEADERS x a; \
         get_pairs HTTP_REQUEST_HEADERS\n\
         log: get_header HTTP_REQUEST_HEADERS :path; get_header HTTP_RESPONSE_HEADERS :status",
    );
    let out = proxy.send(Request::post("/p", "body"));
    let logs = &out.logs;
    assert_eq!(
        answers(
            logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, ":path")"#
        ),
        ["BAD_ARGUMENT", r#"OK "/p""#],
        "gone in the body callback, readable again in on_log"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_add_header_map_value(HTTP_REQUEST_HEADERS, "x", "a")"#
        ),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(logs, "proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS)"),
        "OK []"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_get_header_map_value(HTTP_RESPONSE_HEADERS, ":status")"#
        ),
        r#"OK "200""#
    );
    assert_eq!(out.upstream.expect("upstream").header("x"), None);
}

#[test]
fn set_buffer_bytes_supports_prepend_append_and_replace_all_only() {
    let mut proxy = proxy(
        "request_body: set_buffer HTTP_REQUEST_BODY 0 0 <; set_buffer HTTP_REQUEST_BODY 1000 0 >; \
         get_buffer HTTP_REQUEST_BODY 0 100; set_buffer HTTP_REQUEST_BODY 2 1 x; \
         set_buffer HTTP_REQUEST_BODY 0 3 x; set_buffer HTTP_REQUEST_BODY 0 8 whole",
    );
    let out = proxy.send(Request::post("/", "middle"));
    let logs = &out.logs;
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, 0, "<")"#
        ),
        "OK",
        "prepend"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 1000, 0, ">")"#
        ),
        "OK",
        "append"
    );
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, 100)"),
        r#"OK "<middle>""#
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 2, 1, "x")"#
        ),
        "BAD_ARGUMENT",
        "inject"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, 3, "x")"#
        ),
        "BAD_ARGUMENT",
        "partial replace"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, 8, "whole")"#
        ),
        "OK",
        "replace all"
    );
    assert_eq!(out.upstream.expect("upstream").body, b"whole");
}

// ----- local replies and stream end ----------------------------------------------------

#[test]
fn a_local_reply_is_deferred_forces_stop_and_every_filter_sees_its_response() {
    let mut proxy = build(
        builder()
            .plugin(
                probe("first", "request_headers: local_reply 401 \"no auth\" first_denied; echo after-local-reply\nresponse_headers: get_header HTTP_RESPONSE_HEADERS :status")
                    .phase(Phase::Authn),
            )
            .plugin(
                probe("second", "response_headers: get_header HTTP_RESPONSE_HEADERS :status")
                    .phase(Phase::Authz),
            ),
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(out.status(), 401);
    assert_eq!(out.response.body_text(), "no auth");
    assert_eq!(out.replied_by(), Some("first"));
    assert!(out.upstream.is_none());
    // The callback ran on after the call: the reply is sent when it returns.
    assert!(logged(&out.logs, "probe echo after-local-reply"));
    // Its Continue was turned into Stop: the second filter never saw the request.
    assert!(!out
        .logs
        .iter()
        .any(|l| l.plugin == "second" && l.message.starts_with("probe on_request_headers")));
    // The response callbacks of every filter ran for the local reply, in reverse order.
    let responses: Vec<(&str, &str)> = out
        .logs
        .iter()
        .filter(|l| {
            l.message
                .starts_with("probe proxy_get_header_map_value(HTTP_RESPONSE_HEADERS")
        })
        .map(|l| {
            (
                l.plugin.as_str(),
                l.message.rsplit(" = ").next().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        responses,
        [("second", r#"OK "401""#), ("first", r#"OK "401""#)]
    );
}

#[test]
fn a_stream_ends_with_on_log_then_on_done_then_on_delete() {
    let mut proxy = proxy("");
    let out = proxy.send(Request::get("/"));
    let ends: Vec<&str> = out
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .filter(|m| {
            ["probe on_log", "probe on_done", "probe on_delete"]
                .iter()
                .any(|p| m.starts_with(p))
        })
        .collect();
    assert_eq!(
        ends,
        [
            "probe on_log context=2",
            "probe on_done context=2",
            "probe on_delete context=2"
        ]
    );
    let response = position(&out.logs, "probe on_response_headers");
    assert!(response < position(&out.logs, "probe on_log"));
}

// ----- calls --------------------------------------------------------------------

#[test]
fn http_call_tokens_are_4_8_12_and_grpc_call_tokens_5_9_owned_by_the_root_context() {
    let mut proxy = proxy(
        "request_headers: http_call upstream-svc 100; http_call upstream-svc 100; http_call upstream-svc 100; \
         grpc_call upstream-svc s m x 100; grpc_call upstream-svc s m x 100",
    );
    proxy.on_http_call(CLUSTER, |_| CallReply::response(200, vec![], ""));
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Message(Vec::new()));
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&out.logs, r#"proxy_http_call("upstream-svc", 100)"#),
        ["OK token=4", "OK token=8", "OK token=12"]
    );
    assert_eq!(
        answers(
            &out.logs,
            r#"proxy_grpc_call("upstream-svc", "s", "m", "x", 100)"#
        ),
        ["OK token=5", "OK token=9"]
    );
    for token in [4, 8, 12] {
        assert!(logged(
            &out.logs,
            &format!(
                "probe on_http_call_response context=1 token={token} headers=1 body=0 trailers=0"
            )
        ));
    }
    for token in [5, 9] {
        assert!(logged(
            &out.logs,
            &format!("probe on_grpc_receive context=1 token={token} size=0")
        ));
    }
}

#[test]
fn an_unknown_cluster_is_bad_argument_and_a_failed_call_has_no_headers() {
    let mut proxy = build(builder().cluster("dead").plugin(probe(
        "probe",
        "request_headers: http_call unknown 100; http_call dead 100",
    )));
    // No responder for `dead`: the connection fails.
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(&out.logs, r#"proxy_http_call("unknown", 100)"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_http_call("dead", 100)"#),
        "OK token=4"
    );
    assert!(logged(
        &out.logs,
        "probe on_http_call_response context=1 token=4 headers=0 body=0 trailers=0"
    ));
}

#[test]
fn calls_that_get_no_answer_time_out_on_the_virtual_clock() {
    let mut proxy = proxy(
        "request_headers: http_call upstream-svc 250; grpc_call upstream-svc s m x 400\n\
         http_call_response: now\n\
         grpc_close: now; get_status",
    );
    proxy.on_http_call(CLUSTER, |_| CallReply::Timeout);
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Timeout);
    let out = proxy.send(Request::get("/"));
    assert!(logged(
        &out.logs,
        "probe on_http_call_response context=1 token=4 headers=0 body=0 trailers=0"
    ));
    assert!(
        logged(&out.logs, "probe on_grpc_close context=1 token=5 code=4"),
        "DEADLINE_EXCEEDED"
    );
    assert_eq!(
        answers(&out.logs, "proxy_get_current_time_nanoseconds()"),
        [
            format!("OK {}", DEFAULT_START_NANOS + 250 * MS),
            format!("OK {}", DEFAULT_START_NANOS + 650 * MS)
        ]
    );
    assert_eq!(proxy.now_nanos(), DEFAULT_START_NANOS + 650 * MS);
}

// ----- metrics ------------------------------------------------------------------

#[test]
fn metrics_are_one_stat_per_name_summed_over_workers() {
    let mut proxy = build(builder().workers(2).plugin(probe(
        "probe",
        "configure: define_metric COUNTER requests; define_metric GAUGE level\n\
         request_headers: increment_metric requests 1; increment_metric requests -3; record_metric requests 2; record_metric level 5",
    )));
    proxy.send(Request::get("/").worker(0));
    proxy.send(Request::get("/").worker(1));
    // 1 + 2 per request (the negative delta is refused), from two worker VMs.
    assert_eq!(proxy.metric("requests"), Some(6));
    assert_eq!(proxy.metric("level"), Some(5));
}

// ----- traps and fail strategies ----------------------------------------------------

fn trapping(strategy: FailStrategy) -> Proxy {
    build(builder().plugin(
        probe("probe", "request_headers: when_header x-trap; trap").fail_strategy(strategy),
    ))
}

#[test]
fn a_trap_with_fail_close_answers_503_wasm_fail_stream_now_and_for_later_requests() {
    let mut proxy = trapping(FailStrategy::FailClose);
    let out = proxy.send(Request::get("/").header("x-trap", "1"));
    assert_eq!(out.status(), 503);
    let local = out.local_reply.clone().expect("a local reply");
    assert_eq!(
        (local.plugin.as_str(), local.details.as_str()),
        ("probe", "wasm_fail_stream")
    );
    assert!(out
        .logs
        .iter()
        .any(|l| l.level == LogLevel::Critical && l.message.contains("wasm trap")));
    let later = proxy.send(Request::get("/"));
    assert_eq!(later.status(), 503);
    assert!(later.upstream.is_none());
    assert!(
        lines(&later.logs).is_empty(),
        "the failed VM is not called again"
    );
}

#[test]
fn a_trap_with_fail_open_skips_the_filter() {
    let mut proxy = trapping(FailStrategy::FailOpen);
    let out = proxy.send(Request::get("/").header("x-trap", "1"));
    assert_eq!(out.status(), 200);
    assert!(out.upstream.is_some());
    let later = proxy.send(Request::get("/"));
    assert_eq!(later.status(), 200);
    assert!(lines(&later.logs).is_empty(), "the failed VM is skipped");
}

#[test]
fn a_trap_with_fail_reload_gets_a_fresh_vm_for_new_requests() {
    let mut proxy = trapping(FailStrategy::FailReload);
    let out = proxy.send(Request::get("/").header("x-trap", "1"));
    assert_eq!(out.status(), 503);
    let later = proxy.send(Request::get("/"));
    assert_eq!(later.status(), 200);
    // A new VM: started again, its context ids start again at 1.
    assert!(logged(
        &later.logs,
        "probe on_context_create context=1 parent=0"
    ));
    assert!(logged(
        &later.logs,
        "probe on_context_create context=2 parent=1"
    ));
}

// ----- properties ---------------------------------------------------------------

#[test]
fn request_connection_plugin_and_node_properties_are_served() {
    let ca = TestCa::new("probe-ca").expect("test CA");
    let svid = ca
        .issue("spiffe://cluster.local/ns/bank-a/sa/api")
        .expect("svid");
    let mut proxy = build(
        builder()
            .node_metadata("NAMESPACE", "bank-a")
            .upstream_cluster("inbound|8080||api.bank-a.svc.cluster.local")
            .plugin(probe(
                "probe",
                "request_headers: get_property request path; get_property request url_path; get_property request host; \
                 get_property request scheme; get_property request method; get_property request query; \
                 get_property request id; get_property request protocol; get_property request headers x-h; \
                 get_property source address; get_property source port; get_property destination address; \
                 get_property connection mtls; get_property connection uri_san_peer_certificate; \
                 get_property connection peer_certificate; get_property connection subject_peer_certificate; \
                 get_property xds cluster_name; get_property plugin_name; get_property plugin_root_id; \
                 get_property xds node metadata NAMESPACE; get_property xds node metadata MISSING; \
                 get_property node metadata NAMESPACE",
            ).root_id("probe-root")),
    );
    let out = proxy.send(
        Request::get("/acct/1?x=2")
            .authority("api.bank-a")
            .header("x-request-id", "rid-1")
            .header("x-h", "hv")
            .source("10.1.2.3:41000")
            .destination("10.0.0.2:8080")
            .peer_certificate_pem(svid.cert_pem.clone()),
    );
    let p = |path: &str| {
        answer(
            &out.logs,
            &format!(
                "proxy_get_property({})",
                esc(path.replace('.', "\0").as_bytes())
            ),
        )
    };
    let s = |v: &str| format!("OK {}", esc(v.as_bytes()));
    assert_eq!(p("request.path"), s("/acct/1?x=2"));
    assert_eq!(p("request.url_path"), s("/acct/1"));
    assert_eq!(p("request.host"), s("api.bank-a"));
    assert_eq!(p("request.scheme"), s("https"));
    assert_eq!(p("request.method"), s("GET"));
    assert_eq!(p("request.query"), s("x=2"));
    assert_eq!(p("request.id"), s("rid-1"));
    assert_eq!(p("request.protocol"), s("HTTP/1.1"));
    assert_eq!(p("request.headers.x-h"), s("hv"));
    assert_eq!(p("source.address"), s("10.1.2.3:41000"));
    assert_eq!(p("source.port"), int(41000));
    assert_eq!(p("destination.address"), s("10.0.0.2:8080"));
    assert_eq!(p("connection.mtls"), r#"OK "\x01""#);
    assert_eq!(
        p("connection.uri_san_peer_certificate"),
        s("spiffe://cluster.local/ns/bank-a/sa/api")
    );
    // Envoy 1.40 serves the raw PEM (not URL-encoded) ...
    assert_eq!(p("connection.peer_certificate"), s(&svid.cert_pem));
    // ... and the subject in RFC 2253 form: the last RDN first (the SVID's DER
    // subject is CN, then O), comma-separated.
    assert_eq!(
        p("connection.subject_peer_certificate"),
        s("O=meshward,CN=rcgen self signed cert")
    );
    assert_eq!(
        p("xds.cluster_name"),
        s("inbound|8080||api.bank-a.svc.cluster.local")
    );
    assert_eq!(p("plugin_name"), s("probe"));
    assert_eq!(p("plugin_root_id"), s("probe-root"));
    assert_eq!(p("xds.node.metadata.NAMESPACE"), s("bank-a"));
    assert_eq!(p("xds.node.metadata.MISSING"), "NOT_FOUND");
    // Envoy 1.40 answers only under `xds.node`.
    assert_eq!(p("node.metadata.NAMESPACE"), "NOT_FOUND");
}

#[test]
fn filter_state_set_by_one_plugin_is_read_by_the_next_under_both_names() {
    let mut proxy = build(
        builder()
            .plugin(probe("writer", "request_headers: set_property meshward.x v1").phase(Phase::Authn))
            .plugin(
                probe(
                    "reader",
                    "request_headers: get_property meshward.x; get_property filter_state wasm.meshward.x; get_property meshward.other",
                )
                .phase(Phase::Authz),
            ),
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(&out.logs, r#"proxy_set_property("meshward.x", "v1")"#),
        "OK"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_get_property("meshward.x")"#),
        r#"OK "v1""#
    );
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_get_property("filter_state\x00wasm.meshward.x")"#
        ),
        r#"OK "v1""#
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_get_property("meshward.other")"#),
        "NOT_FOUND"
    );
    // Filter state never reaches the wire, and belongs to its request only.
    assert!(out
        .upstream
        .expect("upstream")
        .headers
        .iter()
        .all(|(_, v)| v != "v1"));
    let next = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&next.logs, r#"proxy_get_property("meshward.x")"#),
        ["OK \"v1\""],
        "set again by the writer for this request"
    );
}

// ----- what the sidecar adds to requests and responses ------------------------------

/// Hex SHA-256 of a PEM certificate's DER: XFCC's `Hash=`.
fn der_sha256_hex(pem: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body");
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_mtls_callers_xfcc_gets_the_sidecars_element_appended_and_a_plaintext_callers_is_removed() {
    let ca = TestCa::new("probe-ca").expect("test CA");
    let caller = ca
        .issue("spiffe://cluster.local/ns/bank-a/sa/web")
        .expect("svid");
    let script = "request_headers: get_header HTTP_REQUEST_HEADERS x-forwarded-client-cert";
    let mut proxy = build(
        builder()
            .node_metadata("NAMESPACE", "bank-a")
            .plugin(probe("probe", script)),
    );
    let element = |by: Option<&str>| {
        let by = by.map(|b| format!("By={b};")).unwrap_or_default();
        format!(
            "{by}Hash={};Subject=\"O=meshward,CN=rcgen self signed cert\";URI=spiffe://cluster.local/ns/bank-a/sa/web",
            der_sha256_hex(&caller.cert_pem),
        )
    };
    let seen = |out: &meshward_harness::Outcome| {
        answer(
            &out.logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, "x-forwarded-client-cert")"#,
        )
    };
    // Istio's APPEND_FORWARD with `subject`, `uri` and `dns`: this sidecar's element, `By=`
    // its own identity (by default from the node's namespace), after the caller's.
    let incoming = "By=spiffe://cluster.local/ns/istio-system/sa/gw;URI=spiffe://x/ns/y/sa/z";
    let out = proxy.send(
        Request::get("/")
            .header("x-forwarded-client-cert", incoming)
            .peer_certificate_pem(caller.cert_pem.clone()),
    );
    let want = format!(
        "{incoming},{}",
        element(Some("spiffe://cluster.local/ns/bank-a/sa/default"))
    );
    assert_eq!(
        out.upstream_header("x-forwarded-client-cert"),
        Some(want.as_str())
    );
    assert_eq!(
        seen(&out),
        format!("OK {}", esc(want.as_bytes())),
        "filters see it too"
    );
    // Without an incoming header, the element alone.
    let out = proxy.send(Request::get("/").peer_certificate_pem(caller.cert_pem.clone()));
    let want = element(Some("spiffe://cluster.local/ns/bank-a/sa/default"));
    assert_eq!(
        out.upstream_header("x-forwarded-client-cert"),
        Some(want.as_str())
    );

    // A plaintext caller's XFCC is sanitized away before any filter runs.
    let out = proxy.send(Request::get("/").header("x-forwarded-client-cert", incoming));
    assert_eq!(out.upstream_header("x-forwarded-client-cert"), None);
    assert_eq!(seen(&out), "NOT_FOUND");

    // The local identity given explicitly; none known: no `By=`.
    let mut named = build(
        builder()
            .node_metadata("NAMESPACE", "bank-a")
            .local_identity("spiffe://cluster.local/ns/bank-a/sa/api")
            .plugin(probe("probe", script)),
    );
    let out = named.send(Request::get("/").peer_certificate_pem(caller.cert_pem.clone()));
    let want = element(Some("spiffe://cluster.local/ns/bank-a/sa/api"));
    assert_eq!(
        out.upstream_header("x-forwarded-client-cert"),
        Some(want.as_str())
    );
    let mut anonymous = build(builder().plugin(probe("probe", script)));
    let out = anonymous.send(Request::get("/").peer_certificate_pem(caller.cert_pem.clone()));
    assert_eq!(
        out.upstream_header("x-forwarded-client-cert"),
        Some(element(None).as_str())
    );
}

#[test]
fn the_proxy_adds_x_forwarded_proto_then_x_request_id_after_the_clients_headers() {
    let mut proxy = build(builder().plugin(probe("probe", "")));
    let out = proxy.send(Request::get("/").header("x-client", "1"));
    let names: Vec<&str> = out
        .upstream
        .as_ref()
        .expect("upstream")
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.starts_with(':'))
        .collect();
    assert_eq!(names, ["x-client", "x-forwarded-proto", "x-request-id"]);
    assert_eq!(out.upstream_header("x-forwarded-proto"), Some("https"));
    // A client's own request id is kept.
    let out = proxy.send(Request::get("/").header("x-request-id", "rid-7"));
    assert_eq!(out.upstream_header("x-request-id"), Some("rid-7"));
}

#[test]
fn responses_get_the_routers_service_time_before_the_filters_and_date_and_server_after_them() {
    let mut proxy = build(builder().plugin(probe(
        "probe",
        "response_headers: get_header HTTP_RESPONSE_HEADERS x-envoy-upstream-service-time; \
         get_header HTTP_RESPONSE_HEADERS date; get_header HTTP_RESPONSE_HEADERS server\n\
         log: get_header HTTP_RESPONSE_HEADERS date; get_header HTTP_RESPONSE_HEADERS server",
    )));
    proxy.set_upstream(|_| {
        meshward_harness::Response::new(200)
            .header("server", "app")
            .body(b"ok".to_vec())
    });
    let value = |name: &str| {
        format!(
            "proxy_get_header_map_value(HTTP_RESPONSE_HEADERS, {})",
            esc(name.as_bytes())
        )
    };
    let s = |v: &str| format!("OK {}", esc(v.as_bytes()));
    let out = proxy.send(Request::get("/"));
    // The response filters see the router's header, and the upstream's `server`
    // but no `date` yet: the codec sets those after them.
    assert_eq!(
        answers(&out.logs, &value("x-envoy-upstream-service-time")),
        [s("0")]
    );
    assert_eq!(answers(&out.logs, &value("server")), [s("app"), s("envoy")]);
    assert_eq!(
        answers(&out.logs, &value("date")),
        ["NOT_FOUND".to_string(), s("Thu, 01 Jan 2026 00:00:00 GMT")],
        "in on_log the date is there"
    );
    assert_eq!(out.response.get("x-envoy-upstream-service-time"), Some("0"));
    assert_eq!(out.response.get("server"), Some("envoy"));
    assert_eq!(
        out.response.get("date"),
        Some("Thu, 01 Jan 2026 00:00:00 GMT")
    );

    // The date follows the virtual clock.
    proxy.advance(Duration::from_secs(90));
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        out.response.get("date"),
        Some("Thu, 01 Jan 2026 00:01:30 GMT")
    );
}

#[test]
fn a_local_reply_gets_date_and_server_but_no_upstream_service_time() {
    let mut proxy = build(builder().plugin(probe(
        "probe",
        "request_headers: local_reply 403 denied probe_denied",
    )));
    let out = proxy.send(Request::get("/"));
    assert_eq!(out.status(), 403);
    assert_eq!(out.response.get("server"), Some("envoy"));
    assert_eq!(
        out.response.get("date"),
        Some("Thu, 01 Jan 2026 00:00:00 GMT")
    );
    assert_eq!(out.response.get("x-envoy-upstream-service-time"), None);
}

// ----- ticks ------------------------------------------------------------------

#[test]
fn ticks_fire_per_root_context_in_every_worker_vm_and_the_main_thread_vm_on_the_virtual_clock() {
    let mut proxy = build(
        builder()
            .workers(2)
            .plugin(probe("probe", "configure: tick_period 100\ntick: now")),
    );
    proxy.advance(Duration::from_millis(99));
    assert!(
        traces(&proxy.logs(), "probe on_tick").is_empty(),
        "not yet due"
    );
    proxy.advance(Duration::from_millis(151));
    let logs = proxy.logs();
    let ticks: Vec<(usize, &str)> = traces(&logs, "probe on_tick")
        .iter()
        .map(|l| (l.worker, l.message.as_str()))
        .collect();
    // Each worker's root context (id 1) and the main thread's (VM index 2)
    // tick at 100 and 200 ms; the canary VM is gone.
    let mut per_worker = ticks.clone();
    per_worker.sort();
    assert_eq!(
        per_worker,
        [
            (0, "probe on_tick context=1"),
            (0, "probe on_tick context=1"),
            (1, "probe on_tick context=1"),
            (1, "probe on_tick context=1"),
            (2, "probe on_tick context=1"),
            (2, "probe on_tick context=1")
        ]
    );
    let times = answers(&logs, "proxy_get_current_time_nanoseconds()");
    assert_eq!(
        times,
        [100, 100, 100, 200, 200, 200].map(|ms| format!("OK {}", DEFAULT_START_NANOS + ms * MS))
    );
}

// ----- WASI ---------------------------------------------------------------------

#[test]
fn wasi_serves_env_virtual_clocks_randomness_and_stdio_and_answers_enosys_for_the_rest() {
    let mut proxy = build(builder().plugin(
        probe(
            "probe",
            "request_headers: env MODE; env ABSENT; env_count; clock realtime; clock monotonic; random 16; random 16; \
             stdout to-stdout; stderr to-stderr; wasi_unserved",
        )
        .env("MODE", "strict")
        .env("OTHER", "x"),
    ));
    proxy.advance(Duration::from_millis(5));
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert!(logged(logs, r#"probe env MODE = "strict""#));
    assert!(logged(logs, "probe env ABSENT = missing"));
    assert!(logged(logs, "probe env_count = 2"));
    let now = DEFAULT_START_NANOS + 5 * MS;
    assert!(logged(logs, &format!("probe clock_time_get(0) = 0 {now}")));
    assert!(logged(logs, &format!("probe SystemTime::now = {now}")));
    assert!(logged(
        logs,
        &format!("probe clock_time_get(1) = 0 {}", 1_000_000_000 + 5 * MS)
    ));
    let random: Vec<&str> = logs
        .iter()
        .filter_map(|l| l.message.strip_prefix("probe random_get(16) = 0 "))
        .collect();
    assert_eq!(random.len(), 2);
    assert_ne!(random[0], random[1], "random bytes differ");
    assert!(logs
        .iter()
        .any(|l| l.message == "to-stdout" && l.level == LogLevel::Info));
    assert!(logs
        .iter()
        .any(|l| l.message == "to-stderr" && l.level == LogLevel::Error));
    assert!(logged(logs, "probe fd_read = 52"), "ENOSYS");
    assert!(logged(logs, "probe sock_accept = 52"), "ENOSYS");
    assert_eq!(out.status(), 200, "nothing trapped");
}

// ----- manifests ----------------------------------------------------------------

#[test]
fn wasmplugin_manifests_order_by_phase_then_priority_and_pass_plugin_config_as_json() {
    let dir =
        std::env::temp_dir().join(format!("meshward-harness-behaviour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wasm = wasm();
    let plugin = |name: &str, phase: Option<&str>, priority: Option<i64>| {
        let mut yaml = format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: {name}\nspec:\n  url: file://{}\n",
            wasm.display()
        );
        if let Some(p) = phase {
            yaml.push_str(&format!("  phase: {p}\n"));
        }
        if let Some(p) = priority {
            yaml.push_str(&format!("  priority: {p}\n"));
        }
        yaml.push_str(&format!(
            "  pluginConfig:\n    script: \"configure: get_buffer PLUGIN_CONFIGURATION 0 1000\"\n    limits: {{burst: 3, names: [a, b]}}\n    owner: {name}\n"
        ));
        yaml
    };
    let docs = [
        plugin("z-stats", Some("STATS"), Some(100)),
        plugin("a-authz-low", Some("AUTHZ"), Some(1)),
        plugin("c-authz-unset", Some("AUTHZ"), None),
        plugin("b-authz-high", Some("AUTHZ"), Some(50)),
        plugin("none", None, Some(1000)),
        plugin("authn", Some("AUTHN"), Some(-5)),
    ];
    std::fs::write(dir.join("plugins.yaml"), docs.join("---\n")).expect("write manifests");
    let mut proxy = build(
        builder()
            .manifests(std::slice::from_ref(&dir))
            .expect("manifests"),
    );
    std::fs::remove_dir_all(&dir).ok();
    let out = proxy.send(Request::get("/"));
    let order: Vec<&str> = traces(&out.logs, "probe on_request_headers")
        .iter()
        .map(|l| l.plugin.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "authn",
            "b-authz-high",
            "a-authz-low",
            "c-authz-unset",
            "z-stats",
            "none"
        ]
    );
    // pluginConfig arrives as JSON bytes.
    let config = proxy
        .logs()
        .into_iter()
        .find(|l| {
            l.plugin == "a-authz-low"
                && l.message
                    .starts_with("probe proxy_get_buffer_bytes(PLUGIN_CONFIGURATION")
        })
        .expect("configuration read")
        .message;
    let json = config.split_once(" = OK ").map(|(_, v)| v).expect("OK");
    let json = json.trim_matches('"').replace("\\\"", "\"");
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        value,
        serde_json::json!({
            "script": "configure: get_buffer PLUGIN_CONFIGURATION 0 1000",
            "limits": {"burst": 3, "names": ["a", "b"]},
            "owner": "a-authz-low"
        })
    );
}

// ----- isolation ------------------------------------------------------------------

/// A scenario touching shared data, queues, metrics, calls and ticks.
fn scenario() -> Vec<String> {
    let mut proxy = build(builder().workers(2).plugin(probe(
        "probe",
        "configure: tick_period 50; define_metric COUNTER n; register_queue q\n\
         request_headers: get_shared k; set_shared k v last; increment_metric n 1; enqueue 1 item; http_call upstream-svc 100\n\
         http_call_response: get_buffer HTTP_CALL_RESPONSE_BODY 0 10\n\
         queue_ready: dequeue last\n\
         tick: get_metric n",
    )));
    proxy.on_http_call(CLUSTER, |_| CallReply::response(200, vec![], "reply"));
    let mut out = Vec::new();
    for i in 0..6 {
        let o = proxy.send(Request::get("/").worker(i % 2));
        out.push(format!("{} {:?}", o.status(), o.upstream.map(|u| u.body)));
        proxy.advance(Duration::from_millis(30));
    }
    out.extend(
        proxy
            .logs()
            .into_iter()
            .filter(|l| l.message.starts_with("probe "))
            .map(|l| format!("{} {}", l.worker, l.message)),
    );
    out.push(format!(
        "{:?} {:?}",
        proxy.shared_data("k"),
        proxy.metric("n")
    ));
    out
}

#[test]
fn the_same_scenario_in_parallel_threads_gives_identical_outcomes() {
    let expected = scenario();
    let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(scenario)).collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), expected);
    }
    assert!(expected
        .iter()
        .any(|l| l.contains("proxy_get_shared_data(\"k\") = OK \"v\" cas=5")));
}
