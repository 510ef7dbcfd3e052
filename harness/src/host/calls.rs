//! Calls to other clusters: `proxy_http_call`, `proxy_grpc_call`,
//! `proxy_grpc_stream`, `proxy_grpc_send`, `proxy_grpc_cancel`,
//! `proxy_grpc_close`, `proxy_get_status`. Calls belong to the root context;
//! the proxy answers them through the test's responders once the callback returns.

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::{HostState, NewCall, NewCallKind};
use crate::abi::Status;
use std::time::Duration;
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap("env", "proxy_http_call", proxy_http_call)?;
    linker.func_wrap("env", "proxy_grpc_call", proxy_grpc_call)?;
    linker.func_wrap("env", "proxy_grpc_stream", proxy_grpc_stream)?;
    linker.func_wrap("env", "proxy_grpc_send", proxy_grpc_send)?;
    linker.func_wrap("env", "proxy_grpc_cancel", proxy_grpc_cancel)?;
    linker.func_wrap("env", "proxy_grpc_close", proxy_grpc_close)?;
    linker.func_wrap("env", "proxy_get_status", proxy_get_status)?;
    Ok(())
}

/// The cluster name, or `unknown` when the process has no such cluster:
/// Envoy answers BAD_ARGUMENT for an HTTP call but PARSE_FAILURE for a gRPC
/// call or stream (the name is first parsed as a GrpcService proto; spec v0.2.1
/// says the same).
fn known_cluster(
    caller: &mut Cx<'_>,
    ptr: i32,
    len: i32,
    unknown: Status,
) -> Result<String, Status> {
    let cluster = mem::read_string(caller, ptr, len)?;
    if caller.data().process.borrow().clusters.contains(&cluster) {
        Ok(cluster)
    } else {
        Err(unknown)
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut caller: Cx<'_>,
    upstream_ptr: i32,
    upstream_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    trailers_ptr: i32,
    trailers_len: i32,
    timeout_ms: i32,
    return_token: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let call = (|| {
        let cluster = known_cluster(&mut caller, upstream_ptr, upstream_len, Status::BadArgument)?;
        let headers = mem::read_map(&mut caller, headers_ptr, headers_len)?;
        // Envoy refuses a call without :path, :method and :authority.
        if [":path", ":method", ":authority"]
            .iter()
            .any(|h| crate::exchange::find_header(&headers, h).is_none())
        {
            return Err(Status::BadArgument);
        }
        let body = mem::read(&mut caller, body_ptr, body_len)?;
        let trailers = mem::read_map(&mut caller, trailers_ptr, trailers_len)?;
        Ok::<_, Status>((cluster, headers, body, trailers))
    })();
    let (cluster, headers, body, trailers) = or_status!(call);
    let kind = NewCallKind::Http {
        headers,
        body,
        trailers,
    };
    start_call(caller, kind, cluster, timeout_ms, return_token)
}

/// Queues a call for the proxy to dispatch after the callback and writes its
/// token: HTTP and gRPC calls number their tokens separately, as Envoy does.
fn start_call(
    mut caller: Cx<'_>,
    kind: NewCallKind,
    cluster: String,
    timeout_ms: i32,
    return_token: i32,
) -> HostResult {
    let host = caller.data_mut();
    let token = match kind {
        NewCallKind::Http { .. } => host.new_http_token(),
        NewCallKind::Grpc { .. } => host.new_grpc_token(),
    };
    let root_context = host.root_context;
    host.calls_in_flight.push(token);
    host.new_calls.push(NewCall {
        token,
        root_context,
        kind,
        cluster,
        timeout: Duration::from_millis(u64::from(timeout_ms as u32)),
    });
    Ok(mem::status(mem::write_u32(
        &mut caller,
        return_token,
        token,
    )))
}

#[allow(clippy::too_many_arguments)]
fn proxy_grpc_call(
    mut caller: Cx<'_>,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    message_ptr: i32,
    message_len: i32,
    timeout_ms: i32,
    return_token: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let call = (|| {
        let cluster = known_cluster(
            &mut caller,
            upstream_ptr,
            upstream_len,
            Status::ParseFailure,
        )?;
        let service = mem::read_string(&mut caller, service_ptr, service_len)?;
        let method = mem::read_string(&mut caller, method_ptr, method_len)?;
        let initial_metadata = mem::read_map(&mut caller, metadata_ptr, metadata_len)?;
        let message = mem::read(&mut caller, message_ptr, message_len)?;
        Ok::<_, Status>((cluster, service, method, initial_metadata, message))
    })();
    let (cluster, service, method, initial_metadata, message) = or_status!(call);
    let kind = NewCallKind::Grpc {
        service,
        method,
        initial_metadata,
        message,
    };
    start_call(caller, kind, cluster, timeout_ms, return_token)
}

#[allow(clippy::too_many_arguments)]
fn proxy_grpc_stream(
    mut caller: Cx<'_>,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    return_token: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let open = (|| {
        let cluster = known_cluster(
            &mut caller,
            upstream_ptr,
            upstream_len,
            Status::ParseFailure,
        )?;
        let service = mem::read_string(&mut caller, service_ptr, service_len)?;
        let method = mem::read_string(&mut caller, method_ptr, method_len)?;
        let metadata = mem::read_map(&mut caller, metadata_ptr, metadata_len)?;
        Ok::<_, Status>((cluster, service, method, metadata))
    })();
    let (cluster, service, method, metadata) = or_status!(open);
    let host = caller.data_mut();
    let token = host.new_grpc_stream_token();
    host.grpc_streams.insert(
        token,
        (cluster, service, method, metadata, Duration::from_secs(0)),
    );
    Ok(mem::status(mem::write_u32(
        &mut caller,
        return_token,
        token,
    )))
}

/// Each message sent on a stream is answered by the cluster's responder.
fn proxy_grpc_send(
    mut caller: Cx<'_>,
    token: i32,
    message_ptr: i32,
    message_len: i32,
    _end_of_stream: i32,
) -> HostResult {
    let message = or_status!(mem::read(&mut caller, message_ptr, message_len));
    let host = caller.data_mut();
    let token = token as u32;
    // As Envoy: a token that is not a stream's is BAD_ARGUMENT, an unknown stream NOT_FOUND.
    if token & 3 != 2 {
        return Ok(Status::BadArgument.code());
    }
    let Some((cluster, service, method, metadata, timeout)) =
        host.grpc_streams.get(&token).cloned()
    else {
        return Ok(Status::NotFound.code());
    };
    let root_context = host.root_context;
    host.new_calls.push(NewCall {
        token,
        root_context,
        kind: NewCallKind::Grpc {
            service,
            method,
            initial_metadata: metadata,
            message,
        },
        cluster,
        timeout,
    });
    Ok(Status::Ok.code())
}

/// gRPC call tokens are 4n+1 and stream tokens 4n+2; Envoy answers
/// BAD_ARGUMENT for any other token (an HTTP call's, say) and NOT_FOUND for an
/// unknown call or stream.
fn is_grpc_token(token: u32) -> bool {
    matches!(token & 3, 1 | 2)
}

/// Cancels a call or stream: no callback will follow.
fn proxy_grpc_cancel(mut caller: Cx<'_>, token: i32) -> HostResult {
    let host = caller.data_mut();
    let token = token as u32;
    if !is_grpc_token(token) {
        return Ok(Status::BadArgument.code());
    }
    let before = host.calls_in_flight.len();
    host.calls_in_flight.retain(|t| *t != token);
    let was_stream = host.grpc_streams.remove(&token).is_some();
    host.new_calls.retain(|c| c.token != token);
    if was_stream || host.calls_in_flight.len() != before {
        Ok(Status::Ok.code())
    } else {
        Ok(Status::NotFound.code())
    }
}

fn proxy_grpc_close(mut caller: Cx<'_>, token: i32) -> HostResult {
    let host = caller.data_mut();
    let token = token as u32;
    if !is_grpc_token(token) {
        return Ok(Status::BadArgument.code());
    }
    if host.grpc_streams.remove(&token).is_some() {
        Ok(Status::Ok.code())
    } else if host.calls_in_flight.contains(&token) {
        host.calls_in_flight.retain(|t| *t != token);
        host.new_calls.retain(|c| c.token != token);
        Ok(Status::Ok.code())
    } else {
        Ok(Status::NotFound.code())
    }
}

/// The gRPC status of the call whose callback is running. Outside such a
/// callback Envoy answers OK with what it holds (code 0, no message); the spec
/// lists no other status than INVALID_MEMORY_ACCESS.
fn proxy_get_status(
    mut caller: Cx<'_>,
    return_code: i32,
    return_message_ptr: i32,
    return_message_size: i32,
) -> HostResult {
    let (code, message) = caller
        .data()
        .grpc_status
        .clone()
        .unwrap_or((0, String::new()));
    if let Err(s) = mem::write_u32(&mut caller, return_code, code) {
        return Ok(s.code());
    }
    Ok(mem::status(mem::return_bytes(
        &mut caller,
        message.as_bytes(),
        return_message_ptr,
        return_message_size,
    )?))
}
