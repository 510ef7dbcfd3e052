//! The probe's state in one VM and its commands: one small wrapper per
//! hostcall, each logging one line `probe <hostcall>(<args>) = <STATUS> [value]`.

use crate::abi::{self, status_name, BUFFER, LEVEL, MAP, METRIC, STREAM};
use crate::script::{escape, Command, Script};
use std::cell::Cell;
use std::collections::HashMap;

/// A pointer no module memory reaches: the host must answer INVALID_MEMORY_ACCESS.
pub const BAD_PTR: usize = 0xFFFF_FFF0;
/// Written into return slots before a call, to see whether the host wrote them.
const UNWRITTEN: usize = 0xDEAD_BEEF;

thread_local! {
    /// Calls of `proxy_on_memory_allocate` (kept apart from the probe's state,
    /// because the host allocates in the middle of a hostcall).
    pub static ALLOCATIONS: Cell<u32> = const { Cell::new(0) };
}

/// What a callback returns unless the script says otherwise.
#[derive(Default)]
pub struct Probe {
    pub script: Script,
    pub root: u32,
    /// The context of the running callback.
    pub current: u32,
    /// Return value of the running callback (action or bool).
    pub ret: u32,
    /// Request headers each stream context saw, for `when_header`.
    pub seen_headers: HashMap<u32, Vec<(String, String)>>,
    /// Which stream context made each call (token → context).
    pub call_owner: HashMap<u32, u32>,
    /// The token of the call whose callback is running.
    pub current_token: u32,
    /// `end_of_stream` of the running body callback, for `unless_end`.
    pub end: bool,
    pub last_cas: u32,
    pub last_queue: u32,
    pub last_token: u32,
    pub metrics: HashMap<String, u32>,
    /// `badret`: the next command's return pointers are bad.
    bad_return: bool,
    /// `show_alloc`: print where returned values were put and allocations made.
    show_alloc: bool,
}

/// A string argument: bytes, or `@bad` for a pointer outside memory.
struct Arg {
    bytes: Vec<u8>,
    bad: bool,
}

impl Arg {
    fn new(word: &str) -> Arg {
        Arg {
            bad: word == "@bad",
            bytes: word.as_bytes().to_vec(),
        }
    }

    fn from_bytes(bytes: Vec<u8>) -> Arg {
        Arg { bytes, bad: false }
    }

    fn ptr(&self) -> *const u8 {
        if self.bad {
            BAD_PTR as *const u8
        } else {
            self.bytes.as_ptr()
        }
    }

    fn len(&self) -> usize {
        if self.bad {
            16
        } else {
            self.bytes.len()
        }
    }

    fn show(&self) -> String {
        if self.bad {
            "@bad".into()
        } else {
            escape(&self.bytes)
        }
    }
}

/// Return slots for a value the host hands back (pointer and size).
struct Ret {
    ptr: *mut u8,
    size: usize,
    bad: bool,
    allocations_before: u32,
}

impl Ret {
    fn new(bad: bool) -> Ret {
        Ret {
            ptr: UNWRITTEN as *mut u8,
            size: UNWRITTEN,
            bad,
            allocations_before: ALLOCATIONS.with(Cell::get),
        }
    }

    fn ptr_slot(&mut self) -> *mut *mut u8 {
        if self.bad {
            BAD_PTR as *mut *mut u8
        } else {
            &mut self.ptr
        }
    }

    fn size_slot(&mut self) -> *mut usize {
        if self.bad {
            BAD_PTR as *mut usize
        } else {
            &mut self.size
        }
    }

    /// The returned bytes (freed), or a note when the host left the slots alone.
    fn take(&mut self) -> Result<Vec<u8>, String> {
        if self.ptr as usize == UNWRITTEN || self.size == UNWRITTEN {
            return Err("(return slots unwritten)".into());
        }
        if self.ptr.is_null() || self.size == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: the host wrote a pointer from proxy_on_memory_allocate(size).
        let bytes = unsafe { Vec::from_raw_parts(self.ptr, self.size, self.size) };
        Ok(bytes)
    }

    fn alloc_note(&self) -> String {
        let allocations = ALLOCATIONS.with(Cell::get) - self.allocations_before;
        let ptr = if self.ptr.is_null() { "0" } else { "set" };
        format!(" [ptr={ptr} size={} allocations={allocations}]", self.size)
    }
}

/// Logs a line through `proxy_log` at INFO.
pub fn log(message: &str) {
    // SAFETY: pointer and length of a live string.
    unsafe { abi::proxy_log(2, message.as_ptr(), message.len()) };
}

fn word(cmd: &Command, i: usize) -> &str {
    cmd.get(i).map(String::as_str).unwrap_or("")
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", escape(k.as_bytes()), escape(v.as_bytes())))
        .collect();
    format!("[{}]", items.join(", "))
}

/// Serializes a header map as the ABI says.
pub fn serialize(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a serialized header map; `None` when malformed.
pub fn deserialize(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |p: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(p..p + 4)?.try_into().ok()?) as usize)
    };
    let count = u32_at(0)?;
    let mut pos = 4 + count.checked_mul(8)?;
    let mut pairs = Vec::new();
    for i in 0..count {
        let (k, v) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let key = bytes.get(pos..pos + k)?;
        pos += k + 1;
        let value = bytes.get(pos..pos + v)?;
        pos += v + 1;
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

/// `k=v` words as header pairs.
fn pairs_from(words: &[String]) -> Vec<(String, String)> {
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (w.clone(), String::new()),
        })
        .collect()
}

impl Probe {
    /// Runs the script lines of `event` in `context`; returns the callback's value.
    pub fn run(&mut self, event: &str, context: u32, default: u32) -> u32 {
        self.current = context;
        self.ret = default;
        for line in self.script.lines(event) {
            for cmd in line {
                if !self.exec(&cmd) {
                    break;
                }
            }
        }
        self.ret
    }

    /// A number argument; `root`, `self`, `caller` and `last` resolve to ids.
    fn num(&self, word: &str) -> u32 {
        match word {
            "root" => self.root,
            "self" => self.current,
            "caller" => self
                .call_owner
                .get(&self.current_token)
                .copied()
                .unwrap_or(0),
            "token" => self.current_token,
            _ => word
                .parse::<u32>()
                .or_else(|_| u32::from_str_radix(word.trim_start_matches("0x"), 16))
                .unwrap_or(0),
        }
    }

    fn metric_id(&self, word: &str) -> u32 {
        self.metrics
            .get(word)
            .copied()
            .unwrap_or_else(|| self.num(word))
    }

    fn report(&self, call: &str, args: &str, status: u32, value: &str) {
        let value = if value.is_empty() {
            String::new()
        } else {
            format!(" {value}")
        };
        log(&format!(
            "probe {call}({args}) = {}{value}",
            status_name(status)
        ));
    }

    /// Reports a call that returns bytes; `show` turns them into text.
    fn report_bytes(
        &self,
        call: &str,
        args: &str,
        status: u32,
        ret: &mut Ret,
        show: impl Fn(&[u8]) -> String,
    ) -> Option<Vec<u8>> {
        if status != 0 || ret.bad {
            self.report(call, args, status, "");
            return None;
        }
        let note = if self.show_alloc {
            ret.alloc_note()
        } else {
            String::new()
        };
        match ret.take() {
            Ok(bytes) => {
                self.report(call, args, status, &format!("{}{note}", show(&bytes)));
                Some(bytes)
            }
            Err(e) => {
                self.report(call, args, status, &e);
                None
            }
        }
    }

    /// Executes one command; false stops the rest of the line.
    pub fn exec(&mut self, cmd: &Command) -> bool {
        let name = word(cmd, 0);
        if name == "badret" {
            self.bad_return = true;
            let rest: Command = cmd[1..].to_vec();
            let go = self.exec(&rest);
            self.bad_return = false;
            return go;
        }
        match name {
            // ----- control -----
            "pause" => self.ret = 1,
            "return" => {
                self.ret = match word(cmd, 1) {
                    "false" => 0,
                    "true" => 1,
                    w => self.num(w),
                }
            }
            "trap" => {
                log("probe trapping");
                core::arch::wasm32::unreachable()
            }
            "when_header" => return self.has_header(word(cmd, 1)),
            "unless_header" => return !self.has_header(word(cmd, 1)),
            "unless_end" => return !self.end,
            "show_alloc" => self.show_alloc = true,
            "allocations" => log(&format!(
                "probe allocations = {}",
                ALLOCATIONS.with(Cell::get)
            )),
            "echo" => log(&format!("probe echo {}", cmd[1..].join(" "))),
            // ----- WASI through std and raw -----
            "stdout" => println!("{}", word(cmd, 1)),
            "stderr" => eprintln!("{}", word(cmd, 1)),
            "env" => self.env(word(cmd, 1)),
            "env_count" => log(&format!("probe env_count = {}", std::env::vars().count())),
            "clock" => self.clock(word(cmd, 1)),
            "random" => self.random(self.num(word(cmd, 1)) as usize),
            "wasi_unserved" => self.wasi_unserved(),
            // ----- hostcalls -----
            "log" => self.proxy_log(cmd),
            "get_log_level" => self.proxy_get_log_level(),
            "now" => self.proxy_get_current_time_nanoseconds(),
            "tick_period" => self.proxy_set_tick_period_milliseconds(cmd),
            "set_effective_context" => self.proxy_set_effective_context(cmd),
            "done" => self.proxy_done(),
            "continue" => self.proxy_continue_stream(cmd),
            "close" => self.proxy_close_stream(cmd),
            "local_reply" => self.proxy_send_local_response(cmd),
            "get_buffer" => self.proxy_get_buffer_bytes(cmd),
            "set_buffer" => self.proxy_set_buffer_bytes(cmd),
            "buffer_status" => self.proxy_get_buffer_status(cmd),
            "map_size" => self.proxy_get_header_map_size(cmd),
            "get_pairs" => self.proxy_get_header_map_pairs(cmd, false),
            "get_pairs_raw" => self.proxy_get_header_map_pairs(cmd, true),
            "set_pairs" => self.proxy_set_header_map_pairs(cmd, false),
            "set_pairs_raw" => self.proxy_set_header_map_pairs(cmd, true),
            "get_header" => self.proxy_get_header_map_value(cmd),
            "add_header" => self.proxy_add_header_map_value(cmd),
            "replace_header" => self.proxy_replace_header_map_value(cmd),
            "remove_header" => self.proxy_remove_header_map_value(cmd),
            "get_property" => self.proxy_get_property(cmd),
            "set_property" => self.proxy_set_property(cmd),
            "get_shared" => self.proxy_get_shared_data(cmd),
            "set_shared" => self.proxy_set_shared_data(cmd),
            "register_queue" => self.proxy_register_shared_queue(cmd),
            "resolve_queue" => self.proxy_resolve_shared_queue(cmd),
            "enqueue" => self.proxy_enqueue_shared_queue(cmd),
            "dequeue" => self.proxy_dequeue_shared_queue(cmd),
            "http_call" => self.proxy_http_call(cmd),
            "grpc_call" => self.proxy_grpc_call(cmd),
            "grpc_stream" => self.proxy_grpc_stream(cmd),
            "grpc_send" => self.proxy_grpc_send(cmd),
            "grpc_cancel" => self.proxy_grpc_cancel(cmd),
            "grpc_close" => self.proxy_grpc_close(cmd),
            "get_status" => self.proxy_get_status(),
            "define_metric" => self.proxy_define_metric(cmd),
            "increment_metric" => self.proxy_increment_metric(cmd),
            "record_metric" => self.proxy_record_metric(cmd),
            "get_metric" => self.proxy_get_metric(cmd),
            "foreign" => self.proxy_call_foreign_function(cmd),
            other => log(&format!("probe unknown command {other:?}")),
        }
        true
    }

    fn has_header(&self, name: &str) -> bool {
        self.seen_headers
            .get(&self.current)
            .is_some_and(|h| h.iter().any(|(k, _)| k == name))
    }

    /// Saves the request headers of a stream context, for `when_header`.
    pub fn save_headers(&mut self, context: u32) {
        let mut ret = Ret::new(false);
        // SAFETY: return slots are live locals.
        let status = unsafe { abi::proxy_get_header_map_pairs(0, ret.ptr_slot(), ret.size_slot()) };
        if status == 0 {
            if let Ok(bytes) = ret.take() {
                let pairs = deserialize(&bytes).unwrap_or_default();
                self.seen_headers.insert(context, pairs);
            }
        }
    }

    // ----- WASI ----------------------------------------------------------

    fn env(&self, key: &str) {
        match std::env::var(key) {
            Ok(v) => log(&format!("probe env {key} = {}", escape(v.as_bytes()))),
            Err(_) => log(&format!("probe env {key} = missing")),
        }
    }

    fn clock(&self, which: &str) {
        let id = if which == "monotonic" { 1 } else { 0 };
        let mut t = 0u64;
        // SAFETY: pointer to a live local.
        let errno = unsafe { abi::clock_time_get(id, 1, &mut t) };
        log(&format!("probe clock_time_get({id}) = {errno} {t}"));
        if id == 0 {
            let std_now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            log(&format!("probe SystemTime::now = {std_now}"));
        }
    }

    fn random(&self, size: usize) {
        let mut buf = vec![0u8; size];
        // SAFETY: buffer of `size` bytes.
        let errno = unsafe { abi::random_get(buf.as_mut_ptr(), size) };
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        log(&format!("probe random_get({size}) = {errno} {hex}"));
    }

    fn wasi_unserved(&self) {
        let mut n = 0usize;
        let mut fd = 0u32;
        // SAFETY: no iovecs; return slots are live locals.
        let read = unsafe { abi::fd_read(0, std::ptr::null(), 0, &mut n) };
        // SAFETY: return slot is a live local.
        let accept = unsafe { abi::sock_accept(3, 0, &mut fd) };
        log(&format!("probe fd_read = {read}"));
        log(&format!("probe sock_accept = {accept}"));
    }

    // ----- logging and time -------------------------------------------------

    fn proxy_log(&self, cmd: &Command) {
        let (level, shown) = LEVEL.parse(word(cmd, 1));
        let message = Arg::new(word(cmd, 2));
        // SAFETY: the probe passes what the script says, bad pointers included.
        let status = unsafe { abi::proxy_log(level, message.ptr(), message.len()) };
        self.report(
            "proxy_log",
            &format!("{shown}, {}", message.show()),
            status,
            "",
        );
    }

    fn proxy_get_log_level(&self) {
        let mut level = u32::MAX;
        let slot = if self.bad_return {
            BAD_PTR as *mut u32
        } else {
            &mut level
        };
        // SAFETY: a live local or a deliberately bad pointer.
        let status = unsafe { abi::proxy_get_log_level(slot) };
        let value = if status == 0 {
            LEVEL.name(level)
        } else {
            String::new()
        };
        self.report("proxy_get_log_level", "", status, &value);
    }

    fn proxy_get_current_time_nanoseconds(&self) {
        let mut t = 0u64;
        let slot = if self.bad_return {
            BAD_PTR as *mut u64
        } else {
            &mut t
        };
        // SAFETY: a live local or a deliberately bad pointer.
        let status = unsafe { abi::proxy_get_current_time_nanoseconds(slot) };
        let value = if status == 0 {
            t.to_string()
        } else {
            String::new()
        };
        self.report("proxy_get_current_time_nanoseconds", "", status, &value);
    }

    fn proxy_set_tick_period_milliseconds(&self, cmd: &Command) {
        let period = self.num(word(cmd, 1));
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_set_tick_period_milliseconds(period) };
        self.report(
            "proxy_set_tick_period_milliseconds",
            &period.to_string(),
            status,
            "",
        );
    }

    // ----- contexts and streams ----------------------------------------------

    fn proxy_set_effective_context(&self, cmd: &Command) {
        let id = self.num(word(cmd, 1));
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_set_effective_context(id) };
        self.report("proxy_set_effective_context", &id.to_string(), status, "");
    }

    fn proxy_done(&self) {
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_done() };
        self.report("proxy_done", "", status, "");
    }

    fn proxy_continue_stream(&self, cmd: &Command) {
        let (stream, shown) = STREAM.parse(word(cmd, 1));
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_continue_stream(stream) };
        self.report("proxy_continue_stream", &shown, status, "");
    }

    fn proxy_close_stream(&self, cmd: &Command) {
        let (stream, shown) = STREAM.parse(word(cmd, 1));
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_close_stream(stream) };
        self.report("proxy_close_stream", &shown, status, "");
    }

    /// `local_reply STATUS BODY DETAILS [k=v…]`
    fn proxy_send_local_response(&self, cmd: &Command) {
        let code = self.num(word(cmd, 1));
        let body = Arg::new(word(cmd, 2));
        let details = Arg::new(word(cmd, 3));
        let headers = Arg::from_bytes(serialize(&pairs_from(cmd.get(4..).unwrap_or(&[]))));
        // SAFETY: live buffers or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_send_local_response(
                code,
                details.ptr(),
                details.len(),
                body.ptr(),
                body.len(),
                headers.ptr(),
                headers.len(),
                -1,
            )
        };
        let args = format!("{code}, {}, {}", body.show(), details.show());
        self.report("proxy_send_local_response", &args, status, "");
    }

    // ----- buffers ---------------------------------------------------------

    fn proxy_get_buffer_bytes(&self, cmd: &Command) {
        let (kind, shown) = BUFFER.parse(word(cmd, 1));
        let (start, max) = (self.num(word(cmd, 2)), self.num(word(cmd, 3)));
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: return slots are live locals or deliberately bad.
        let status = unsafe {
            abi::proxy_get_buffer_bytes(
                kind,
                start as usize,
                max as usize,
                ret.ptr_slot(),
                ret.size_slot(),
            )
        };
        let args = format!("{shown}, {start}, {max}");
        self.report_bytes("proxy_get_buffer_bytes", &args, status, &mut ret, escape);
    }

    fn proxy_set_buffer_bytes(&self, cmd: &Command) {
        let (kind, shown) = BUFFER.parse(word(cmd, 1));
        let (start, size) = (self.num(word(cmd, 2)), self.num(word(cmd, 3)));
        let data = Arg::new(word(cmd, 4));
        // SAFETY: a live buffer or a deliberately bad pointer.
        let status = unsafe {
            abi::proxy_set_buffer_bytes(kind, start as usize, size as usize, data.ptr(), data.len())
        };
        let args = format!("{shown}, {start}, {size}, {}", data.show());
        self.report("proxy_set_buffer_bytes", &args, status, "");
    }

    fn proxy_get_buffer_status(&self, cmd: &Command) {
        let (kind, shown) = BUFFER.parse(word(cmd, 1));
        let (mut size, mut flags) = (usize::MAX, u32::MAX);
        let (size_slot, flags_slot) = if self.bad_return {
            (BAD_PTR as *mut usize, BAD_PTR as *mut u32)
        } else {
            (&mut size as *mut usize, &mut flags as *mut u32)
        };
        // SAFETY: live locals or deliberately bad pointers.
        let status = unsafe { abi::proxy_get_buffer_status(kind, size_slot, flags_slot) };
        let value = if status == 0 && !self.bad_return {
            format!("size={size}")
        } else {
            String::new()
        };
        self.report("proxy_get_buffer_status", &shown, status, &value);
    }

    // ----- header maps -------------------------------------------------------

    fn proxy_get_header_map_size(&self, cmd: &Command) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let mut size = usize::MAX;
        let slot = if self.bad_return {
            BAD_PTR as *mut usize
        } else {
            &mut size
        };
        // SAFETY: a live local or a deliberately bad pointer.
        let status = unsafe { abi::proxy_get_header_map_size(map, slot) };
        let value = if status == 0 && !self.bad_return {
            size.to_string()
        } else {
            String::new()
        };
        self.report("proxy_get_header_map_size", &shown, status, &value);
    }

    fn proxy_get_header_map_pairs(&self, cmd: &Command, raw: bool) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: return slots are live locals or deliberately bad.
        let status =
            unsafe { abi::proxy_get_header_map_pairs(map, ret.ptr_slot(), ret.size_slot()) };
        self.report_bytes(
            "proxy_get_header_map_pairs",
            &shown,
            status,
            &mut ret,
            |b| {
                if raw {
                    escape(b)
                } else {
                    match deserialize(b) {
                        Some(p) => pairs_text(&p),
                        None => format!("malformed {}", escape(b)),
                    }
                }
            },
        );
    }

    /// `set_pairs MAP k=v…`, or `set_pairs_raw MAP BYTES` for malformed maps.
    fn proxy_set_header_map_pairs(&self, cmd: &Command, raw: bool) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let data = if raw {
            Arg::new(word(cmd, 2))
        } else {
            Arg::from_bytes(serialize(&pairs_from(cmd.get(2..).unwrap_or(&[]))))
        };
        // SAFETY: a live buffer or a deliberately bad pointer.
        let status = unsafe { abi::proxy_set_header_map_pairs(map, data.ptr(), data.len()) };
        let args = if raw {
            format!("{shown}, {}", data.show())
        } else {
            format!(
                "{shown}, {}",
                pairs_text(&pairs_from(cmd.get(2..).unwrap_or(&[])))
            )
        };
        self.report("proxy_set_header_map_pairs", &args, status, "");
    }

    fn proxy_get_header_map_value(&self, cmd: &Command) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let key = Arg::new(word(cmd, 2));
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: live buffers and return slots, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_get_header_map_value(
                map,
                key.ptr(),
                key.len(),
                ret.ptr_slot(),
                ret.size_slot(),
            )
        };
        let args = format!("{shown}, {}", key.show());
        self.report_bytes(
            "proxy_get_header_map_value",
            &args,
            status,
            &mut ret,
            escape,
        );
    }

    fn proxy_add_header_map_value(&self, cmd: &Command) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let (key, value) = (Arg::new(word(cmd, 2)), Arg::new(word(cmd, 3)));
        // SAFETY: live buffers or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_add_header_map_value(map, key.ptr(), key.len(), value.ptr(), value.len())
        };
        let args = format!("{shown}, {}, {}", key.show(), value.show());
        self.report("proxy_add_header_map_value", &args, status, "");
    }

    fn proxy_replace_header_map_value(&self, cmd: &Command) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let (key, value) = (Arg::new(word(cmd, 2)), Arg::new(word(cmd, 3)));
        // SAFETY: live buffers or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_replace_header_map_value(map, key.ptr(), key.len(), value.ptr(), value.len())
        };
        let args = format!("{shown}, {}, {}", key.show(), value.show());
        self.report("proxy_replace_header_map_value", &args, status, "");
    }

    fn proxy_remove_header_map_value(&self, cmd: &Command) {
        let (map, shown) = MAP.parse(word(cmd, 1));
        let key = Arg::new(word(cmd, 2));
        // SAFETY: a live buffer or a deliberately bad pointer.
        let status = unsafe { abi::proxy_remove_header_map_value(map, key.ptr(), key.len()) };
        let args = format!("{shown}, {}", key.show());
        self.report("proxy_remove_header_map_value", &args, status, "");
    }

    // ----- properties ----------------------------------------------------------

    /// `get_property SEGMENT…`: the path is the segments joined by NUL.
    fn proxy_get_property(&self, cmd: &Command) {
        let segments = cmd.get(1..).unwrap_or(&[]);
        let path = if segments.first().map(String::as_str) == Some("@bad") {
            Arg::new("@bad")
        } else {
            Arg::from_bytes(segments.join("\0").into_bytes())
        };
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: live buffers and return slots, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_get_property(path.ptr(), path.len(), ret.ptr_slot(), ret.size_slot())
        };
        self.report_bytes("proxy_get_property", &path.show(), status, &mut ret, escape);
    }

    /// `set_property SEGMENT… VALUE`
    fn proxy_set_property(&self, cmd: &Command) {
        let n = cmd.len();
        let segments = cmd.get(1..n.saturating_sub(1)).unwrap_or(&[]);
        let path = if segments.first().map(String::as_str) == Some("@bad") {
            Arg::new("@bad")
        } else {
            Arg::from_bytes(segments.join("\0").into_bytes())
        };
        let value = Arg::new(word(cmd, n.saturating_sub(1)));
        // SAFETY: live buffers or deliberately bad pointers.
        let status =
            unsafe { abi::proxy_set_property(path.ptr(), path.len(), value.ptr(), value.len()) };
        let args = format!("{}, {}", path.show(), value.show());
        self.report("proxy_set_property", &args, status, "");
    }

    // ----- shared data and queues ------------------------------------------------

    fn proxy_get_shared_data(&mut self, cmd: &Command) {
        let key = Arg::new(word(cmd, 1));
        let mut ret = Ret::new(self.bad_return);
        let mut cas = u32::MAX;
        // SAFETY: live buffers and return slots, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_get_shared_data(
                key.ptr(),
                key.len(),
                ret.ptr_slot(),
                ret.size_slot(),
                &mut cas,
            )
        };
        if status == 0 {
            self.last_cas = cas;
        }
        self.report_bytes(
            "proxy_get_shared_data",
            &key.show(),
            status,
            &mut ret,
            |b| format!("{} cas={cas}", escape(b)),
        );
    }

    /// `set_shared KEY VALUE CAS` (CAS a number, or `last` for the last one read).
    fn proxy_set_shared_data(&self, cmd: &Command) {
        let (key, value) = (Arg::new(word(cmd, 1)), Arg::new(word(cmd, 2)));
        let cas = match word(cmd, 3) {
            "last" => self.last_cas,
            w => self.num(w),
        };
        // SAFETY: live buffers or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_set_shared_data(key.ptr(), key.len(), value.ptr(), value.len(), cas)
        };
        let args = format!("{}, {}, {cas}", key.show(), value.show());
        self.report("proxy_set_shared_data", &args, status, "");
    }

    fn proxy_register_shared_queue(&mut self, cmd: &Command) {
        let name = Arg::new(word(cmd, 1));
        let mut id = 0u32;
        let slot = if self.bad_return {
            BAD_PTR as *mut u32
        } else {
            &mut id
        };
        // SAFETY: live buffers or deliberately bad pointers.
        let status = unsafe { abi::proxy_register_shared_queue(name.ptr(), name.len(), slot) };
        if status == 0 && !self.bad_return {
            self.last_queue = id;
        }
        let value = if status == 0 && !self.bad_return {
            id.to_string()
        } else {
            String::new()
        };
        self.report("proxy_register_shared_queue", &name.show(), status, &value);
    }

    fn proxy_resolve_shared_queue(&mut self, cmd: &Command) {
        let (vm_id, name) = (Arg::new(word(cmd, 1)), Arg::new(word(cmd, 2)));
        let mut id = 0u32;
        // SAFETY: live buffers and return slot, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_resolve_shared_queue(
                vm_id.ptr(),
                vm_id.len(),
                name.ptr(),
                name.len(),
                &mut id,
            )
        };
        if status == 0 {
            self.last_queue = id;
        }
        let value = if status == 0 {
            id.to_string()
        } else {
            String::new()
        };
        let args = format!("{}, {}", vm_id.show(), name.show());
        self.report("proxy_resolve_shared_queue", &args, status, &value);
    }

    fn queue(&self, word: &str) -> u32 {
        if word == "last" {
            self.last_queue
        } else {
            self.num(word)
        }
    }

    fn proxy_enqueue_shared_queue(&self, cmd: &Command) {
        let id = self.queue(word(cmd, 1));
        let value = Arg::new(word(cmd, 2));
        // SAFETY: a live buffer or a deliberately bad pointer.
        let status = unsafe { abi::proxy_enqueue_shared_queue(id, value.ptr(), value.len()) };
        let args = format!("{id}, {}", value.show());
        self.report("proxy_enqueue_shared_queue", &args, status, "");
    }

    fn proxy_dequeue_shared_queue(&self, cmd: &Command) {
        let id = self.queue(word(cmd, 1));
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: return slots are live locals or deliberately bad.
        let status =
            unsafe { abi::proxy_dequeue_shared_queue(id, ret.ptr_slot(), ret.size_slot()) };
        self.report_bytes(
            "proxy_dequeue_shared_queue",
            &id.to_string(),
            status,
            &mut ret,
            escape,
        );
    }

    // ----- calls -------------------------------------------------------------

    fn record_call(&mut self, status: u32, token: u32) {
        if status == 0 {
            self.last_token = token;
            self.call_owner.insert(token, self.current);
        }
    }

    /// `http_call CLUSTER TIMEOUT_MS [k=v…] [body=…] [-name…]`; default headers
    /// make a valid GET / to the cluster, `-name` drops one of them.
    fn proxy_http_call(&mut self, cmd: &Command) {
        let cluster = Arg::new(word(cmd, 1));
        let timeout = self.num(word(cmd, 2));
        let mut headers = vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "/".to_string()),
            (":authority".to_string(), word(cmd, 1).to_string()),
        ];
        let mut body = Vec::new();
        for (k, v) in pairs_from(cmd.get(3..).unwrap_or(&[])) {
            if let Some(dropped) = k.strip_prefix('-') {
                headers.retain(|(name, _)| name != dropped);
            } else if k == "body" {
                body = v.into_bytes();
            } else {
                headers.retain(|(name, _)| *name != k);
                headers.push((k, v));
            }
        }
        let headers = serialize(&headers);
        let mut token = 0u32;
        // SAFETY: live buffers and return slot, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_http_call(
                cluster.ptr(),
                cluster.len(),
                headers.as_ptr(),
                headers.len(),
                body.as_ptr(),
                body.len(),
                std::ptr::null(),
                0,
                timeout,
                &mut token,
            )
        };
        self.record_call(status, token);
        let value = if status == 0 {
            format!("token={token}")
        } else {
            String::new()
        };
        let args = format!("{}, {timeout}", cluster.show());
        self.report("proxy_http_call", &args, status, &value);
    }

    /// `grpc_call CLUSTER SERVICE METHOD MESSAGE TIMEOUT_MS`
    fn proxy_grpc_call(&mut self, cmd: &Command) {
        let cluster = Arg::new(word(cmd, 1));
        let (service, method) = (Arg::new(word(cmd, 2)), Arg::new(word(cmd, 3)));
        let message = Arg::new(word(cmd, 4));
        let timeout = self.num(word(cmd, 5));
        let mut token = 0u32;
        // SAFETY: live buffers and return slot, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_grpc_call(
                cluster.ptr(),
                cluster.len(),
                service.ptr(),
                service.len(),
                method.ptr(),
                method.len(),
                std::ptr::null(),
                0,
                message.ptr(),
                message.len(),
                timeout,
                &mut token,
            )
        };
        self.record_call(status, token);
        let value = if status == 0 {
            format!("token={token}")
        } else {
            String::new()
        };
        let args = format!(
            "{}, {}, {}, {}, {timeout}",
            cluster.show(),
            service.show(),
            method.show(),
            message.show()
        );
        self.report("proxy_grpc_call", &args, status, &value);
    }

    /// `grpc_stream CLUSTER SERVICE METHOD`
    fn proxy_grpc_stream(&mut self, cmd: &Command) {
        let cluster = Arg::new(word(cmd, 1));
        let (service, method) = (Arg::new(word(cmd, 2)), Arg::new(word(cmd, 3)));
        let mut token = 0u32;
        // SAFETY: live buffers and return slot, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_grpc_stream(
                cluster.ptr(),
                cluster.len(),
                service.ptr(),
                service.len(),
                method.ptr(),
                method.len(),
                std::ptr::null(),
                0,
                &mut token,
            )
        };
        self.record_call(status, token);
        let value = if status == 0 {
            format!("token={token}")
        } else {
            String::new()
        };
        let args = format!("{}, {}, {}", cluster.show(), service.show(), method.show());
        self.report("proxy_grpc_stream", &args, status, &value);
    }

    fn token(&self, word: &str) -> u32 {
        if word == "last" {
            self.last_token
        } else {
            self.num(word)
        }
    }

    /// `grpc_send TOKEN MESSAGE`
    fn proxy_grpc_send(&self, cmd: &Command) {
        let token = self.token(word(cmd, 1));
        let message = Arg::new(word(cmd, 2));
        // SAFETY: a live buffer or a deliberately bad pointer.
        let status = unsafe { abi::proxy_grpc_send(token, message.ptr(), message.len(), 0) };
        let args = format!("{token}, {}", message.show());
        self.report("proxy_grpc_send", &args, status, "");
    }

    fn proxy_grpc_cancel(&self, cmd: &Command) {
        let token = self.token(word(cmd, 1));
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_grpc_cancel(token) };
        self.report("proxy_grpc_cancel", &token.to_string(), status, "");
    }

    fn proxy_grpc_close(&self, cmd: &Command) {
        let token = self.token(word(cmd, 1));
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_grpc_close(token) };
        self.report("proxy_grpc_close", &token.to_string(), status, "");
    }

    fn proxy_get_status(&self) {
        let mut code = u32::MAX;
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: live return slots or deliberately bad pointers.
        let status = unsafe { abi::proxy_get_status(&mut code, ret.ptr_slot(), ret.size_slot()) };
        self.report_bytes("proxy_get_status", "", status, &mut ret, |b| {
            format!("{code} {}", escape(b))
        });
    }

    // ----- metrics -------------------------------------------------------------

    /// `define_metric TYPE NAME`; later commands may name the metric instead of its id.
    fn proxy_define_metric(&mut self, cmd: &Command) {
        let (kind, shown) = METRIC.parse(word(cmd, 1));
        let name = Arg::new(word(cmd, 2));
        let mut id = 0u32;
        let slot = if self.bad_return {
            BAD_PTR as *mut u32
        } else {
            &mut id
        };
        // SAFETY: live buffers or deliberately bad pointers.
        let status = unsafe { abi::proxy_define_metric(kind, name.ptr(), name.len(), slot) };
        if status == 0 && !self.bad_return {
            self.metrics.insert(word(cmd, 2).to_string(), id);
        }
        let value = if status == 0 && !self.bad_return {
            format!("id={id} type_bits={}", id & 3)
        } else {
            String::new()
        };
        let args = format!("{shown}, {}", name.show());
        self.report("proxy_define_metric", &args, status, &value);
    }

    fn proxy_increment_metric(&self, cmd: &Command) {
        let id = self.metric_id(word(cmd, 1));
        let delta = word(cmd, 2).parse::<i64>().unwrap_or(0);
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_increment_metric(id, delta) };
        self.report(
            "proxy_increment_metric",
            &format!("{}, {delta}", word(cmd, 1)),
            status,
            "",
        );
    }

    fn proxy_record_metric(&self, cmd: &Command) {
        let id = self.metric_id(word(cmd, 1));
        let value = word(cmd, 2).parse::<u64>().unwrap_or(0);
        // SAFETY: no pointers.
        let status = unsafe { abi::proxy_record_metric(id, value) };
        self.report(
            "proxy_record_metric",
            &format!("{}, {value}", word(cmd, 1)),
            status,
            "",
        );
    }

    fn proxy_get_metric(&self, cmd: &Command) {
        let id = self.metric_id(word(cmd, 1));
        let mut value = u64::MAX;
        let slot = if self.bad_return {
            BAD_PTR as *mut u64
        } else {
            &mut value
        };
        // SAFETY: a live local or a deliberately bad pointer.
        let status = unsafe { abi::proxy_get_metric(id, slot) };
        let shown = if status == 0 && !self.bad_return {
            value.to_string()
        } else {
            String::new()
        };
        self.report("proxy_get_metric", word(cmd, 1), status, &shown);
    }

    // ----- foreign functions ---------------------------------------------------

    fn proxy_call_foreign_function(&self, cmd: &Command) {
        let (name, args) = (Arg::new(word(cmd, 1)), Arg::new(word(cmd, 2)));
        let mut ret = Ret::new(self.bad_return);
        // SAFETY: live buffers and return slots, or deliberately bad pointers.
        let status = unsafe {
            abi::proxy_call_foreign_function(
                name.ptr(),
                name.len(),
                args.ptr(),
                args.len(),
                ret.ptr_slot(),
                ret.size_slot(),
            )
        };
        let shown = format!("{}, {}", name.show(), args.show());
        self.report_bytes(
            "proxy_call_foreign_function",
            &shown,
            status,
            &mut ret,
            escape,
        );
    }
}
