//! An HTTP/1.1 client over TLS that presents a client certificate (an SVID).
//!
//! Hand-rolled on rustls so a scenario sends exactly the headers it names — a
//! forged `x-forwarded-client-cert`, a duplicate header — with nothing added
//! but `host`, `content-length` and `connection: close`. One TLS connection per
//! request keeps requests independent.

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A request as the client puts it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    pub method: String,
    pub path: String,
    /// The `host` header (HTTP/1.1 `:authority`).
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the client got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client identity and the CA it trusts for the server.
#[derive(Clone)]
pub struct MtlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl MtlsClient {
    /// `ca_pem` verifies the server (which must carry `server_name` as a DNS SAN);
    /// `cert_pem`/`key_pem` are the client certificate chain and key presented to it.
    /// Without a certificate the client connects without one (Envoy must refuse it).
    pub fn new(
        ca_pem: &str,
        client: Option<(&str, &str)>,
        server_name: &str,
    ) -> anyhow::Result<MtlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.context("CA PEM")?)
                .context("adding the CA")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert_pem, key_pem)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .context("client certificate PEM")?;
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("client key PEM")?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(MtlsClient {
            config: Arc::new(config),
            server_name: ServerName::try_from(server_name.to_string())?,
        })
    }

    /// Sends one request on a fresh connection and reads the whole response.
    pub fn send(&self, addr: SocketAddr, req: &WireRequest) -> anyhow::Result<HttpResponse> {
        self.send_with_raw_header(addr, req, None)
    }

    /// Like [`MtlsClient::send`], with one more header whose value is raw bytes
    /// (e.g. obs-text that is not UTF-8, which clients may send).
    pub fn send_with_raw_header(
        &self,
        addr: SocketAddr,
        req: &WireRequest,
        raw: Option<(&str, &[u8])>,
    ) -> anyhow::Result<HttpResponse> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(20)))?;
        let conn =
            rustls::ClientConnection::new(Arc::clone(&self.config), self.server_name.clone())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);

        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            req.method, req.path, req.authority
        );
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("content-length: {}\r\n", req.body.len()));
        }
        let mut head = head.into_bytes();
        if let Some((name, value)) = raw {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"connection: close\r\n\r\n");
        tls.write_all(&head).context("sending the request")?;
        tls.write_all(&req.body)?;
        tls.flush()?;

        // Read until the response is complete by its framing, not until the connection
        // closes: after a filter's local reply Envoy closed it only about 1 s later (its
        // delayed-close timeout), which cost a second per denied request.
        let head = req.method == "HEAD";
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = super::raw::complete_response(&raw, head, false) {
                raw.truncate(end);
                break;
            }
            match tls.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // Envoy may close without close_notify after `connection: close`.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
                Err(e) => return Err(e).context("reading the response"),
            }
        }
        parse_response(&raw)
    }
}

pub(crate) fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no complete response head in {} bytes", raw.len());
    };
    let head = std::str::from_utf8(&raw[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            bail!("truncated chunked body");
        };
        let size_text = std::str::from_utf8(&data[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk");
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_or_chunks_parse() {
        let r = parse_response(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            .unwrap();
        assert_eq!(
            (r.status, r.header("content-type"), r.body.as_slice()),
            (403, Some("application/json"), &b"{}"[..])
        );
        let r = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
