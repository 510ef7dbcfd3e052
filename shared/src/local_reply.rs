//! Envoy local replies with response-code details.
//!
//! The proxy-wasm Rust SDK 0.2.5 sends local replies without details, so Envoy
//! would record its default; meshward's filters name themselves in the details
//! (`meshward_tenant_denied`, …), which access logs and `response.code_details`
//! show. This calls the raw `proxy_send_local_response` hostcall; it needs no SDK.

/// The proxy-wasm header-map encoding: `u32 count`, `count × (u32 key_len,
/// u32 value_len)`, then each key and value followed by a NUL (little-endian).
pub fn serialize_headers<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> Vec<u8> {
    let size = 4 + headers
        .iter()
        .map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_ref().as_bytes());
        out.push(0);
    }
    out
}

/// The body of every meshward local reply (ARCHITECTURE §3):
/// `{"error": …, "reason": …, "request_id": …}`, `reason` only when given.
pub fn json_body(error: &str, reason: Option<&str>, request_id: &str) -> Vec<u8> {
    let mut body = serde_json::json!({ "error": error, "request_id": request_id });
    if let (Some(reason), Some(map)) = (reason, body.as_object_mut()) {
        map.insert("reason".into(), reason.into());
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Asks Envoy to answer the current stream with this status, details, headers
/// and body (the callback must then return Pause). `Err` carries the host's
/// status code; natively there is no host, and the answer is always `Err`.
pub fn send<K: AsRef<str>, V: AsRef<str>>(
    status: u32,
    details: &str,
    headers: &[(K, V)],
    body: &[u8],
) -> Result<(), u32> {
    let map = serialize_headers(headers);
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: every pointer/length pair describes a live buffer for the
        // duration of the call; the host copies them before returning.
        let rc = unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(rc)
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (status, details, body, map);
        Err(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_body_has_error_request_id_and_optional_reason() {
        assert_eq!(
            super::json_body("rate limited", None, "a\"b"),
            br#"{"error":"rate limited","request_id":"a\"b"}"#.to_vec()
        );
        assert_eq!(
            super::json_body("tenant_denied", Some("cross_tenant"), "r1"),
            br#"{"error":"tenant_denied","reason":"cross_tenant","request_id":"r1"}"#.to_vec()
        );
    }

    #[test]
    fn header_map_serialization_matches_the_abi() {
        let m = super::serialize_headers(&[("a", "bc")]);
        assert_eq!(
            m,
            [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]
        );
    }
}
