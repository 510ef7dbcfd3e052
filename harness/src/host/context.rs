//! Context and stream control: `proxy_set_effective_context`, `proxy_done`,
//! `proxy_continue_stream`, `proxy_close_stream`, `proxy_send_local_response`.
//! Stream actions are deferred until the callback returns, as Envoy defers them.

use super::mem::{self, Cx, HostResult};
use super::{ContextKind, Effect, HostState};
use crate::abi::{self, Status, StreamType};
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        proxy_set_effective_context,
    )?;
    linker.func_wrap("env", "proxy_done", proxy_done)?;
    linker.func_wrap("env", "proxy_continue_stream", proxy_continue_stream)?;
    linker.func_wrap("env", "proxy_close_stream", proxy_close_stream)?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        proxy_send_local_response,
    )?;
    Ok(())
}

fn proxy_set_effective_context(mut caller: Cx<'_>, context_id: i32) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let host = caller.data_mut();
    if !host.contexts.contains_key(&(context_id as u32)) {
        return Ok(Status::BadArgument.code());
    }
    host.effective_context = context_id as u32;
    Ok(Status::Ok.code())
}

/// Finishes a context whose `proxy_on_done` answered false.
fn proxy_done(mut caller: Cx<'_>) -> HostResult {
    let host = caller.data_mut();
    let context = host.effective_context;
    if !host.awaiting_done.contains(&context) {
        return Ok(Status::NotFound.code());
    }
    host.effects.push(Effect::Done { context });
    Ok(Status::Ok.code())
}

/// The HTTP stream types of the effective context, or the status to return.
fn http_stream(caller: &Cx<'_>, stream_type: i32) -> Result<(u32, StreamType), Status> {
    let host = caller.data();
    if !matches!(
        host.contexts.get(&host.effective_context),
        Some(ContextKind::Stream(_))
    ) {
        return Err(Status::NotFound);
    }
    match StreamType::from_raw(stream_type) {
        Some(s @ (StreamType::HttpRequest | StreamType::HttpResponse)) => {
            Ok((host.effective_context, s))
        }
        _ => Err(Status::BadArgument),
    }
}

fn proxy_continue_stream(mut caller: Cx<'_>, stream_type: i32) -> HostResult {
    match http_stream(&caller, stream_type) {
        Ok((context, stream)) => {
            caller
                .data_mut()
                .effects
                .push(Effect::Continue { context, stream });
            Ok(Status::Ok.code())
        }
        Err(status) => Ok(status.code()),
    }
}

fn proxy_close_stream(mut caller: Cx<'_>, stream_type: i32) -> HostResult {
    match http_stream(&caller, stream_type) {
        Ok((context, _)) => {
            caller.data_mut().effects.push(Effect::Close { context });
            Ok(Status::Ok.code())
        }
        Err(status) => Ok(status.code()),
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut caller: Cx<'_>,
    status_code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    _grpc_status: i32,
) -> HostResult {
    let host = caller.data();
    let context = host.effective_context;
    if !matches!(host.contexts.get(&context), Some(ContextKind::Stream(_))) {
        return Ok(Status::NotFound.code());
    }
    let details = match mem::read(&mut caller, details_ptr, details_len) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(s) => return Ok(s.code()),
    };
    let body = match mem::read(&mut caller, body_ptr, body_len) {
        Ok(b) => b,
        Err(s) => return Ok(s.code()),
    };
    let headers = match mem::read(&mut caller, headers_ptr, headers_len) {
        Ok(b) => match abi::deserialize_map(&b) {
            Some(h) => h,
            None => return Ok(Status::ParseFailure.code()),
        },
        Err(s) => return Ok(s.code()),
    };
    if !(100..=999).contains(&status_code) {
        return Ok(Status::BadArgument.code());
    }
    caller.data_mut().effects.push(Effect::LocalReply {
        context,
        status: status_code as u32,
        details,
        body,
        headers,
    });
    Ok(Status::Ok.code())
}
