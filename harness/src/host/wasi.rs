//! The WASI preview1 imports a Rust `wasm32-wasip1` module needs. Output goes
//! to the plugin's log (stdout at info, stderr at error, as Envoy does), the
//! environment is the plugin's `vmConfig.env`, clocks are the virtual clock.
//! Everything else is linked as a stub that answers ENOSYS, never a trap.

use super::mem::{self, Cx};
use super::HostState;
use crate::abi::LogLevel;
use wasmtime::{Linker, Module, Val, ValType};

const WASI: &str = "wasi_snapshot_preview1";
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;

/// The functions served for real; the rest of a module's WASI imports get stubs.
const SERVED: &[&str] = &[
    "fd_write",
    "fd_prestat_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "random_get",
    "proc_exit",
    "sched_yield",
];

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(WASI, "fd_prestat_get", |_: Cx<'_>, _fd: i32, _ptr: i32| {
        EBADF
    })?;
    linker.func_wrap(WASI, "environ_get", environ_get)?;
    linker.func_wrap(WASI, "environ_sizes_get", environ_sizes_get)?;
    linker.func_wrap(WASI, "args_get", |_: Cx<'_>, _argv: i32, _buf: i32| {
        ESUCCESS
    })?;
    linker.func_wrap(WASI, "args_sizes_get", args_sizes_get)?;
    linker.func_wrap(WASI, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.func_wrap(WASI, "proc_exit", proc_exit)?;
    linker.func_wrap(WASI, "sched_yield", |_: Cx<'_>| ESUCCESS)?;
    Ok(())
}

/// Links an ENOSYS stub for each WASI import of `module` not served above.
pub(super) fn add_stubs(linker: &mut Linker<HostState>, module: &Module) -> anyhow::Result<()> {
    for import in module.imports() {
        if import.module() != WASI || SERVED.contains(&import.name()) {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        linker.allow_shadowing(true);
        linker.func_new(WASI, import.name(), ty.clone(), move |_, _, results| {
            for (slot, ty) in results.iter_mut().zip(ty.results()) {
                *slot = match ty {
                    ValType::I32 => Val::I32(ENOSYS),
                    ValType::I64 => Val::I64(i64::from(ENOSYS)),
                    ValType::F32 => Val::F32(0),
                    ValType::F64 => Val::F64(0),
                    _ => Val::I32(ENOSYS),
                };
            }
            Ok(())
        })?;
        linker.allow_shadowing(false);
    }
    Ok(())
}

fn fd_write(mut caller: Cx<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return EBADF,
    };
    let mut text = Vec::new();
    for i in 0..iovs_len.max(0) {
        let Ok(iov) = mem::read(&mut caller, iovs.wrapping_add(i * 8), 8) else {
            return EFAULT;
        };
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        match mem::read(&mut caller, ptr, len) {
            Ok(bytes) => text.extend_from_slice(&bytes),
            Err(_) => return EFAULT,
        }
    }
    let written = text.len() as u32;
    let message = String::from_utf8_lossy(&text).trim_end().to_string();
    if !message.is_empty() {
        caller.data().log(level, message);
    }
    match mem::write_u32(&mut caller, nwritten, written) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn environ_sizes_get(mut caller: Cx<'_>, count: i32, buf_size: i32) -> i32 {
    let env = &caller.data().plugin.environ;
    let n = env.len() as u32;
    let size = env.iter().map(|e| e.len() + 1).sum::<usize>() as u32;
    match mem::write_u32(&mut caller, count, n)
        .and_then(|_| mem::write_u32(&mut caller, buf_size, size))
    {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn environ_get(mut caller: Cx<'_>, environ: i32, buf: i32) -> i32 {
    let entries = caller.data().plugin.clone();
    let mut offset = buf;
    for (i, entry) in entries.environ.iter().enumerate() {
        let mut bytes = entry.clone();
        bytes.push(0);
        if mem::write_u32(
            &mut caller,
            environ.wrapping_add(i as i32 * 4),
            offset as u32,
        )
        .is_err()
            || mem::write(&mut caller, offset, &bytes).is_err()
        {
            return EFAULT;
        }
        offset = offset.wrapping_add(bytes.len() as i32);
    }
    ESUCCESS
}

fn args_sizes_get(mut caller: Cx<'_>, argc: i32, buf_size: i32) -> i32 {
    match mem::write_u32(&mut caller, argc, 0)
        .and_then(|_| mem::write_u32(&mut caller, buf_size, 0))
    {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn clock_time_get(mut caller: Cx<'_>, clock: i32, _precision: i64, time: i32) -> i32 {
    let now = {
        let process = caller.data().process.borrow();
        match clock {
            0 => process.clock.wall_nanos,
            1..=3 => process.clock.monotonic_nanos,
            _ => return EINVAL,
        }
    };
    match mem::write_u64(&mut caller, time, now) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn random_get(mut caller: Cx<'_>, buf: i32, len: i32) -> i32 {
    let mut bytes = vec![0u8; len.max(0) as usize];
    if getrandom::fill(&mut bytes).is_err() {
        return ENOSYS;
    }
    match mem::write(&mut caller, buf, &bytes) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

/// A plugin that exits has trapped: its VM is failed.
fn proc_exit(_caller: Cx<'_>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(format!(
        "plugin called proc_exit({code})"
    )))
}
