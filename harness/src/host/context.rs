//! Context and stream control: `proxy_set_effective_context`, `proxy_done`,
//! `proxy_continue_stream`, `proxy_close_stream`, `proxy_send_local_response`.
//! Stream actions are deferred until the callback returns, as Envoy defers them.

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::{ContextKind, Effect, HostState};
use crate::abi::{Status, StreamType};
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

/// The stream context behind the effective context, if it is one. As in
/// Envoy, stream actions asked for by a context without a stream (a root
/// context) are accepted and do nothing.
fn stream_context(caller: &Cx<'_>) -> Option<u32> {
    let host = caller.data();
    matches!(
        host.contexts.get(&host.effective_context),
        Some(ContextKind::Stream(_))
    )
    .then_some(host.effective_context)
}

/// Envoy's answers: HTTP_REQUEST / HTTP_RESPONSE resume the stream (OK),
/// DOWNSTREAM is OK (no TCP filter here), UPSTREAM is UNIMPLEMENTED, anything
/// else BAD_ARGUMENT.
fn proxy_continue_stream(mut caller: Cx<'_>, stream_type: i32) -> HostResult {
    let stream = match StreamType::from_raw(stream_type) {
        Some(s @ (StreamType::HttpRequest | StreamType::HttpResponse)) => s,
        Some(StreamType::Downstream) => return Ok(Status::Ok.code()),
        Some(StreamType::Upstream) => return Ok(Status::Unimplemented.code()),
        None => return Ok(Status::BadArgument.code()),
    };
    if let Some(context) = stream_context(&caller) {
        caller
            .data_mut()
            .effects
            .push(Effect::Continue { context, stream });
    }
    Ok(Status::Ok.code())
}

/// Envoy resets the HTTP stream for HTTP_REQUEST / HTTP_RESPONSE; every known
/// stream type answers OK, anything else BAD_ARGUMENT.
fn proxy_close_stream(mut caller: Cx<'_>, stream_type: i32) -> HostResult {
    let http = match StreamType::from_raw(stream_type) {
        Some(StreamType::HttpRequest | StreamType::HttpResponse) => true,
        Some(_) => false,
        None => return Ok(Status::BadArgument.code()),
    };
    if let (true, Some(context)) = (http, stream_context(&caller)) {
        caller.data_mut().effects.push(Effect::Close { context });
    }
    Ok(Status::Ok.code())
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
    grpc_status: i32,
) -> HostResult {
    let context = stream_context(&caller);
    let details = String::from_utf8_lossy(&or_status!(mem::read(
        &mut caller,
        details_ptr,
        details_len
    )))
    .into_owned();
    let body = or_status!(mem::read(&mut caller, body_ptr, body_len));
    let headers = or_status!(mem::read_map(&mut caller, headers_ptr, headers_len));
    if !(100..=999).contains(&status_code) {
        return Ok(Status::BadArgument.code());
    }
    // Outside a stream (a root context) Envoy accepts the call and sends nothing.
    let Some(context) = context else {
        return Ok(Status::Ok.code());
    };
    caller.data_mut().effects.push(Effect::LocalReply {
        context,
        status: status_code as u32,
        details,
        body,
        headers,
        // Envoy takes a well-known status and ignores anything else (the
        // SDKs pass -1 for "none").
        grpc_status: u32::try_from(grpc_status).ok().filter(|s| *s <= 16),
    });
    Ok(Status::Ok.code())
}
