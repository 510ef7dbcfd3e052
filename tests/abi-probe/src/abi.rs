//! The raw proxy-wasm ABI v0.2.1 imports (all 39 hostcalls, exact signatures of
//! the spec) and the WASI calls the probe makes directly, plus the names the
//! probe prints for statuses and enum values.

#![allow(clippy::too_many_arguments)]

#[link(wasm_import_module = "env")]
extern "C" {
    pub fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    pub fn proxy_get_log_level(return_level: *mut u32) -> u32;
    pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    pub fn proxy_set_effective_context(context_id: u32) -> u32;
    pub fn proxy_done() -> u32;
    pub fn proxy_continue_stream(stream_type: u32) -> u32;
    pub fn proxy_close_stream(stream_type: u32) -> u32;
    pub fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    pub fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    pub fn proxy_get_buffer_status(
        buffer_type: u32,
        return_size: *mut usize,
        return_flags: *mut u32,
    ) -> u32;
    pub fn proxy_get_header_map_size(map_type: u32, return_size: *mut usize) -> u32;
    pub fn proxy_get_header_map_pairs(
        map_type: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
    pub fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    pub fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    pub fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    pub fn proxy_register_shared_queue(
        name: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub fn proxy_resolve_shared_queue(
        vm_id: *const u8,
        vm_id_size: usize,
        name: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub fn proxy_enqueue_shared_queue(queue_id: u32, value: *const u8, value_size: usize) -> u32;
    pub fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_call(
        upstream: *const u8,
        upstream_size: usize,
        service: *const u8,
        service_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_stream(
        upstream: *const u8,
        upstream_size: usize,
        service: *const u8,
        service_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        return_token: *mut u32,
    ) -> u32;
    pub fn proxy_grpc_send(token: u32, message: *const u8, message_size: usize, end: u32) -> u32;
    pub fn proxy_grpc_cancel(token: u32) -> u32;
    pub fn proxy_grpc_close(token: u32) -> u32;
    pub fn proxy_get_status(
        return_code: *mut u32,
        return_message: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub fn proxy_increment_metric(metric_id: u32, delta: i64) -> u32;
    pub fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    pub fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
    pub fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

// WASI calls made directly (the rest come through Rust's std).
#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    pub fn clock_time_get(clock_id: u32, precision: u64, return_time: *mut u64) -> i32;
    pub fn random_get(buffer: *mut u8, size: usize) -> i32;
    /// Not served by the harness: it must answer ENOSYS, never trap.
    pub fn fd_read(fd: u32, iovs: *const u8, iovs_len: usize, return_read: *mut usize) -> i32;
    pub fn sock_accept(fd: u32, flags: u32, return_fd: *mut u32) -> i32;
}

pub fn status_name(status: u32) -> String {
    match status {
        0 => "OK".into(),
        1 => "NOT_FOUND".into(),
        2 => "BAD_ARGUMENT".into(),
        3 => "SERIALIZATION_FAILURE".into(),
        4 => "PARSE_FAILURE".into(),
        6 => "INVALID_MEMORY_ACCESS".into(),
        7 => "EMPTY".into(),
        8 => "CAS_MISMATCH".into(),
        10 => "INTERNAL_FAILURE".into(),
        12 => "UNIMPLEMENTED".into(),
        n => format!("STATUS_{n}"),
    }
}

/// An enum value in the script: its ABI name or a number (e.g. 99 for a bad id).
pub struct Enum {
    pub names: &'static [&'static str],
}

pub const MAP: Enum = Enum {
    names: &[
        "HTTP_REQUEST_HEADERS",
        "HTTP_REQUEST_TRAILERS",
        "HTTP_RESPONSE_HEADERS",
        "HTTP_RESPONSE_TRAILERS",
        "GRPC_CALL_INITIAL_METADATA",
        "GRPC_CALL_TRAILING_METADATA",
        "HTTP_CALL_RESPONSE_HEADERS",
        "HTTP_CALL_RESPONSE_TRAILERS",
    ],
};

pub const BUFFER: Enum = Enum {
    names: &[
        "HTTP_REQUEST_BODY",
        "HTTP_RESPONSE_BODY",
        "DOWNSTREAM_DATA",
        "UPSTREAM_DATA",
        "HTTP_CALL_RESPONSE_BODY",
        "GRPC_CALL_MESSAGE",
        "VM_CONFIGURATION",
        "PLUGIN_CONFIGURATION",
        "FOREIGN_FUNCTION_ARGUMENTS",
    ],
};

pub const STREAM: Enum = Enum {
    names: &["HTTP_REQUEST", "HTTP_RESPONSE", "DOWNSTREAM", "UPSTREAM"],
};

pub const METRIC: Enum = Enum {
    names: &["COUNTER", "GAUGE", "HISTOGRAM"],
};

pub const LEVEL: Enum = Enum {
    names: &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"],
};

impl Enum {
    /// The value of a script token, and how the probe prints it.
    pub fn parse(&self, token: &str) -> (u32, String) {
        if let Some(i) = self.names.iter().position(|n| *n == token) {
            return (i as u32, token.to_string());
        }
        let n = token.parse::<u32>().unwrap_or(u32::MAX);
        (n, self.name(n))
    }

    pub fn name(&self, value: u32) -> String {
        match self.names.get(value as usize) {
            Some(n) => n.to_string(),
            None => value.to_string(),
        }
    }
}
