//! CRS's test backend, albedo, as a real HTTP/1.1 upstream on loopback: every request
//! is answered by the harness's model of it (`meshward_harness::ftw::albedo`), the same
//! one the harness's go-ftw runner puts behind the WAF — so `/reflect` (the response
//! tests, RESPONSE-95x) sends back the status, headers and body the request asks for.

use super::echo::read_request;
use super::loopback::Loopback;
use meshward_harness::ftw::albedo::{Albedo, Reply, Spec};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `Date` albedo sends: the harness's virtual clock starts at 2026-01-01T00:00:00Z,
/// so both runs get the same response bytes.
pub const DATE: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// The albedo upstream; stops when dropped.
pub struct AlbedoServer {
    server: Loopback,
    albedo: Arc<Mutex<Albedo>>,
}

impl AlbedoServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub fn start() -> anyhow::Result<AlbedoServer> {
        let albedo = Arc::new(Mutex::new(Albedo::new(DATE)));
        let shared = Arc::clone(&albedo);
        let server = Loopback::start("albedo", move |stream| {
            let _ = serve(stream, &shared);
        })?;
        Ok(AlbedoServer { server, albedo })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Answers every request with `spec` until called again (`None`: albedo's endpoints).
    pub fn set_stage_response(&self, spec: Option<Spec>) {
        if let Ok(mut albedo) = self.albedo.lock() {
            albedo.set_stage_response(spec);
        }
    }
}

fn serve(stream: TcpStream, albedo: &Mutex<Albedo>) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some((request, close)) = read_request(&mut reader)? {
        let reply = albedo
            .lock()
            .map_err(|_| anyhow::anyhow!("albedo state poisoned"))?
            .answer(&request.method, &request.path, &request.body);
        writer.write_all(&encode(&reply, request.method == "HEAD", close))?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// The reply as Go's server writes it: a body longer than Go's 2048-byte buffer has no
/// `Content-Length` and goes out chunked. (Envoy writes its own reason phrase downstream.)
fn encode(reply: &Reply, head: bool, close: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} Albedo\r\n", reply.status).into_bytes();
    for (name, value) in &reply.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let body_allowed =
        !head && !(100..200).contains(&reply.status) && !matches!(reply.status, 204 | 304);
    let sized = reply
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    let chunked = body_allowed && !sized;
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !body_allowed {
        return out;
    }
    if chunked {
        if !reply.body.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", reply.body.len()).as_bytes());
            out.extend_from_slice(&reply.body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(&reply.body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_goes_out_chunked_and_a_short_one_with_its_length() {
        let albedo = Albedo::new(DATE);
        let short = albedo.reflect(&Spec {
            status: 201,
            body: b"hi".to_vec(),
            ..Default::default()
        });
        let text = String::from_utf8(encode(&short, false, false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 201 "), "{text}");
        assert!(text.contains("Content-Length: 2\r\n") && text.ends_with("\r\n\r\nhi"));
        let long = albedo.reflect(&Spec {
            body: vec![b'x'; 3000],
            ..Default::default()
        });
        let wire = encode(&long, false, true);
        let parsed = super::super::client::parse_response(&wire).unwrap();
        assert_eq!(parsed.header("transfer-encoding"), Some("chunked"));
        assert_eq!(parsed.body.len(), 3000);
        let head = encode(&long, true, false);
        assert!(head.ends_with(b"\r\n\r\n") && !head.windows(3).any(|w| w == b"xxx"));
    }
}
