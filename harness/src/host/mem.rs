//! Reading and writing the plugin's linear memory from a hostcall. Every access
//! is bounds-checked: a bad pointer is INVALID_MEMORY_ACCESS, never a host panic.

use super::HostState;
use crate::abi::Status;
use wasmtime::Caller;

pub(crate) type Cx<'a> = Caller<'a, HostState>;

/// Hostcalls return a status code; an `Err` is a trap (the allocator trapped).
pub(crate) type HostResult = wasmtime::Result<i32>;

/// The value of a `Result<_, Status>`, or an early `Ok(code)` out of the
/// hostcall: a bad pointer or argument is the guest's error, answered with its
/// status, not a trap.
macro_rules! or_status {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(status) => return Ok(status.code()),
        }
    };
}
pub(crate) use or_status;

pub(crate) fn read(caller: &mut Cx<'_>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = memory.data(&caller);
    let end = ptr.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    data.get(ptr..end)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// A serialized header map (proxy-wasm's encoding); PARSE_FAILURE if malformed.
pub(crate) fn read_map(
    caller: &mut Cx<'_>,
    ptr: i32,
    len: i32,
) -> Result<crate::exchange::Headers, Status> {
    let bytes = read(caller, ptr, len)?;
    crate::abi::deserialize_map(&bytes).ok_or(Status::ParseFailure)
}

pub(crate) fn read_string(caller: &mut Cx<'_>, ptr: i32, len: i32) -> Result<String, Status> {
    let bytes = read(caller, ptr, len)?;
    String::from_utf8(bytes).map_err(|_| Status::BadArgument)
}

pub(crate) fn write(caller: &mut Cx<'_>, ptr: i32, bytes: &[u8]) -> Result<(), Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let ptr = ptr as u32 as usize;
    let data = memory.data_mut(caller);
    let end = ptr
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    data.get_mut(ptr..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Cx<'_>, ptr: i32, value: u32) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Cx<'_>, ptr: i32, value: u64) -> Result<(), Status> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Hands bytes to the plugin: allocates with `proxy_on_memory_allocate` (or
/// `malloc`), copies, and writes the pointer and size to the return slots. An
/// empty value is written as pointer 0, size 0 without allocating, as Envoy does.
pub(crate) fn return_bytes(
    caller: &mut Cx<'_>,
    bytes: &[u8],
    return_ptr: i32,
    return_size: i32,
) -> wasmtime::Result<Result<(), Status>> {
    if bytes.is_empty() {
        return Ok(write_u32(caller, return_ptr, 0).and_then(|_| write_u32(caller, return_size, 0)));
    }
    // Taken out and put back rather than cloned: a `TypedFunc` clone is costly.
    let Some(allocate) = caller.data_mut().allocate.take() else {
        return Ok(Err(Status::InvalidMemoryAccess));
    };
    let ptr = allocate.call(&mut *caller, bytes.len() as i32);
    caller.data_mut().allocate = Some(allocate);
    let ptr = ptr?;
    if ptr == 0 {
        return Ok(Err(Status::InvalidMemoryAccess));
    }
    Ok(write(caller, ptr, bytes)
        .and_then(|_| write_u32(caller, return_ptr, ptr as u32))
        .and_then(|_| write_u32(caller, return_size, bytes.len() as u32)))
}

/// Turns a hostcall's outcome into the status code it returns.
pub(crate) fn status(result: Result<(), Status>) -> i32 {
    match result {
        Ok(()) => Status::Ok.code(),
        Err(s) => s.code(),
    }
}

/// Calls made during `_initialize` get this, as only logging and WASI are served then.
pub(crate) fn starting(caller: &Cx<'_>) -> bool {
    caller.data().starting
}
