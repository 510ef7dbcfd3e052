//! Proxy-Wasm ABI v0.2.1 constants and the wire formats the host and the plugin
//! exchange (header maps, property paths).

/// `proxy_status_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl Status {
    pub fn code(self) -> i32 {
        self as u32 as i32
    }
}

/// `proxy_log_level_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

/// `proxy_buffer_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    HttpRequestBody,
    HttpResponseBody,
    DownstreamData,
    UpstreamData,
    HttpCallResponseBody,
    GrpcCallMessage,
    VmConfiguration,
    PluginConfiguration,
    ForeignFunctionArguments,
}

impl BufferType {
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcCallMessage,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::ForeignFunctionArguments,
            _ => return None,
        })
    }
}

/// `proxy_map_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    HttpRequestHeaders,
    HttpRequestTrailers,
    HttpResponseHeaders,
    HttpResponseTrailers,
    GrpcCallInitialMetadata,
    GrpcCallTrailingMetadata,
    HttpCallResponseHeaders,
    HttpCallResponseTrailers,
}

impl MapType {
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => MapType::HttpRequestHeaders,
            1 => MapType::HttpRequestTrailers,
            2 => MapType::HttpResponseHeaders,
            3 => MapType::HttpResponseTrailers,
            4 => MapType::GrpcCallInitialMetadata,
            5 => MapType::GrpcCallTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_stream_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    HttpRequest,
    HttpResponse,
    Downstream,
    Upstream,
}

impl StreamType {
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => StreamType::HttpRequest,
            1 => StreamType::HttpResponse,
            2 => StreamType::Downstream,
            3 => StreamType::Upstream,
            _ => return None,
        })
    }
}

/// `proxy_metric_type_t`. Metric ids carry it in their low 2 bits, as in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricType {
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => MetricType::Counter,
            1 => MetricType::Gauge,
            2 => MetricType::Histogram,
            _ => return None,
        })
    }
}

/// `proxy_action_t` as returned by stream callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

impl Action {
    /// Envoy treats every value other than 0 as a stop.
    pub fn from_raw(raw: i32) -> Self {
        if raw == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// gRPC status codes the host reports for failed calls.
pub mod grpc_status {
    pub const OK: u32 = 0;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const UNAVAILABLE: u32 = 14;
}

/// Serializes a header map: `u32 count`, `count × (u32 key_len, u32 value_len)`,
/// then each key and value followed by a NUL (all integers little-endian).
pub fn serialize_map(pairs: &[(String, String)]) -> Vec<u8> {
    // One encoder for filters and host alike.
    meshward_shared::local_reply::serialize_headers(pairs)
}

/// Parses a serialized header map; `None` when the bytes are malformed.
/// Values that are not UTF-8 are kept lossily, as Envoy would reject them anyway.
pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let mut sizes = Vec::with_capacity(count.min(1024));
    let mut pos = 4usize;
    for _ in 0..count {
        let k = u32::from_le_bytes(bytes.get(pos..pos + 4)?.try_into().ok()?) as usize;
        let v = u32::from_le_bytes(bytes.get(pos + 4..pos + 8)?.try_into().ok()?) as usize;
        sizes.push((k, v));
        pos += 8;
    }
    let mut pairs = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(pos..pos.checked_add(k)?)?;
        pos += k + 1;
        let value = bytes.get(pos..pos.checked_add(v)?)?;
        pos += v + 1;
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

/// Splits a property path (segments joined by NUL) into its segments.
pub fn split_path(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_round_trips_with_nul_terminators() {
        let pairs = vec![
            (":path".to_string(), "/a".to_string()),
            ("x".to_string(), String::new()),
        ];
        let bytes = serialize_map(&pairs);
        assert_eq!(&bytes[0..4], &2u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &5u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
        assert_eq!(&bytes[20..], b":path\0/a\0x\0\0");
        assert_eq!(deserialize_map(&bytes), Some(pairs));
    }

    #[test]
    fn truncated_header_map_is_rejected() {
        let bytes = serialize_map(&[("a".into(), "b".into())]);
        assert_eq!(deserialize_map(&bytes[..bytes.len() - 3]), None);
        assert_eq!(deserialize_map(&[1, 0, 0]), None);
    }

    #[test]
    fn property_path_splits_on_nul() {
        assert_eq!(split_path(b"request\0path"), vec!["request", "path"]);
        assert_eq!(split_path(b"meshward.tenant"), vec!["meshward.tenant"]);
    }
}
