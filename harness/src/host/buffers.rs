//! `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`, `proxy_get_buffer_status`.
//! A buffer is available only while Envoy would have it: a body during its
//! callback (or while the filter holds it paused), a call's answer during its
//! callback, the configuration during `on_vm_start` / `on_configure`.

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::{Access, HostState};
use crate::abi::{BufferType, Status};
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap("env", "proxy_get_buffer_bytes", proxy_get_buffer_bytes)?;
    linker.func_wrap("env", "proxy_set_buffer_bytes", proxy_set_buffer_bytes)?;
    linker.func_wrap("env", "proxy_get_buffer_status", proxy_get_buffer_status)?;
    Ok(())
}

/// The bytes of a buffer and whether its stream has ended, if it is available now.
fn buffer(host: &HostState, kind: BufferType) -> Option<(&[u8], bool)> {
    match kind {
        BufferType::HttpRequestBody => host
            .stream()
            .filter(|s| s.access.request_body != Access::None)
            .map(|s| (s.request_body.as_slice(), s.request_end_of_stream)),
        BufferType::HttpResponseBody => host
            .stream()
            .filter(|s| s.access.response_body != Access::None)
            .map(|s| (s.response_body.as_slice(), s.response_end_of_stream)),
        BufferType::HttpCallResponseBody | BufferType::GrpcCallMessage => {
            host.call_scope.as_ref().map(|c| (c.body.as_slice(), true))
        }
        BufferType::VmConfiguration | BufferType::PluginConfiguration => host
            .configuration_buffer
            .as_ref()
            .filter(|(k, _)| *k == kind)
            .map(|(_, b)| (b.as_slice(), true)),
        BufferType::ForeignFunctionArguments => {
            host.foreign_arguments.as_deref().map(|b| (b, true))
        }
        BufferType::DownstreamData | BufferType::UpstreamData => None,
    }
}

fn proxy_get_buffer_bytes(
    mut caller: Cx<'_>,
    kind: i32,
    start: i32,
    max_size: i32,
    return_ptr: i32,
    return_size: i32,
) -> HostResult {
    let Some(kind) = BufferType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let (start, max_size) = (start as u32 as usize, max_size as u32 as usize);
    let bytes = match buffer(caller.data(), kind) {
        None => return Ok(Status::NotFound.code()),
        Some((data, _)) if start > data.len() => return Ok(Status::BadArgument.code()),
        Some((data, _)) => {
            let end = start.saturating_add(max_size).min(data.len());
            data[start..end].to_vec()
        }
    };
    Ok(mem::status(mem::return_bytes(
        &mut caller,
        &bytes,
        return_ptr,
        return_size,
    )?))
}

/// Envoy supports prepend (start 0, size 0), replace-all (start 0, size ≥ len)
/// and append (start ≥ len); anything else is BAD_ARGUMENT.
fn proxy_set_buffer_bytes(
    mut caller: Cx<'_>,
    kind: i32,
    start: i32,
    size: i32,
    data_ptr: i32,
    data_len: i32,
) -> HostResult {
    let Some(kind) = BufferType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let data = or_status!(mem::read(&mut caller, data_ptr, data_len));
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    let host = caller.data_mut();
    let body = match kind {
        BufferType::HttpRequestBody | BufferType::HttpResponseBody => match host.stream_mut() {
            Some(s) => {
                let (access, body) = if kind == BufferType::HttpRequestBody {
                    (s.access.request_body, &mut s.request_body)
                } else {
                    (s.access.response_body, &mut s.response_body)
                };
                match access {
                    Access::ReadWrite => body,
                    Access::Read => return Ok(Status::BadArgument.code()),
                    Access::None => return Ok(Status::NotFound.code()),
                }
            }
            None => return Ok(Status::NotFound.code()),
        },
        _ => {
            return Ok(if buffer(host, kind).is_some() {
                Status::BadArgument.code()
            } else {
                Status::NotFound.code()
            })
        }
    };
    if start == 0 && size == 0 {
        body.splice(0..0, data);
    } else if start == 0 && size >= body.len() {
        *body = data;
    } else if start >= body.len() {
        body.extend_from_slice(&data);
    } else {
        return Ok(Status::BadArgument.code());
    }
    Ok(Status::Ok.code())
}

fn proxy_get_buffer_status(
    mut caller: Cx<'_>,
    kind: i32,
    return_length: i32,
    return_flags: i32,
) -> HostResult {
    let Some(kind) = BufferType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let Some(length) = buffer(caller.data(), kind).map(|(d, _)| d.len()) else {
        return Ok(Status::NotFound.code());
    };
    Ok(mem::status(
        mem::write_u32(&mut caller, return_length, length as u32)
            .and_then(|_| mem::write_u32(&mut caller, return_flags, 0)),
    ))
}
