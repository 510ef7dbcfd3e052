//! `proxy_get_current_time_nanoseconds`, `proxy_set_tick_period_milliseconds`.
//! Time is the process's virtual clock, moved only by the test.

use super::mem::{self, Cx, HostResult};
use super::HostState;
use crate::abi::Status;
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        proxy_get_current_time_nanoseconds,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        proxy_set_tick_period_milliseconds,
    )?;
    Ok(())
}

fn proxy_get_current_time_nanoseconds(mut caller: Cx<'_>, return_time: i32) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let now = caller.data().now_nanos();
    Ok(mem::status(mem::write_u64(&mut caller, return_time, now)))
}

/// Ticks belong to the root context; a period of 0 stops them.
fn proxy_set_tick_period_milliseconds(mut caller: Cx<'_>, period: i32) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let now = caller.data().now_nanos();
    let host = caller.data_mut();
    host.tick_period_ms = period as u32;
    host.next_tick_nanos = now.saturating_add(u64::from(period as u32) * 1_000_000);
    Ok(Status::Ok.code())
}
