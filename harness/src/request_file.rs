//! The request files `meshward run`, `replay` and `bench` read: one JSON object
//! per request (a file, or JSON lines), readable and writable by hand.
//!
//! ```json
//! {"name": "same-tenant call", "node": {"NAMESPACE": "bank-a"},
//!  "method": "GET", "path": "/accounts/42", "authority": "transaction.bank-a.svc.cluster.local",
//!  "headers": {"x-request-id": "r-1"}, "body": "…",
//!  "peer": "spiffe://cluster.local/ns/bank-a/sa/api", "connectionId": 7,
//!  "repeat": 1, "advanceMs": 0, "expect": {"status": 200}}
//! ```
//!
//! `peer` is the caller's SPIFFE ID: the harness mints an X.509-SVID for it from
//! a test CA made at start-up and presents it on an mTLS connection;
//! `peerCertificateFile` presents a PEM file instead; neither means plaintext.
//! `node` is the node metadata of the sidecar that receives the request (its
//! namespace is the destination tenant); requests with different `node`s go to
//! different proxies. Requests are framed as an HTTP/1.1 client frames them
//! ([`Request::http1_framing`]).

use crate::certs::TestCa;
use crate::exchange::Request;
use anyhow::{bail, Context as _};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Header lists may be written as an object or as a list of pairs (for repeats).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderList {
    Map(BTreeMap<String, String>),
    Pairs(Vec<(String, String)>),
}

impl HeaderList {
    fn pairs(&self) -> Vec<(String, String)> {
        match self {
            HeaderList::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            HeaderList::Pairs(p) => p.clone(),
        }
    }
}

/// What a replayed request is expected to produce; a mismatch is reported.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    pub status: Option<u16>,
    /// The plugin expected to answer locally (`null`/absent: no expectation).
    pub replied_by: Option<String>,
    /// Headers the upstream must have received (value `""`: present, any value).
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    /// Headers the upstream must not have received.
    #[serde(default)]
    pub upstream_headers_absent: Vec<String>,
    /// Headers the client must have received.
    #[serde(default)]
    pub response_headers: Vec<String>,
}

/// One entry of a request file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub node: BTreeMap<String, String>,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub authority: Option<String>,
    /// `request.protocol` as Envoy's codec reports it: `HTTP/1.1` (the
    /// default), `HTTP/1.0`, `HTTP/2` or `HTTP/3`.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub headers: Option<HeaderList>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub body_chunks: Option<Vec<String>>,
    #[serde(default)]
    pub trailers: Option<HeaderList>,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub peer_certificate_file: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub connection_id: Option<u64>,
    #[serde(default)]
    pub worker: Option<usize>,
    #[serde(default = "one")]
    pub repeat: usize,
    #[serde(default)]
    pub advance_ms: u64,
    #[serde(default)]
    pub expect: Option<Expect>,
}

fn get() -> String {
    "GET".to_string()
}

fn one() -> usize {
    1
}

impl RequestSpec {
    /// A short label: the name, or `METHOD path`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{} {}", self.method, self.path))
    }
}

/// Reads a request file: one JSON object, a JSON array, or JSON lines
/// (blank lines and lines starting with `#` or `//` are skipped).
pub fn read(path: &Path) -> anyhow::Result<Vec<RequestSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<Vec<RequestSpec>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return Ok(serde_json::from_str(trimmed)?);
    }
    if let Ok(one) = serde_json::from_str::<RequestSpec>(trimmed) {
        return Ok(vec![one]);
    }
    let mut specs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let spec = serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        specs.push(spec);
    }
    if specs.is_empty() {
        bail!("no requests");
    }
    Ok(specs)
}

/// Turns request specs into harness requests, minting SVIDs for `peer` IDs
/// from one test CA (one certificate per ID, reused).
pub struct RequestMaker {
    ca: TestCa,
    svids: HashMap<String, String>,
    files: HashMap<String, String>,
}

impl RequestMaker {
    pub fn new() -> anyhow::Result<Self> {
        Ok(RequestMaker {
            ca: TestCa::new("meshward harness CA").map_err(|e| anyhow::anyhow!("test CA: {e}"))?,
            svids: HashMap::new(),
            files: HashMap::new(),
        })
    }

    /// The CA that signs the minted SVIDs (PEM).
    pub fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    pub fn make(&mut self, spec: &RequestSpec) -> anyhow::Result<Request> {
        let mut request = Request::new(&spec.method, &spec.path);
        if let Some(a) = &spec.authority {
            request = request.authority(a);
        }
        if let Some(p) = &spec.protocol {
            request = request.protocol(p);
        }
        for (k, v) in spec
            .headers
            .as_ref()
            .map(HeaderList::pairs)
            .unwrap_or_default()
        {
            request = request.header(&k, &v);
        }
        if let Some(chunks) = &spec.body_chunks {
            request = request.body_chunks(chunks.iter().map(|c| c.as_bytes().to_vec()).collect());
        } else if let Some(body) = &spec.body {
            request = request.body(body.as_bytes().to_vec());
        }
        for (k, v) in spec
            .trailers
            .as_ref()
            .map(HeaderList::pairs)
            .unwrap_or_default()
        {
            request = request.trailer(&k, &v);
        }
        // An HTTP/1.1 client frames its body; an HTTP/2 one need not.
        if spec
            .protocol
            .as_deref()
            .is_none_or(|p| p.starts_with("HTTP/1"))
        {
            request = request.http1_framing();
        }
        if let Some(id) = &spec.peer {
            if !self.svids.contains_key(id) {
                let svid = self
                    .ca
                    .issue(id)
                    .map_err(|e| anyhow::anyhow!("minting an SVID for {id}: {e}"))?;
                self.svids.insert(id.clone(), svid.cert_pem);
            }
            request = request.peer_certificate_pem(self.svids[id].clone());
        } else if let Some(file) = &spec.peer_certificate_file {
            if !self.files.contains_key(file) {
                let pem =
                    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
                self.files.insert(file.clone(), pem);
            }
            request = request.peer_certificate_pem(self.files[file].clone());
        }
        if let Some(source) = &spec.source {
            request = request.source(source);
        }
        if let Some(id) = spec.connection_id {
            request = request.connection_id(id);
        }
        if let Some(worker) = spec.worker {
            request = request.worker(worker);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_lines_with_comments_and_both_header_forms() {
        let specs = parse(
            "# bank mesh\n{\"path\":\"/a\",\"headers\":{\"x\":\"1\"}}\n\n{\"method\":\"POST\",\"path\":\"/b\",\"headers\":[[\"x\",\"1\"],[\"x\",\"2\"]],\"repeat\":3}\n",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].method, "GET");
        assert_eq!(specs[1].repeat, 3);
        assert_eq!(specs[1].headers.as_ref().unwrap().pairs().len(), 2);
    }

    #[test]
    fn a_single_object_file_is_one_request() {
        let specs =
            parse("{\n  \"path\": \"/x\",\n  \"peer\": \"spiffe://cluster.local/ns/a/sa/b\"\n}")
                .unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].label(), "GET /x");
    }

    #[test]
    fn the_protocol_decides_whether_a_body_gets_a_content_length() {
        let mut maker = RequestMaker::new().unwrap();
        let specs = parse(
            "{\"method\":\"POST\",\"path\":\"/x\",\"body\":\"abc\"}\n\
             {\"method\":\"POST\",\"path\":\"/x\",\"body\":\"abc\",\"protocol\":\"HTTP/2\"}",
        )
        .unwrap();
        let h1 = maker.make(&specs[0]).unwrap();
        let h2 = maker.make(&specs[1]).unwrap();
        assert_eq!(
            (h1.protocol.as_str(), h2.protocol.as_str()),
            ("HTTP/1.1", "HTTP/2")
        );
        let length =
            |r: &Request| crate::find_header(&r.headers, "content-length").map(str::to_string);
        assert_eq!(length(&h1).as_deref(), Some("3"));
        assert_eq!(length(&h2), None);
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(parse("{\"path\":\"/x\",\"peers\":\"y\"}").is_err());
    }

    #[test]
    fn peer_gets_an_svid_with_that_uri_san() {
        let mut maker = RequestMaker::new().unwrap();
        let spec = &parse("{\"path\":\"/x\",\"peer\":\"spiffe://cluster.local/ns/bank-a/sa/api\"}")
            .unwrap()[0];
        let request = maker.make(spec).unwrap();
        let pem = request.connection.peer_certificate_pem.unwrap();
        assert_eq!(
            crate::cert::uri_sans(&pem),
            vec!["spiffe://cluster.local/ns/bank-a/sa/api"]
        );
    }
}
