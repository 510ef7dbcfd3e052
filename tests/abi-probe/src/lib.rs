//! meshward-abi-probe: a test-only proxy-wasm filter that proves the harness.
//!
//! It declares the raw ABI v0.2.1 imports itself (no SDK), follows a script
//! given as its configuration (see [`script`]), calls hostcalls with valid and
//! invalid arguments, and logs each answer as one line
//! (`probe proxy_get_header_map_value(HTTP_REQUEST_HEADERS, "x-missing") = NOT_FOUND`)
//! so tests assert on what the host said. Every callback also logs a trace line
//! (`probe on_request_headers context=2 headers=7 end=1`).
//!
//! Scripts: `vm_start:` lines come from the VM configuration (read in
//! `proxy_on_vm_start`), all others from the plugin configuration (plain text,
//! or JSON with the script in `"script"`).

// Wasm only: it imports the proxy-wasm ABI, which a native build cannot link.
#![cfg(target_arch = "wasm32")]

mod abi;
mod probe;
mod script;

use probe::{log, Probe, ALLOCATIONS};
use script::Script;
use std::cell::RefCell;

thread_local! {
    static PROBE: RefCell<Probe> = RefCell::new(Probe::default());
}

fn with<R>(f: impl FnOnce(&mut Probe) -> R) -> R {
    PROBE.with(|p| f(&mut p.borrow_mut()))
}

/// Reads a configuration buffer (VM_CONFIGURATION = 6, PLUGIN_CONFIGURATION = 7).
fn configuration(kind: u32, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: return slots are live locals.
    let status = unsafe { abi::proxy_get_buffer_bytes(kind, 0, size, &mut ptr, &mut len) };
    if status != 0 || ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated `len` bytes with proxy_on_memory_allocate.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    ALLOCATIONS.with(|a| a.set(a.get() + 1));
    let mut buffer = Vec::<u8>::with_capacity(size);
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context: u32, parent: u32) {
    log(&format!(
        "probe on_context_create context={context} parent={parent}"
    ));
    with(|p| {
        if parent == 0 {
            p.root = context;
        } else {
            p.run("context_create", context, 0);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context: u32, size: usize) -> u32 {
    log(&format!("probe on_vm_start context={context} size={size}"));
    let script = Script::parse(&configuration(6, size));
    with(|p| {
        p.script = script;
        p.run("vm_start", context, 1)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context: u32, size: usize) -> u32 {
    log(&format!("probe on_configure context={context} size={size}"));
    let script = Script::parse(&configuration(7, size));
    with(|p| {
        p.script.extend(script);
        p.run("configure", context, 1)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, headers: u32, end: u32) -> u32 {
    log(&format!(
        "probe on_request_headers context={context} headers={headers} end={end}"
    ));
    with(|p| {
        p.save_headers(context);
        p.run("request_headers", context, 0)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context: u32, size: u32, end: u32) -> u32 {
    log(&format!(
        "probe on_request_body context={context} size={size} end={end}"
    ));
    with(|p| {
        p.end = end != 0;
        p.run("request_body", context, 0)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context: u32, trailers: u32) -> u32 {
    log(&format!(
        "probe on_request_trailers context={context} trailers={trailers}"
    ));
    with(|p| p.run("request_trailers", context, 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context: u32, headers: u32, end: u32) -> u32 {
    log(&format!(
        "probe on_response_headers context={context} headers={headers} end={end}"
    ));
    with(|p| p.run("response_headers", context, 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context: u32, size: u32, end: u32) -> u32 {
    log(&format!(
        "probe on_response_body context={context} size={size} end={end}"
    ));
    with(|p| {
        p.end = end != 0;
        p.run("response_body", context, 0)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context: u32, trailers: u32) -> u32 {
    log(&format!(
        "probe on_response_trailers context={context} trailers={trailers}"
    ));
    with(|p| p.run("response_trailers", context, 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context: u32) {
    log(&format!("probe on_log context={context}"));
    with(|p| p.run("log", context, 0));
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context: u32) -> u32 {
    log(&format!("probe on_done context={context}"));
    with(|p| p.run("done", context, 1))
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    log(&format!("probe on_delete context={context}"));
    with(|p| {
        p.run("delete", context, 0);
        p.seen_headers.remove(&context);
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context: u32) {
    log(&format!("probe on_tick context={context}"));
    with(|p| p.run("tick", context, 0));
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(context: u32, queue: u32) {
    log(&format!(
        "probe on_queue_ready context={context} queue={queue}"
    ));
    with(|p| {
        p.last_queue = queue;
        p.run("queue_ready", context, 0)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context: u32,
    token: u32,
    headers: u32,
    body: u32,
    trailers: u32,
) {
    log(&format!(
        "probe on_http_call_response context={context} token={token} headers={headers} body={body} trailers={trailers}"
    ));
    with(|p| {
        p.current_token = token;
        p.run("http_call_response", context, 0)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_initial_metadata(context: u32, token: u32, n: u32) {
    log(&format!(
        "probe on_grpc_receive_initial_metadata context={context} token={token} elements={n}"
    ));
    with(|p| {
        p.current_token = token;
        p.run("grpc_initial_metadata", context, 0)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(context: u32, token: u32, size: u32) {
    log(&format!(
        "probe on_grpc_receive context={context} token={token} size={size}"
    ));
    with(|p| {
        p.current_token = token;
        p.run("grpc_receive", context, 0)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(context: u32, token: u32, n: u32) {
    log(&format!(
        "probe on_grpc_receive_trailing_metadata context={context} token={token} elements={n}"
    ));
    with(|p| {
        p.current_token = token;
        p.run("grpc_trailing_metadata", context, 0)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(context: u32, token: u32, code: u32) {
    log(&format!(
        "probe on_grpc_close context={context} token={token} code={code}"
    ));
    with(|p| {
        p.current_token = token;
        p.run("grpc_close", context, 0)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_foreign_function(context: u32, function: u32, size: u32) {
    log(&format!(
        "probe on_foreign_function context={context} function={function} size={size}"
    ));
    with(|p| p.run("foreign_function", context, 0));
}
