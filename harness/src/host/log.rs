//! `proxy_log`, `proxy_get_log_level`.

use super::mem::{self, Cx, HostResult};
use super::HostState;
use crate::abi::{LogLevel, Status};
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap("env", "proxy_log", proxy_log)?;
    linker.func_wrap("env", "proxy_get_log_level", proxy_get_log_level)?;
    Ok(())
}

fn proxy_log(mut caller: Cx<'_>, level: i32, ptr: i32, len: i32) -> HostResult {
    let Some(level) = LogLevel::from_raw(level) else {
        return Ok(Status::BadArgument.code());
    };
    let message = match mem::read(&mut caller, ptr, len) {
        Ok(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(status) => return Ok(status.code()),
    };
    if level >= caller.data().log_level {
        caller.data().log(level, message);
    }
    Ok(Status::Ok.code())
}

fn proxy_get_log_level(mut caller: Cx<'_>, return_level: i32) -> HostResult {
    let level = caller.data().log_level as u32;
    Ok(mem::status(mem::write_u32(
        &mut caller,
        return_level,
        level,
    )))
}
