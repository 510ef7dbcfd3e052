//! An HTTP/1.1 upstream on loopback that answers every request with 200 and a
//! JSON description of what it received, and keeps a record of it.

use super::loopback::Loopback;
use anyhow::{bail, Context as _};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the upstream received for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Echoed {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON document the echo server answers with.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "method": self.method,
            "path": self.path,
            "headers": self.headers.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&self.body),
        })
    }

    /// Reads back what [`Echoed::to_json`] wrote (the body as its UTF-8 text).
    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Echoed> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).context("echo body is not JSON")?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let headers = v["headers"]
            .as_array()
            .context("echo body has no headers")?
            .iter()
            .map(|pair| (text(&pair[0]), text(&pair[1])))
            .collect();
        Ok(Echoed {
            method: text(&v["method"]),
            path: text(&v["path"]),
            headers,
            body: text(&v["body"]).into_bytes(),
        })
    }
}

/// The echo server; stops when dropped.
pub struct EchoServer {
    server: Loopback,
    received: Arc<Mutex<Vec<Echoed>>>,
}

impl EchoServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub fn start() -> anyhow::Result<EchoServer> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&received);
        let server = Loopback::start("the echo server", move |stream| {
            let _ = serve(stream, &shared);
        })?;
        Ok(EchoServer { server, received })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Echoed> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many requests reached the upstream so far.
    pub fn count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or_default()
    }
}

fn serve(stream: TcpStream, received: &Mutex<Vec<Echoed>>) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some((echoed, close)) = read_request(&mut reader)? else {
            return Ok(());
        };
        let body = serde_json::to_vec(&echoed.to_json())?;
        if let Ok(mut r) = received.lock() {
            r.push(echoed);
        }
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        )?;
        writer.write_all(&body)?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// One request from the connection; `None` at a clean end of stream.
pub(crate) fn read_request(reader: &mut impl BufRead) -> anyhow::Result<Option<(Echoed, bool)>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        bail!("bad request line {line:?}");
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        // Header values may carry obs-text bytes that are not UTF-8.
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            bail!("connection closed in the headers");
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .context("bad chunk size")?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        body = vec![0; len];
        reader.read_exact(&mut body)?;
    }
    let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Ok(Some((
        Echoed {
            method,
            path,
            headers,
            body,
        },
        close,
    )))
}
