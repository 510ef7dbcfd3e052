//! The header-map hostcalls: size, pairs, set pairs, get / add / replace / remove
//! one value. Envoy stores names in lower case.
//!
//! Once a headers callback has returned Continue that map is gone for the filter:
//! single-value reads and mutations answer BAD_ARGUMENT and pair reads answer an
//! empty map. In `proxy_on_log` the maps are readable again (ARCHITECTURE §4).

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::{Access, HostState};
use crate::abi::{self, MapType, Status};
use crate::exchange::Headers;
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        proxy_get_header_map_size,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        proxy_add_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        proxy_replace_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        proxy_remove_header_map_value,
    )?;
    Ok(())
}

/// Runs `f` on the map if the effective context may access it with `need`.
fn with_map<R>(
    host: &mut HostState,
    kind: MapType,
    need: Access,
    f: impl FnOnce(&mut Headers) -> R,
) -> Option<R> {
    let allowed = |have: Access| match need {
        Access::ReadWrite => have == Access::ReadWrite,
        _ => have != Access::None,
    };
    match kind {
        MapType::HttpCallResponseHeaders
        | MapType::HttpCallResponseTrailers
        | MapType::GrpcCallInitialMetadata
        | MapType::GrpcCallTrailingMetadata => {
            let scope = host.call_scope.as_mut()?;
            let map = match kind {
                MapType::HttpCallResponseHeaders => &mut scope.headers,
                MapType::HttpCallResponseTrailers => &mut scope.trailers,
                MapType::GrpcCallInitialMetadata => &mut scope.grpc_initial_metadata,
                _ => &mut scope.grpc_trailing_metadata,
            };
            Some(f(map))
        }
        _ => {
            let stream = host.stream()?;
            let have = match kind {
                MapType::HttpRequestHeaders => stream.access.request_headers,
                MapType::HttpRequestTrailers => stream.access.request_trailers,
                MapType::HttpResponseHeaders => stream.access.response_headers,
                _ => stream.access.response_trailers,
            };
            if !allowed(have) {
                return None;
            }
            let mut exchange = stream.exchange.borrow_mut();
            let map = match kind {
                MapType::HttpRequestHeaders => &mut exchange.request_headers,
                MapType::HttpRequestTrailers => &mut exchange.request_trailers,
                MapType::HttpResponseHeaders => &mut exchange.response_headers,
                _ => &mut exchange.response_trailers,
            };
            Some(f(map))
        }
    }
}

fn proxy_get_header_map_size(mut caller: Cx<'_>, kind: i32, return_size: i32) -> HostResult {
    let Some(kind) = MapType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    // Unlike the pairs, the size of a map that is not available is BAD_ARGUMENT (Envoy).
    let Some(size) = with_map(caller.data_mut(), kind, Access::Read, |m| {
        abi::serialize_map(m).len()
    }) else {
        return Ok(Status::BadArgument.code());
    };
    Ok(mem::status(mem::write_u32(
        &mut caller,
        return_size,
        size as u32,
    )))
}

fn proxy_get_header_map_pairs(
    mut caller: Cx<'_>,
    kind: i32,
    return_ptr: i32,
    return_size: i32,
) -> HostResult {
    let Some(kind) = MapType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let pairs = with_map(caller.data_mut(), kind, Access::Read, |m| m.clone()).unwrap_or_default();
    let bytes = if pairs.is_empty() {
        Vec::new()
    } else {
        abi::serialize_map(&pairs)
    };
    Ok(mem::status(mem::return_bytes(
        &mut caller,
        &bytes,
        return_ptr,
        return_size,
    )?))
}

fn proxy_set_header_map_pairs(mut caller: Cx<'_>, kind: i32, ptr: i32, len: i32) -> HostResult {
    let Some(kind) = MapType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let pairs = or_status!(mem::read_map(&mut caller, ptr, len));
    let pairs: Headers = pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let done = with_map(caller.data_mut(), kind, Access::ReadWrite, |m| *m = pairs);
    Ok(match done {
        Some(()) => Status::Ok.code(),
        None => Status::BadArgument.code(),
    })
}

fn proxy_get_header_map_value(
    mut caller: Cx<'_>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    return_ptr: i32,
    return_size: i32,
) -> HostResult {
    let Some(kind) = MapType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let key = or_status!(mem::read_string(&mut caller, key_ptr, key_len)).to_ascii_lowercase();
    let found = with_map(caller.data_mut(), kind, Access::Read, |m| {
        m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    });
    let value = match found {
        None => return Ok(Status::BadArgument.code()),
        Some(None) => return Ok(Status::NotFound.code()),
        Some(Some(v)) => v,
    };
    Ok(mem::status(mem::return_bytes(
        &mut caller,
        value.as_bytes(),
        return_ptr,
        return_size,
    )?))
}

/// Reads a key and value and applies `op` to the map with write access.
fn mutate(
    caller: &mut Cx<'_>,
    kind: i32,
    key: (i32, i32),
    value: Option<(i32, i32)>,
    op: impl FnOnce(&mut Headers, String, String),
) -> i32 {
    let Some(kind) = MapType::from_raw(kind) else {
        return Status::BadArgument.code();
    };
    let key = match mem::read_string(caller, key.0, key.1) {
        Ok(k) => k.to_ascii_lowercase(),
        Err(s) => return s.code(),
    };
    let value = match value {
        None => String::new(),
        Some((ptr, len)) => match mem::read(caller, ptr, len) {
            Ok(v) => String::from_utf8_lossy(&v).into_owned(),
            Err(s) => return s.code(),
        },
    };
    match with_map(caller.data_mut(), kind, Access::ReadWrite, |m| {
        op(m, key, value)
    }) {
        Some(()) => Status::Ok.code(),
        None => Status::BadArgument.code(),
    }
}

fn proxy_add_header_map_value(
    mut caller: Cx<'_>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> HostResult {
    Ok(mutate(
        &mut caller,
        kind,
        (key_ptr, key_len),
        Some((value_ptr, value_len)),
        |m, k, v| m.push((k, v)),
    ))
}

fn proxy_replace_header_map_value(
    mut caller: Cx<'_>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> HostResult {
    Ok(mutate(
        &mut caller,
        kind,
        (key_ptr, key_len),
        Some((value_ptr, value_len)),
        |m, k, v| {
            // Replace keeps the first position and drops the other values.
            match m.iter().position(|(name, _)| *name == k) {
                Some(i) => {
                    m[i].1 = v;
                    let mut seen = false;
                    m.retain(|(name, _)| {
                        if *name != k {
                            return true;
                        }
                        let keep = !seen;
                        seen = true;
                        keep
                    });
                }
                None => m.push((k, v)),
            }
        },
    ))
}

fn proxy_remove_header_map_value(
    mut caller: Cx<'_>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
) -> HostResult {
    Ok(mutate(
        &mut caller,
        kind,
        (key_ptr, key_len),
        None,
        |m, k, _| m.retain(|(name, _)| *name != k),
    ))
}
