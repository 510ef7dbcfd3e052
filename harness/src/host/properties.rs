//! `proxy_get_property`, `proxy_set_property`: Envoy's attributes (`request.*`,
//! `response.*`, `source.*`, `destination.*`, `connection.*`, `plugin_*`, `xds.node`)
//! and filter state. Strings are raw bytes, integers 8-byte little-endian,
//! booleans 1 byte, maps serialized like header maps.

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::{Exchange, HostState};
use crate::abi::{self, Status};
use crate::exchange::find_header;
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap("env", "proxy_get_property", proxy_get_property)?;
    linker.func_wrap("env", "proxy_set_property", proxy_set_property)?;
    Ok(())
}

fn proxy_get_property(
    mut caller: Cx<'_>,
    path_ptr: i32,
    path_len: i32,
    return_ptr: i32,
    return_size: i32,
) -> HostResult {
    let path = abi::split_path(&or_status!(mem::read(&mut caller, path_ptr, path_len)));
    // Envoy cannot serialize the whole filter-state map (the SDK then panics).
    if path.len() == 1 && path[0] == "filter_state" {
        return Ok(Status::SerializationFailure.code());
    }
    let Some(value) = lookup(caller.data(), &path) else {
        return Ok(Status::NotFound.code());
    };
    Ok(mem::status(mem::return_bytes(
        &mut caller,
        &value,
        return_ptr,
        return_size,
    )?))
}

/// Filter state lives with the stream; every later filter of the request reads it.
fn proxy_set_property(
    mut caller: Cx<'_>,
    path_ptr: i32,
    path_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> HostResult {
    let path = abi::split_path(&or_status!(mem::read(&mut caller, path_ptr, path_len))).join(".");
    let value = or_status!(mem::read(&mut caller, value_ptr, value_len));
    let Some(stream) = caller.data().stream() else {
        return Ok(Status::NotFound.code());
    };
    stream
        .exchange
        .borrow_mut()
        .filter_state
        .insert(path, value);
    Ok(Status::Ok.code())
}

fn int(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Resolves a property path for the effective context.
pub(crate) fn lookup(host: &HostState, path: &[String]) -> Option<Vec<u8>> {
    let first = path.first()?.as_str();
    let rest: Vec<&str> = path.iter().skip(1).map(String::as_str).collect();
    match (first, rest.as_slice()) {
        ("plugin_name", []) => return Some(host.plugin.name.clone().into_bytes()),
        ("plugin_root_id", []) => return Some(host.plugin.root_id.clone().into_bytes()),
        ("plugin_vm_id", []) => return Some(host.plugin.vm_id.clone().into_bytes()),
        // Envoy 1.40 serves the node under `xds.node`; plain `node.*` is NOT_FOUND
        // there (seen in the real-Envoy end-to-end tests).
        ("xds", ["node", rest @ ..]) => return node(host, rest),
        ("xds", ["cluster_name"]) => {
            return Some(host.process.borrow().upstream_cluster.clone().into_bytes())
        }
        _ => {}
    }
    let stream = host.stream()?;
    let exchange = stream.exchange.borrow();
    stream_property(&exchange, host, first, &rest)
}

fn node(host: &HostState, rest: &[&str]) -> Option<Vec<u8>> {
    let process = host.process.borrow();
    match rest {
        ["id"] => Some(process.node.id.clone().into_bytes()),
        ["cluster"] => Some(process.node.cluster.clone().into_bytes()),
        ["metadata", key] => process
            .node
            .metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone().into_bytes()),
        _ => None,
    }
}

fn stream_property(x: &Exchange, host: &HostState, first: &str, rest: &[&str]) -> Option<Vec<u8>> {
    let req = |name: &str| find_header(&x.request_headers, name).map(|v| v.as_bytes().to_vec());
    let path = || find_header(&x.request_headers, ":path").unwrap_or("");
    match (first, rest) {
        ("request", ["path"]) => req(":path"),
        ("request", ["url_path"]) => {
            Some(path().split('?').next().unwrap_or("").as_bytes().to_vec())
        }
        ("request", ["query"]) => Some(
            path()
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
        ),
        ("request", ["host"]) => req(":authority"),
        ("request", ["scheme"]) => req(":scheme"),
        ("request", ["method"]) => req(":method"),
        ("request", ["referer"]) => req("referer"),
        ("request", ["useragent"]) => req("user-agent"),
        ("request", ["id"]) => req("x-request-id"),
        ("request", ["protocol"]) => Some(if x.protocol.is_empty() {
            b"HTTP/1.1".to_vec()
        } else {
            x.protocol.as_bytes().to_vec()
        }),
        ("request", ["time"]) => Some(int(x.request_time_nanos)),
        ("request", ["duration"]) => {
            Some(int(host.now_nanos().saturating_sub(x.request_time_nanos)))
        }
        ("request", ["size"]) => Some(int(x.request_body_size)),
        ("request", ["total_size"]) => Some(int(
            x.request_body_size + abi::serialize_map(&x.request_headers).len() as u64
        )),
        ("request", ["headers"]) => Some(abi::serialize_map(&x.request_headers)),
        ("request", ["headers", name]) => req(name),
        ("response", ["code"]) => find_header(&x.response_headers, ":status")
            .and_then(|s| s.parse::<u64>().ok())
            .map(int),
        ("response", ["code_details"]) => Some(x.response_code_details.clone().into_bytes()),
        ("response", ["headers"]) => Some(abi::serialize_map(&x.response_headers)),
        ("response", ["headers", name]) => {
            find_header(&x.response_headers, name).map(|v| v.as_bytes().to_vec())
        }
        ("response", ["trailers"]) => Some(abi::serialize_map(&x.response_trailers)),
        ("response", ["size"]) => Some(int(x.response_body_size)),
        ("response", ["total_size"]) => Some(int(
            x.response_body_size + abi::serialize_map(&x.response_headers).len() as u64
        )),
        ("source", ["address"]) => Some(x.source.clone().into_bytes()),
        ("source", ["port"]) => port(&x.source),
        ("destination", ["address"]) => Some(x.destination.clone().into_bytes()),
        ("destination", ["port"]) => port(&x.destination),
        ("connection", rest) => connection(x, rest),
        ("filter_state", [key]) => x
            .filter_state
            .get(key.strip_prefix("wasm.").unwrap_or(key))
            .cloned(),
        (key, []) => x.filter_state.get(key).cloned(),
        _ => {
            let mut joined = first.to_string();
            for r in rest {
                joined.push('.');
                joined.push_str(r);
            }
            x.filter_state.get(&joined).cloned()
        }
    }
}

fn port(address: &str) -> Option<Vec<u8>> {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u64>().ok())
        .map(int)
}

fn connection(x: &Exchange, rest: &[&str]) -> Option<Vec<u8>> {
    let peer = x.peer.as_deref();
    match rest {
        ["id"] => Some(int(x.connection_id)),
        ["mtls"] => Some(vec![u8::from(peer.is_some())]),
        ["tls_version"] => peer.map(|_| b"TLSv1.3".to_vec()),
        // Raw PEM: Envoy 1.40 does not URL-encode it (seen in the e2e suite).
        ["peer_certificate"] => peer.map(|p| p.pem.as_bytes().to_vec()),
        ["uri_san_peer_certificate"] => peer
            .and_then(|p| p.uri_sans.first())
            .map(|s| s.as_bytes().to_vec()),
        ["dns_san_peer_certificate"] => peer
            .and_then(|p| p.dns_sans.first())
            .map(|s| s.as_bytes().to_vec()),
        ["subject_peer_certificate"] => peer.map(|p| p.subject.as_bytes().to_vec()),
        ["sha256_peer_certificate_digest"] => peer.map(|p| p.der_sha256_hex.as_bytes().to_vec()),
        _ => None,
    }
}
