//! `proxy_call_foreign_function`. The harness registers no foreign functions,
//! like an Envoy built without the optional ones: every name is NOT_FOUND.

use super::mem::{self, Cx, HostResult};
use super::HostState;
use crate::abi::Status;
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        proxy_call_foreign_function,
    )?;
    Ok(())
}

fn proxy_call_foreign_function(
    mut caller: Cx<'_>,
    name_ptr: i32,
    name_len: i32,
    args_ptr: i32,
    args_len: i32,
    _return_ptr: i32,
    _return_size: i32,
) -> HostResult {
    if let Err(s) = mem::read_string(&mut caller, name_ptr, name_len) {
        return Ok(s.code());
    }
    if let Err(s) = mem::read(&mut caller, args_ptr, args_len) {
        return Ok(s.code());
    }
    Ok(Status::NotFound.code())
}
