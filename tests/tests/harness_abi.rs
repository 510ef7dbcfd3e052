//! Every proxy-wasm ABI v0.2.1 hostcall of the harness, called by a real Wasm
//! module (the ABI probe, `tests/abi-probe`) with valid and invalid arguments:
//! the answers must be those of the spec and of Envoy (ARCHITECTURE §4). One
//! test per hostcall; each asserts the OK path and the error statuses.
//!
//! Known differences from Envoy 1.40 that no filter relies on (the spec's
//! answer is kept where the spec and Envoy part ways):
//! - `proxy_get_header_map_size` answers the serialized size (the spec); Envoy
//!   sums the bytes of names and values.
//! - `proxy_set_header_map_pairs` with malformed bytes answers PARSE_FAILURE;
//!   Envoy takes them as an empty map.
//! - `proxy_define_metric` twice with one name gives the same id; Envoy gives a
//!   new id (same stat). Ids also count differently; only the type bits agree.
//! - `proxy_grpc_close` forgets a stream at once (a second close is NOT_FOUND);
//!   Envoy answers OK until the remote side has closed.
//! - `proxy_send_local_response` refuses a status outside 100–999; Envoy does not.
//! - `proxy_http_call` reads the timeout as unsigned; Envoy refuses a negative one.
//! - `proxy_get_status` after a failed HTTP call answers code 0; Envoy reports a reset.
//! - Only logging and WASI are served during `_initialize`; a Rust cdylib runs
//!   no code there, so no test drives that path.

mod harness_probe;

use harness_probe::*;
use meshward_harness::{CallReply, GrpcReply, LogLevel, Request, DEFAULT_START_NANOS};
use std::time::Duration;

const MS: u64 = 1_000_000;
/// With one worker, the main thread's VM is `LogLine::worker` 1 (Envoy runs one per plugin).
const MAIN_THREAD: usize = 1;

/// The lines one VM logged.
fn of_vm(logs: &[meshward_harness::LogLine], vm: usize) -> Vec<meshward_harness::LogLine> {
    logs.iter().filter(|l| l.worker == vm).cloned().collect()
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", esc(k.as_bytes()), esc(v.as_bytes())))
        .collect();
    format!("OK [{}]", items.join(", "))
}

// ----- logging and time ------------------------------------------------------

#[test]
fn proxy_log_logs_at_its_level_and_rejects_unknown_levels_and_bad_pointers() {
    let mut proxy = proxy(
        "request_headers: log INFO hello-from-probe; log DEBUG too-quiet; log 9 x; log INFO @bad",
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(&out.logs, r#"proxy_log(INFO, "hello-from-probe")"#),
        "OK"
    );
    assert!(out.logs.iter().any(|l| l.message == "hello-from-probe"
        && l.level == LogLevel::Info
        && l.plugin == "probe"));
    // Below the host's level: accepted, not written.
    assert_eq!(answer(&out.logs, r#"proxy_log(DEBUG, "too-quiet")"#), "OK");
    assert!(!logged(&out.logs, "too-quiet"));
    assert_eq!(answer(&out.logs, r#"proxy_log(9, "x")"#), "BAD_ARGUMENT");
    assert_eq!(
        answer(&out.logs, "proxy_log(INFO, @bad)"),
        "INVALID_MEMORY_ACCESS"
    );
}

#[test]
fn proxy_get_log_level_reports_info_and_rejects_a_bad_return_pointer() {
    let mut proxy = proxy("request_headers: get_log_level; badret get_log_level");
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&out.logs, "proxy_get_log_level()"),
        ["OK INFO", "INVALID_MEMORY_ACCESS"]
    );
}

#[test]
fn proxy_get_current_time_nanoseconds_reads_the_virtual_clock() {
    let mut proxy = proxy(
        "configure: now; tick_period 1000\n\
         tick: now; badret now",
    );
    let start = DEFAULT_START_NANOS.to_string();
    // The canary, the worker's and the main thread's VM, all configured at the start time.
    assert_eq!(
        answers(&proxy.logs(), "proxy_get_current_time_nanoseconds()"),
        [
            format!("OK {start}"),
            format!("OK {start}"),
            format!("OK {start}")
        ]
    );
    proxy.advance(Duration::from_secs(1));
    let logs = proxy.logs();
    // Both ticking root contexts (worker 0 and the main thread) read the advanced clock.
    for vm in [0, MAIN_THREAD] {
        let all = answers(&of_vm(&logs, vm), "proxy_get_current_time_nanoseconds()");
        assert_eq!(
            all[1..],
            [
                format!("OK {}", DEFAULT_START_NANOS + 1000 * MS),
                "INVALID_MEMORY_ACCESS".to_string()
            ],
            "VM {vm}"
        );
    }
}

#[test]
fn proxy_set_tick_period_milliseconds_ticks_on_the_virtual_clock_and_zero_stops_it() {
    let mut proxy = proxy("configure: tick_period 100\ntick: now");
    assert_eq!(
        answers(&proxy.logs(), "proxy_set_tick_period_milliseconds(100)"),
        ["OK", "OK", "OK"]
    );
    proxy.advance(Duration::from_millis(350));
    let want: Vec<String> = (1..=3)
        .map(|k| format!("OK {}", DEFAULT_START_NANOS + k * 100 * MS))
        .collect();
    // The worker's root context and the main thread's both tick.
    for vm in [0, MAIN_THREAD] {
        let times = answers(
            &of_vm(&proxy.logs(), vm),
            "proxy_get_current_time_nanoseconds()",
        );
        assert_eq!(times, want, "VM {vm}: one tick per 100 ms of virtual time");
    }

    let mut stopping = harness_probe::proxy("configure: tick_period 100\ntick: tick_period 0");
    stopping.advance(Duration::from_secs(1));
    let ticks = stopping
        .logs()
        .iter()
        .filter(|l| l.message.starts_with("probe on_tick"))
        .count();
    assert_eq!(
        ticks, 2,
        "a period of 0 disables the timer: one tick each for the worker and the main thread"
    );
    assert_eq!(
        answers(&stopping.logs(), "proxy_set_tick_period_milliseconds(0)"),
        ["OK", "OK"]
    );
}

// ----- contexts and streams -----------------------------------------------------

#[test]
fn proxy_set_effective_context_switches_to_a_known_context_and_rejects_unknown_ids() {
    let mut proxy = proxy(
        "request_headers: http_call upstream-svc 1000; pause\n\
         http_call_response: set_effective_context 999; set_effective_context caller; continue HTTP_REQUEST",
    );
    proxy.on_http_call(CLUSTER, |_| CallReply::response(200, vec![], "ok"));
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(&out.logs, "proxy_set_effective_context(999)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(answer(&out.logs, "proxy_set_effective_context(2)"), "OK");
    assert!(out.upstream.is_some(), "the stream context was resumed");
}

#[test]
fn proxy_done_finishes_a_context_that_answered_false_to_on_done_and_is_not_found_otherwise() {
    let mut proxy = proxy(
        "configure: tick_period 100\n\
         request_headers: done\n\
         done: return false\n\
         tick: set_effective_context 2; done",
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(answer(&out.logs, "proxy_done()"), "NOT_FOUND");
    assert!(logged(&out.logs, "probe on_done context=2"));
    assert!(
        !logged(&out.logs, "probe on_delete context=2"),
        "deletion waits for proxy_done"
    );
    proxy.advance(Duration::from_millis(100));
    let logs = of_vm(&proxy.logs(), 0);
    assert_eq!(answers(&logs, "proxy_set_effective_context(2)"), ["OK"]);
    assert_eq!(answers(&logs, "proxy_done()"), ["NOT_FOUND", "OK"]);
    assert!(logged(&logs, "probe on_delete context=2"));
    // Context ids are per VM: the main thread's VM, which ticks too, has no context 2.
    assert_eq!(
        answers(
            &of_vm(&proxy.logs(), MAIN_THREAD),
            "proxy_set_effective_context(2)"
        ),
        ["BAD_ARGUMENT"]
    );
    // Gone now: a second tick can no longer reach it.
    proxy.advance(Duration::from_millis(100));
    let logs = of_vm(&proxy.logs(), 0);
    assert_eq!(
        answers(&logs, "proxy_set_effective_context(2)"),
        ["OK", "BAD_ARGUMENT"]
    );
    assert_eq!(
        answers(&logs, "proxy_done()"),
        ["NOT_FOUND", "OK", "NOT_FOUND"]
    );
}

#[test]
fn proxy_continue_stream_resumes_http_streams_and_answers_other_stream_types_like_envoy() {
    let mut proxy = proxy(
        "request_headers: continue 7; continue UPSTREAM; continue DOWNSTREAM; http_call upstream-svc 1000; pause\n\
         http_call_response: continue HTTP_REQUEST; set_effective_context caller; continue HTTP_REQUEST",
    );
    proxy.on_http_call(CLUSTER, |_| CallReply::response(200, vec![], ""));
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(&out.logs, "proxy_continue_stream(7)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(&out.logs, "proxy_continue_stream(UPSTREAM)"),
        "UNIMPLEMENTED"
    );
    assert_eq!(answer(&out.logs, "proxy_continue_stream(DOWNSTREAM)"), "OK");
    // From the root context: accepted, does nothing; then from the stream: resumes.
    assert_eq!(
        answers(&out.logs, "proxy_continue_stream(HTTP_REQUEST)"),
        ["OK", "OK"]
    );
    assert_eq!(out.status(), 200);
    assert!(out.upstream.is_some());
}

#[test]
fn proxy_close_stream_resets_the_stream_and_rejects_unknown_stream_types() {
    let mut proxy = proxy("request_headers: close 9; close HTTP_REQUEST");
    let out = proxy.send(Request::get("/"));
    assert_eq!(answer(&out.logs, "proxy_close_stream(9)"), "BAD_ARGUMENT");
    assert_eq!(answer(&out.logs, "proxy_close_stream(HTTP_REQUEST)"), "OK");
    assert!(out.reset);
    assert!(out.upstream.is_none());
    assert_eq!(out.status(), 0);
}

#[test]
fn proxy_send_local_response_answers_the_client_and_rejects_bad_pointers() {
    let mut proxy = proxy(
        "configure: local_reply 500 x y\n\
         request_headers: local_reply 403 @bad d; local_reply 403 denied probe_denied x-why=test",
    );
    // In a root context Envoy accepts it and sends nothing.
    assert_eq!(
        answers(&proxy.logs(), r#"proxy_send_local_response(500, "x", "y")"#),
        ["OK", "OK", "OK"]
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(&out.logs, r#"proxy_send_local_response(403, @bad, "d")"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_send_local_response(403, "denied", "probe_denied")"#
        ),
        "OK"
    );
    assert!(out.upstream.is_none());
    assert_eq!(out.status(), 403);
    assert_eq!(out.response.body_text(), "denied");
    assert_eq!(out.response.get("x-why"), Some("test"));
    let local = out.local_reply.expect("a local reply");
    assert_eq!(
        (local.plugin.as_str(), local.details.as_str()),
        ("probe", "probe_denied")
    );
}

// ----- buffers -------------------------------------------------------------

#[test]
fn proxy_get_buffer_bytes_reads_slices_of_available_buffers_only() {
    let mut proxy = proxy(
        "configure: get_buffer PLUGIN_CONFIGURATION 0 9\n\
         request_body: get_buffer HTTP_REQUEST_BODY 0 100; get_buffer HTTP_REQUEST_BODY 6 3; \
         get_buffer HTTP_REQUEST_BODY 100 5; get_buffer 99 0 10; get_buffer HTTP_RESPONSE_BODY 0 10; \
         badret get_buffer HTTP_REQUEST_BODY 0 5",
    );
    assert_eq!(
        answers(
            &proxy.logs(),
            "proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, 9)"
        ),
        [
            r#"OK "configure""#,
            r#"OK "configure""#,
            r#"OK "configure""#
        ]
    );
    let out = proxy.send(Request::post("/", "hello world"));
    let logs = &out.logs;
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, 100)"),
        r#"OK "hello world""#
    );
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 6, 3)"),
        r#"OK "wor""#
    );
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 100, 5)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(99, 0, 10)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(HTTP_RESPONSE_BODY, 0, 10)"),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(HTTP_REQUEST_BODY, 0, 5)"),
        "INVALID_MEMORY_ACCESS"
    );
}

#[test]
fn proxy_set_buffer_bytes_replaces_the_body_and_rejects_unknown_unavailable_and_bad_buffers() {
    let mut proxy = proxy(
        "request_body: set_buffer HTTP_REQUEST_BODY 0 100 replaced; set_buffer 99 0 0 x; \
         set_buffer HTTP_RESPONSE_BODY 0 0 x; set_buffer HTTP_REQUEST_BODY 0 0 @bad; \
         set_buffer HTTP_CALL_RESPONSE_BODY 0 0 x",
    );
    let out = proxy.send(Request::post("/", "original"));
    let logs = &out.logs;
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, 100, "replaced")"#
        ),
        "OK"
    );
    assert_eq!(
        answer(logs, r#"proxy_set_buffer_bytes(99, 0, 0, "x")"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_RESPONSE_BODY, 0, 0, "x")"#
        ),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(
            logs,
            "proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, 0, @bad)"
        ),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_set_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, 0, "x")"#
        ),
        "NOT_FOUND"
    );
    assert_eq!(out.upstream.expect("upstream").body, b"replaced");
}

#[test]
fn proxy_get_buffer_status_reports_the_size_of_available_buffers_only() {
    let mut proxy = proxy(
        "request_body: buffer_status HTTP_REQUEST_BODY; buffer_status 99; buffer_status HTTP_RESPONSE_BODY; \
         badret buffer_status HTTP_REQUEST_BODY",
    );
    let out = proxy.send(Request::post("/", "hello world"));
    assert_eq!(
        answers(&out.logs, "proxy_get_buffer_status(HTTP_REQUEST_BODY)"),
        ["OK size=11", "INVALID_MEMORY_ACCESS"]
    );
    assert_eq!(
        answer(&out.logs, "proxy_get_buffer_status(99)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(&out.logs, "proxy_get_buffer_status(HTTP_RESPONSE_BODY)"),
        "NOT_FOUND"
    );
}

// ----- header maps -------------------------------------------------------------

#[test]
fn proxy_get_header_map_size_is_the_serialized_size_and_bad_argument_for_unavailable_maps() {
    let mut proxy = proxy(
        "request_headers: map_size HTTP_REQUEST_HEADERS; map_size 99; badret map_size HTTP_REQUEST_HEADERS; \
         map_size HTTP_CALL_RESPONSE_HEADERS",
    );
    let out = proxy.send(Request::get("/size"));
    let upstream = out.upstream.as_ref().expect("upstream");
    let size = meshward_harness::abi::serialize_map(&upstream.headers).len();
    assert_eq!(
        answers(&out.logs, "proxy_get_header_map_size(HTTP_REQUEST_HEADERS)"),
        [format!("OK {size}"), "INVALID_MEMORY_ACCESS".to_string()]
    );
    assert_eq!(
        answer(&out.logs, "proxy_get_header_map_size(99)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            &out.logs,
            "proxy_get_header_map_size(HTTP_CALL_RESPONSE_HEADERS)"
        ),
        "BAD_ARGUMENT"
    );
}

#[test]
fn proxy_get_header_map_pairs_returns_every_header_and_empty_for_unavailable_maps() {
    let mut proxy = proxy(
        "request_headers: get_pairs HTTP_REQUEST_HEADERS; get_pairs 99; badret get_pairs HTTP_REQUEST_HEADERS; \
         get_pairs HTTP_CALL_RESPONSE_HEADERS",
    );
    let out = proxy.send(Request::get("/pairs").header("x-one", "1"));
    let upstream = out.upstream.as_ref().expect("upstream");
    assert_eq!(
        answers(
            &out.logs,
            "proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS)"
        ),
        [
            pairs_text(&upstream.headers),
            "INVALID_MEMORY_ACCESS".to_string()
        ]
    );
    assert_eq!(
        answer(&out.logs, "proxy_get_header_map_pairs(99)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            &out.logs,
            "proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS)"
        ),
        "OK []"
    );
}

#[test]
fn proxy_set_header_map_pairs_replaces_the_whole_map_with_lower_case_names() {
    let mut proxy = proxy(
        "request_headers: set_pairs HTTP_REQUEST_HEADERS :authority=a.b :path=/new :method=GET :scheme=https X-Set=1; \
         set_pairs 99 a=b; set_pairs_raw HTTP_REQUEST_HEADERS @bad",
    );
    let out = proxy.send(Request::get("/old").header("x-gone", "1"));
    let logs = &out.logs;
    assert_eq!(answers(logs, "proxy_set_header_map_pairs(HTTP_REQUEST_HEADERS, [\":authority\": \"a.b\", \":path\": \"/new\", \":method\": \"GET\", \":scheme\": \"https\", \"X-Set\": \"1\"])"), ["OK"]);
    assert_eq!(
        answer(logs, r#"proxy_set_header_map_pairs(99, ["a": "b"])"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            logs,
            "proxy_set_header_map_pairs(HTTP_REQUEST_HEADERS, @bad)"
        ),
        "INVALID_MEMORY_ACCESS"
    );
    let upstream = out.upstream.expect("upstream");
    let want: Vec<(String, String)> = [
        (":authority", "a.b"),
        (":path", "/new"),
        (":method", "GET"),
        (":scheme", "https"),
        ("x-set", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(upstream.headers, want);
}

#[test]
fn proxy_get_header_map_value_finds_names_case_insensitively_and_reports_missing_ones() {
    let mut proxy = proxy(
        "request_headers: get_header HTTP_REQUEST_HEADERS :path; get_header HTTP_REQUEST_HEADERS X-Custom; \
         get_header HTTP_REQUEST_HEADERS x-missing; get_header 99 :path; get_header HTTP_REQUEST_HEADERS @bad; \
         badret get_header HTTP_REQUEST_HEADERS x-custom",
    );
    let out = proxy.send(Request::get("/a").header("x-custom", "v1"));
    let logs = &out.logs;
    assert_eq!(
        answer(
            logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, ":path")"#
        ),
        r#"OK "/a""#
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, "X-Custom")"#
        ),
        r#"OK "v1""#
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, "x-missing")"#
        ),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, r#"proxy_get_header_map_value(99, ":path")"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            logs,
            "proxy_get_header_map_value(HTTP_REQUEST_HEADERS, @bad)"
        ),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_get_header_map_value(HTTP_REQUEST_HEADERS, "x-custom")"#
        ),
        "INVALID_MEMORY_ACCESS"
    );
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn proxy_add_header_map_value_appends_a_value_and_rejects_bad_maps_and_pointers() {
    let mut proxy = proxy(
        "request_headers: add_header HTTP_REQUEST_HEADERS X-Multi two; add_header 99 a b; \
         add_header HTTP_REQUEST_HEADERS @bad v",
    );
    let out = proxy.send(Request::get("/").header("x-multi", "one"));
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_add_header_map_value(HTTP_REQUEST_HEADERS, "X-Multi", "two")"#
        ),
        "OK"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_add_header_map_value(99, "a", "b")"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_add_header_map_value(HTTP_REQUEST_HEADERS, @bad, "v")"#
        ),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        values(&out.upstream.expect("upstream").headers, "x-multi"),
        ["one", "two"]
    );
}

#[test]
fn proxy_replace_header_map_value_leaves_one_value_or_adds_the_header() {
    let mut proxy = proxy(
        "request_headers: replace_header HTTP_REQUEST_HEADERS x-multi only; \
         replace_header HTTP_REQUEST_HEADERS x-new fresh; replace_header 99 a b; \
         replace_header HTTP_REQUEST_HEADERS x @bad",
    );
    let out = proxy.send(
        Request::get("/")
            .header("x-multi", "one")
            .header("x-multi", "two"),
    );
    let logs = &out.logs;
    assert_eq!(
        answer(
            logs,
            r#"proxy_replace_header_map_value(HTTP_REQUEST_HEADERS, "x-multi", "only")"#
        ),
        "OK"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_replace_header_map_value(HTTP_REQUEST_HEADERS, "x-new", "fresh")"#
        ),
        "OK"
    );
    assert_eq!(
        answer(logs, r#"proxy_replace_header_map_value(99, "a", "b")"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_replace_header_map_value(HTTP_REQUEST_HEADERS, "x", @bad)"#
        ),
        "INVALID_MEMORY_ACCESS"
    );
    let headers = out.upstream.expect("upstream").headers;
    assert_eq!(values(&headers, "x-multi"), ["only"]);
    assert_eq!(values(&headers, "x-new"), ["fresh"]);
}

#[test]
fn proxy_remove_header_map_value_removes_every_value_and_is_ok_for_missing_names() {
    let mut proxy = proxy(
        "request_headers: remove_header HTTP_REQUEST_HEADERS x-multi; \
         remove_header HTTP_REQUEST_HEADERS x-never-there; remove_header 99 a; \
         remove_header HTTP_REQUEST_HEADERS @bad",
    );
    let out = proxy.send(
        Request::get("/")
            .header("x-multi", "one")
            .header("x-multi", "two"),
    );
    let logs = &out.logs;
    assert_eq!(
        answer(
            logs,
            r#"proxy_remove_header_map_value(HTTP_REQUEST_HEADERS, "x-multi")"#
        ),
        "OK"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_remove_header_map_value(HTTP_REQUEST_HEADERS, "x-never-there")"#
        ),
        "OK"
    );
    assert_eq!(
        answer(logs, r#"proxy_remove_header_map_value(99, "a")"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(
            logs,
            "proxy_remove_header_map_value(HTTP_REQUEST_HEADERS, @bad)"
        ),
        "INVALID_MEMORY_ACCESS"
    );
    assert!(values(&out.upstream.expect("upstream").headers, "x-multi").is_empty());
}

// ----- properties -------------------------------------------------------------

#[test]
fn proxy_get_property_resolves_known_paths_and_reports_unknown_ones() {
    let mut proxy = proxy(
        "request_headers: get_property request path; get_property plugin_name; get_property no such; \
         get_property @bad; badret get_property request path; get_property xds cluster_name; \
         get_property filter_state",
    );
    let out = proxy.send(Request::get("/a?x=1"));
    let logs = &out.logs;
    assert_eq!(
        answers(logs, r#"proxy_get_property("request\x00path")"#),
        [r#"OK "/a?x=1""#, "INVALID_MEMORY_ACCESS"]
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("plugin_name")"#),
        r#"OK "probe""#
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("no\x00such")"#),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, "proxy_get_property(@bad)"),
        "INVALID_MEMORY_ACCESS"
    );
    // The route's upstream cluster, as Envoy serves it.
    assert_eq!(
        answer(logs, r#"proxy_get_property("xds\x00cluster_name")"#),
        r#"OK "app""#
    );
    // Envoy cannot serialize the whole filter-state map.
    assert_eq!(
        answer(logs, r#"proxy_get_property("filter_state")"#),
        "SERIALIZATION_FAILURE"
    );
}

#[test]
fn proxy_set_property_sets_filter_state_of_the_stream_only() {
    let mut proxy = proxy(
        "configure: set_property meshward.y v\n\
         request_headers: set_property meshward.x v1; get_property meshward.x; set_property @bad v; \
         set_property a @bad",
    );
    // No stream in a root context: Envoy has no filter state to write.
    assert_eq!(
        answers(&proxy.logs(), r#"proxy_set_property("meshward.y", "v")"#),
        ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"]
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(
        answer(logs, r#"proxy_set_property("meshward.x", "v1")"#),
        "OK"
    );
    assert_eq!(
        answer(logs, r#"proxy_get_property("meshward.x")"#),
        r#"OK "v1""#
    );
    assert_eq!(
        answer(logs, r#"proxy_set_property(@bad, "v")"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(logs, r#"proxy_set_property("a", @bad)"#),
        "INVALID_MEMORY_ACCESS"
    );
}

// ----- shared data and queues ------------------------------------------------------

#[test]
fn proxy_get_shared_data_returns_value_and_cas_or_not_found() {
    let mut proxy = proxy(
        "request_headers: get_shared k1; set_shared k1 v1 0; get_shared k1; get_shared @bad; \
         badret get_shared k1",
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&out.logs, r#"proxy_get_shared_data("k1")"#),
        ["NOT_FOUND", r#"OK "v1" cas=1"#, "INVALID_MEMORY_ACCESS"]
    );
    assert_eq!(
        answer(&out.logs, "proxy_get_shared_data(@bad)"),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(proxy.shared_data("k1"), Some((b"v1".to_vec(), 1)));
}

#[test]
fn proxy_set_shared_data_follows_envoys_cas_rules() {
    let mut proxy = proxy(
        "request_headers: set_shared k v1 0; get_shared k; set_shared k v2 last; set_shared k v3 1; \
         set_shared fresh f 77; set_shared @bad v 0; set_shared k @bad 0",
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(answer(logs, r#"proxy_set_shared_data("k", "v1", 0)"#), "OK");
    assert_eq!(answer(logs, r#"proxy_set_shared_data("k", "v2", 1)"#), "OK");
    assert_eq!(
        answer(logs, r#"proxy_set_shared_data("k", "v3", 1)"#),
        "CAS_MISMATCH"
    );
    assert_eq!(
        answer(logs, r#"proxy_set_shared_data("fresh", "f", 77)"#),
        "OK"
    );
    assert_eq!(
        answer(logs, r#"proxy_set_shared_data(@bad, "v", 0)"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(logs, r#"proxy_set_shared_data("k", @bad, 0)"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(proxy.shared_data("k"), Some((b"v2".to_vec(), 2)));
    assert_eq!(proxy.shared_data("fresh"), Some((b"f".to_vec(), 3)));
}

#[test]
fn proxy_register_shared_queue_creates_or_opens_a_queue_by_name() {
    let mut proxy = proxy(
        "request_headers: register_queue q1; register_queue q1; register_queue q2; register_queue @bad; \
         badret register_queue q3",
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&out.logs, r#"proxy_register_shared_queue("q1")"#),
        ["OK 1", "OK 1"]
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_register_shared_queue("q2")"#),
        "OK 2"
    );
    assert_eq!(
        answer(&out.logs, "proxy_register_shared_queue(@bad)"),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_register_shared_queue("q3")"#),
        "INVALID_MEMORY_ACCESS"
    );
}

#[test]
fn proxy_resolve_shared_queue_finds_queues_by_vm_id_and_name() {
    let mut proxy = proxy(
        r#"request_headers: register_queue q1; resolve_queue "" q1; resolve_queue "" nope; resolve_queue other-vm q1; resolve_queue @bad q1"#,
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(
        answer(logs, r#"proxy_resolve_shared_queue("", "q1")"#),
        "OK 1"
    );
    assert_eq!(
        answer(logs, r#"proxy_resolve_shared_queue("", "nope")"#),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, r#"proxy_resolve_shared_queue("other-vm", "q1")"#),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, r#"proxy_resolve_shared_queue(@bad, "q1")"#),
        "INVALID_MEMORY_ACCESS"
    );
}

#[test]
fn proxy_enqueue_shared_queue_adds_an_item_and_wakes_the_owners_root_context() {
    let mut proxy = proxy(
        "request_headers: register_queue q1; enqueue last item1; enqueue 999 x; enqueue last @bad\n\
         queue_ready: dequeue last",
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(
        answer(logs, r#"proxy_enqueue_shared_queue(1, "item1")"#),
        "OK"
    );
    assert_eq!(
        answer(logs, r#"proxy_enqueue_shared_queue(999, "x")"#),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(logs, "proxy_enqueue_shared_queue(1, @bad)"),
        "INVALID_MEMORY_ACCESS"
    );
    // Registered from a stream context, notified on the root context (id 1).
    assert!(logged(logs, "probe on_queue_ready context=1 queue=1"));
    assert_eq!(
        answer(logs, "proxy_dequeue_shared_queue(1)"),
        r#"OK "item1""#
    );
}

#[test]
fn proxy_dequeue_shared_queue_pops_in_order_and_reports_empty_and_unknown_queues() {
    let mut proxy = proxy(
        "request_headers: register_queue q1; dequeue last; enqueue last a; enqueue last b; dequeue last; \
         dequeue 999; badret dequeue last; dequeue last",
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&out.logs, "proxy_dequeue_shared_queue(1)"),
        ["EMPTY", r#"OK "a""#, "INVALID_MEMORY_ACCESS", "EMPTY"]
    );
    assert_eq!(
        answer(&out.logs, "proxy_dequeue_shared_queue(999)"),
        "NOT_FOUND"
    );
}

// ----- calls ------------------------------------------------------------------

#[test]
fn proxy_http_call_sends_to_known_clusters_only_and_needs_path_method_authority() {
    let mut proxy = proxy(
        "request_headers: http_call nowhere 100; http_call @bad 100; http_call upstream-svc 100 -:path; \
         http_call upstream-svc 500 x-q=1 body=ping\n\
         http_call_response: get_pairs HTTP_CALL_RESPONSE_HEADERS; get_buffer HTTP_CALL_RESPONSE_BODY 0 100",
    );
    proxy.on_http_call(CLUSTER, |_| {
        CallReply::response(200, vec![("x-reply".into(), "yes".into())], "pong")
    });
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(
        answer(logs, r#"proxy_http_call("nowhere", 100)"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(logs, "proxy_http_call(@bad, 100)"),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(logs, r#"proxy_http_call("upstream-svc", 100)"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(logs, r#"proxy_http_call("upstream-svc", 500)"#),
        "OK token=4"
    );
    assert!(logged(
        logs,
        "probe on_http_call_response context=1 token=4 headers=2 body=4 trailers=0"
    ));
    assert_eq!(
        answer(
            logs,
            "proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS)"
        ),
        r#"OK [":status": "200", "x-reply": "yes"]"#
    );
    assert_eq!(
        answer(
            logs,
            "proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, 100)"
        ),
        r#"OK "pong""#
    );
    let calls = proxy.http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, CLUSTER);
    assert_eq!(calls[0].header("x-q"), Some("1"));
    assert_eq!(calls[0].body, b"ping");
    assert_eq!(calls[0].timeout, Duration::from_millis(500));
}

#[test]
fn proxy_grpc_call_reaches_known_clusters_and_unknown_ones_are_parse_failure() {
    let mut proxy = proxy(
        "request_headers: grpc_call nowhere svc m msg 100; grpc_call @bad svc m msg 100; \
         grpc_call upstream-svc pkg.Svc Method hello 300\n\
         grpc_receive: get_buffer GRPC_CALL_MESSAGE 0 100",
    );
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Message(b"resp".to_vec()));
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    // Envoy (and spec v0.2.1) answer PARSE_FAILURE: the name is first parsed as a GrpcService.
    assert_eq!(
        answer(
            logs,
            r#"proxy_grpc_call("nowhere", "svc", "m", "msg", 100)"#
        ),
        "PARSE_FAILURE"
    );
    assert_eq!(
        answer(logs, r#"proxy_grpc_call(@bad, "svc", "m", "msg", 100)"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(
            logs,
            r#"proxy_grpc_call("upstream-svc", "pkg.Svc", "Method", "hello", 300)"#
        ),
        "OK token=5"
    );
    assert!(logged(
        logs,
        "probe on_grpc_receive context=1 token=5 size=4"
    ));
    assert_eq!(
        answer(logs, "proxy_get_buffer_bytes(GRPC_CALL_MESSAGE, 0, 100)"),
        r#"OK "resp""#
    );
    let calls = proxy.grpc_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].service.as_str(), calls[0].method.as_str()),
        ("pkg.Svc", "Method")
    );
    assert_eq!(calls[0].message, b"hello");
    assert_eq!(calls[0].timeout, Duration::from_millis(300));
}

#[test]
fn proxy_grpc_stream_opens_streams_with_stream_tokens() {
    let mut proxy = proxy(
        "request_headers: grpc_stream nowhere s m; grpc_stream upstream-svc s m; grpc_send last hello",
    );
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Message(b"r1".to_vec()));
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(
        answer(logs, r#"proxy_grpc_stream("nowhere", "s", "m")"#),
        "PARSE_FAILURE"
    );
    // Envoy's stream tokens are 6, 10, 14… (calls 5, 9…; http 4, 8…).
    assert_eq!(
        answer(logs, r#"proxy_grpc_stream("upstream-svc", "s", "m")"#),
        "OK token=6"
    );
    let initial = position(
        logs,
        "probe on_grpc_receive_initial_metadata context=1 token=6",
    );
    let message = position(logs, "probe on_grpc_receive context=1 token=6 size=2");
    assert!(initial < message, "initial metadata comes first");
}

#[test]
fn proxy_grpc_send_sends_on_open_streams_only() {
    let mut proxy = proxy(
        "request_headers: grpc_stream upstream-svc s m; grpc_send last hello; grpc_send 10 x; grpc_send 4 x; \
         grpc_send last @bad",
    );
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Message(b"r".to_vec()));
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(answer(logs, r#"proxy_grpc_send(6, "hello")"#), "OK");
    assert_eq!(
        answer(logs, r#"proxy_grpc_send(10, "x")"#),
        "NOT_FOUND",
        "a stream token never opened"
    );
    assert_eq!(
        answer(logs, r#"proxy_grpc_send(4, "x")"#),
        "BAD_ARGUMENT",
        "not a stream token"
    );
    assert_eq!(
        answer(logs, "proxy_grpc_send(6, @bad)"),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(proxy.grpc_calls().len(), 1, "one message sent");
    assert_eq!(proxy.grpc_calls()[0].message, b"hello");
}

#[test]
fn proxy_grpc_cancel_cancels_calls_without_a_callback() {
    let mut proxy = proxy(
        "request_headers: grpc_call upstream-svc s m msg 100; grpc_cancel last; grpc_cancel last; \
         grpc_cancel 9; grpc_cancel 4",
    );
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Message(b"r".to_vec()));
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(answers(logs, "proxy_grpc_cancel(5)"), ["OK", "NOT_FOUND"]);
    assert_eq!(answer(logs, "proxy_grpc_cancel(9)"), "NOT_FOUND");
    assert_eq!(answer(logs, "proxy_grpc_cancel(4)"), "BAD_ARGUMENT");
    assert!(
        !lines(logs).iter().any(|l| l.starts_with("probe on_grpc")),
        "no callback for a cancelled call"
    );
}

#[test]
fn proxy_grpc_close_closes_calls_and_streams_and_rejects_other_tokens() {
    let mut proxy = proxy(
        "request_headers: grpc_stream upstream-svc s m; grpc_close last; grpc_call upstream-svc s m msg 100; \
         grpc_close last; grpc_close last; grpc_close 13; grpc_close 8",
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(answer(logs, "proxy_grpc_close(6)"), "OK");
    assert_eq!(answers(logs, "proxy_grpc_close(5)"), ["OK", "NOT_FOUND"]);
    assert_eq!(answer(logs, "proxy_grpc_close(13)"), "NOT_FOUND");
    assert_eq!(answer(logs, "proxy_grpc_close(8)"), "BAD_ARGUMENT");
}

#[test]
fn proxy_get_status_reports_the_grpc_status_in_on_grpc_close() {
    let mut proxy = proxy(
        "request_headers: get_status; grpc_call upstream-svc s m msg 100\n\
         grpc_close: get_status; badret get_status",
    );
    proxy.on_grpc_call(CLUSTER, |_| GrpcReply::Status(14, "down".into()));
    let out = proxy.send(Request::get("/"));
    assert!(logged(
        &out.logs,
        "probe on_grpc_close context=1 token=5 code=14"
    ));
    assert_eq!(
        answers(&out.logs, "proxy_get_status()"),
        [r#"OK 0 """#, r#"OK 14 "down""#, "INVALID_MEMORY_ACCESS"]
    );
}

// ----- metrics --------------------------------------------------------------

#[test]
fn proxy_define_metric_gives_ids_with_the_type_in_the_low_two_bits() {
    let mut proxy = proxy(
        "request_headers: define_metric COUNTER c1; define_metric GAUGE g1; define_metric HISTOGRAM h1; \
         define_metric 7 bad; define_metric COUNTER @bad; badret define_metric COUNTER c2",
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    for (call, bits) in [
        (r#"proxy_define_metric(COUNTER, "c1")"#, 0),
        (r#"proxy_define_metric(GAUGE, "g1")"#, 1),
        (r#"proxy_define_metric(HISTOGRAM, "h1")"#, 2),
    ] {
        let a = answer(logs, call);
        assert!(
            a.starts_with("OK id=") && a.ends_with(&format!(" type_bits={bits}")),
            "{call} = {a}"
        );
    }
    assert_eq!(
        answer(logs, r#"proxy_define_metric(7, "bad")"#),
        "BAD_ARGUMENT"
    );
    assert_eq!(
        answer(logs, "proxy_define_metric(COUNTER, @bad)"),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(logs, r#"proxy_define_metric(COUNTER, "c2")"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(proxy.metric("c1"), Some(0));
}

#[test]
fn proxy_increment_metric_adds_positive_deltas_to_counters_and_any_delta_to_gauges() {
    let mut proxy = proxy(
        "request_headers: define_metric COUNTER c; increment_metric c 5; increment_metric c -1; \
         increment_metric c 0; increment_metric 1000 1; define_metric GAUGE g; increment_metric g 3; \
         increment_metric g -1; define_metric HISTOGRAM h; increment_metric h 1",
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    assert_eq!(answer(logs, "proxy_increment_metric(c, 5)"), "OK");
    assert_eq!(
        answer(logs, "proxy_increment_metric(c, -1)"),
        "BAD_ARGUMENT"
    );
    assert_eq!(answer(logs, "proxy_increment_metric(c, 0)"), "BAD_ARGUMENT");
    assert_eq!(answer(logs, "proxy_increment_metric(1000, 1)"), "NOT_FOUND");
    assert_eq!(answer(logs, "proxy_increment_metric(g, 3)"), "OK");
    assert_eq!(answer(logs, "proxy_increment_metric(g, -1)"), "OK");
    assert_eq!(answer(logs, "proxy_increment_metric(h, 1)"), "BAD_ARGUMENT");
    assert_eq!(proxy.metric("c"), Some(5));
    assert_eq!(proxy.metric("g"), Some(2));
}

#[test]
fn proxy_record_metric_adds_to_counters_sets_gauges_and_samples_histograms() {
    let mut proxy = proxy(
        "request_headers: define_metric COUNTER c; record_metric c 3; record_metric c 4; define_metric GAUGE g; \
         record_metric g 10; record_metric g 7; define_metric HISTOGRAM h; record_metric h 250; \
         record_metric 1000 1",
    );
    let out = proxy.send(Request::get("/"));
    let logs = &out.logs;
    for call in [
        "proxy_record_metric(c, 3)",
        "proxy_record_metric(c, 4)",
        "proxy_record_metric(g, 10)",
        "proxy_record_metric(g, 7)",
        "proxy_record_metric(h, 250)",
    ] {
        assert_eq!(answer(logs, call), "OK", "{call}");
    }
    assert_eq!(answer(logs, "proxy_record_metric(1000, 1)"), "NOT_FOUND");
    assert_eq!(proxy.metric("c"), Some(7), "record on a counter adds");
    assert_eq!(proxy.metric("g"), Some(7), "record on a gauge sets");
    assert_eq!(proxy.metric("h"), Some(1), "one histogram sample");
}

#[test]
fn proxy_get_metric_reads_counters_and_gauges_but_not_histograms() {
    let mut proxy = proxy(
        "request_headers: define_metric COUNTER c; increment_metric c 2; get_metric c; \
         define_metric HISTOGRAM h; get_metric h; get_metric 1000; badret get_metric c",
    );
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answers(&out.logs, "proxy_get_metric(c)"),
        ["OK 2", "INVALID_MEMORY_ACCESS"]
    );
    assert_eq!(answer(&out.logs, "proxy_get_metric(h)"), "BAD_ARGUMENT");
    assert_eq!(answer(&out.logs, "proxy_get_metric(1000)"), "NOT_FOUND");
}

// ----- foreign functions ---------------------------------------------------------

#[test]
fn proxy_call_foreign_function_knows_no_functions_and_rejects_bad_pointers() {
    let mut proxy = proxy("request_headers: foreign compress abc; foreign @bad x; foreign f @bad");
    let out = proxy.send(Request::get("/"));
    assert_eq!(
        answer(
            &out.logs,
            r#"proxy_call_foreign_function("compress", "abc")"#
        ),
        "NOT_FOUND"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_call_foreign_function(@bad, "x")"#),
        "INVALID_MEMORY_ACCESS"
    );
    assert_eq!(
        answer(&out.logs, r#"proxy_call_foreign_function("f", @bad)"#),
        "INVALID_MEMORY_ACCESS"
    );
}
