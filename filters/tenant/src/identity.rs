//! Who is calling: the direct peer's X.509-SVID, and — only when that peer is
//! a trusted forwarder — the identity it forwarded in XFCC.
//!
//! The peer certificate is the same for every request of a connection, so its
//! parsed form is cached per `connection.id` in a bounded [`IdentityCache`];
//! only the validity window is re-checked per request, against the host clock.
//!
//! Which XFCC element counts: with Envoy's `APPEND_FORWARD` only the last
//! element was written by a proxy; everything before it came from the caller.
//! When this workload's own sidecar appended that last element, it describes
//! the direct peer (its `URI` is the forwarder itself); then the element before
//! it is the forwarder's record of its client. Either way the chosen element
//! must carry `By=<the forwarder's SPIFFE ID>` when it carries `By` at all, and
//! a `URI` that is a valid SPIFFE ID; anything else is `invalid_xfcc`.

use crate::policy::Reason;
use meshward_shared::spiffe::SpiffeId;
use meshward_shared::svid::{self, Svid, SvidError};
use meshward_shared::xfcc::{self, XfccElement, XfccKey};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// What the direct peer presented on its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// No client certificate (plaintext, or TLS without one).
    None,
    /// A certificate that passed every SVID check except the clock.
    Svid(Rc<Svid>),
    /// A certificate that failed an SVID check.
    Invalid(SvidError),
}

impl PeerIdentity {
    /// Inspects the `connection.peer_certificate` property (raw PEM in Envoy
    /// 1.40, URL-encoded PEM on some hosts).
    pub fn from_peer_certificate(property: Option<&[u8]>) -> PeerIdentity {
        let Some(encoded) = property.filter(|p| !p.is_empty()) else {
            return PeerIdentity::None;
        };
        let inspected = svid::inspect_peer_certificate(encoded);
        match inspected {
            Ok(svid) => PeerIdentity::Svid(Rc::new(svid)),
            Err(e) => PeerIdentity::Invalid(e),
        }
    }
}

/// The caller of one request, after identity resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Anonymous,
    Rejected { reason: Reason, detail: String },
    Authenticated { id: Rc<SpiffeId>, via_xfcc: bool },
}

/// The result for one request: the caller, and whether the XFCC header came
/// from a trusted forwarder (and so may stay on the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub caller: Resolved,
    pub peer_is_trusted_forwarder: bool,
}

/// Resolves the caller from the cached peer identity, the clock (Unix
/// seconds) and the request's XFCC header.
pub fn resolve(
    peer: &PeerIdentity,
    now: i64,
    xfcc_header: Option<&str>,
    trusted_forwarders: &[SpiffeId],
) -> Resolution {
    let svid = match peer {
        PeerIdentity::None => {
            return Resolution {
                caller: Resolved::Anonymous,
                peer_is_trusted_forwarder: false,
            }
        }
        PeerIdentity::Invalid(e) => {
            return Resolution {
                caller: rejected_svid(e),
                peer_is_trusted_forwarder: false,
            }
        }
        PeerIdentity::Svid(svid) => svid,
    };
    if let Err(e) = svid.valid_at(now) {
        return Resolution {
            caller: rejected_svid(&e),
            peer_is_trusted_forwarder: false,
        };
    }
    let forwarder = trusted_forwarders.iter().any(|f| *f == svid.id);
    let caller = match (forwarder, xfcc_header) {
        (true, Some(header)) => forwarded(header, &svid.id),
        _ => Resolved::Authenticated {
            id: Rc::new(svid.id.clone()),
            via_xfcc: false,
        },
    };
    Resolution {
        caller,
        peer_is_trusted_forwarder: forwarder,
    }
}

fn rejected_svid(e: &SvidError) -> Resolved {
    Resolved::Rejected {
        reason: Reason::InvalidSvid,
        detail: e.reason().to_string(),
    }
}

fn rejected_xfcc(detail: impl Into<String>) -> Resolved {
    Resolved::Rejected {
        reason: Reason::InvalidXfcc,
        detail: detail.into(),
    }
}

fn forwarded(header: &str, forwarder: &SpiffeId) -> Resolved {
    let elements = match xfcc::parse(header) {
        Ok(e) => e,
        Err(e) => return rejected_xfcc(e.to_string()),
    };
    let mut from_end = elements.iter().rev();
    let Some(mut chosen) = from_end.next() else {
        return rejected_xfcc("empty XFCC");
    };
    if uri_is(chosen, forwarder) {
        // Our own sidecar's record of the forwarder; the one before it is the
        // forwarder's record of its client.
        match from_end.next() {
            Some(previous) => chosen = previous,
            None => {
                return Resolved::Authenticated {
                    id: Rc::new(forwarder.clone()),
                    via_xfcc: false,
                }
            }
        }
    }
    if let Some(by) = chosen.get(XfccKey::By) {
        if by != forwarder.as_str() {
            return rejected_xfcc("XFCC element was not written by the trusted forwarder");
        }
    }
    let Some(uri) = chosen.get(XfccKey::Uri) else {
        return rejected_xfcc("XFCC element has no URI");
    };
    match SpiffeId::parse(uri) {
        Ok(id) if !id.path().is_empty() => Resolved::Authenticated {
            id: Rc::new(id),
            via_xfcc: true,
        },
        Ok(_) => rejected_xfcc("XFCC URI has no path"),
        Err(e) => rejected_xfcc(format!("XFCC URI: {e}")),
    }
}

fn uri_is(element: &XfccElement, id: &SpiffeId) -> bool {
    element.get(XfccKey::Uri) == Some(id.as_str())
}

/// Peer identities by `connection.id`, at most `capacity` of them; the
/// oldest entry is evicted first (Envoy tells an HTTP filter nothing when a
/// connection closes, so age is the only signal).
#[derive(Debug)]
pub struct IdentityCache {
    capacity: usize,
    entries: HashMap<u64, PeerIdentity>,
    order: VecDeque<u64>,
}

impl IdentityCache {
    pub fn new(capacity: usize) -> IdentityCache {
        let capacity = capacity.max(1);
        IdentityCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    pub fn get(&self, connection: u64) -> Option<&PeerIdentity> {
        self.entries.get(&connection)
    }

    pub fn insert(&mut self, connection: u64, identity: PeerIdentity) {
        if self.entries.insert(connection, identity).is_some() {
            return;
        }
        self.order.push_back(connection);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str =
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    const NOW: i64 = 1_767_225_600;

    fn svid(id: &str) -> PeerIdentity {
        PeerIdentity::Svid(Rc::new(Svid {
            id: SpiffeId::parse(id).unwrap(),
            not_before: NOW - 10,
            not_after: NOW + 10,
        }))
    }

    fn forwarders() -> Vec<SpiffeId> {
        vec![SpiffeId::parse(GW).unwrap()]
    }

    fn caller_id(r: &Resolution) -> Option<&str> {
        match &r.caller {
            Resolved::Authenticated { id, .. } => Some(id.as_str()),
            _ => None,
        }
    }

    #[test]
    fn the_peer_certificate_is_the_identity_and_xfcc_from_others_is_ignored() {
        let peer = svid("spiffe://cluster.local/ns/bank-b/sa/api");
        let forged = "By=x;URI=spiffe://cluster.local/ns/bank-a/sa/api";
        let r = resolve(&peer, NOW, Some(forged), &forwarders());
        assert_eq!(
            caller_id(&r),
            Some("spiffe://cluster.local/ns/bank-b/sa/api")
        );
        assert!(!r.peer_is_trusted_forwarder);
    }

    #[test]
    fn a_trusted_forwarder_passes_on_the_last_element_only() {
        let peer = svid(GW);
        let header = format!(
            "By={GW};URI=spiffe://cluster.local/ns/bank-a/sa/api,By={GW};URI=spiffe://cluster.local/ns/bank-b/sa/api"
        );
        let r = resolve(&peer, NOW, Some(&header), &forwarders());
        assert_eq!(
            caller_id(&r),
            Some("spiffe://cluster.local/ns/bank-b/sa/api")
        );
        assert!(r.peer_is_trusted_forwarder);
    }

    #[test]
    fn a_sidecar_appended_record_of_the_forwarder_is_skipped() {
        let peer = svid(GW);
        let header = format!(
            "By={GW};URI=spiffe://cluster.local/ns/bank-b/sa/web,By=spiffe://cluster.local/ns/bank-b/sa/api;URI={GW}"
        );
        let r = resolve(&peer, NOW, Some(&header), &forwarders());
        assert_eq!(
            caller_id(&r),
            Some("spiffe://cluster.local/ns/bank-b/sa/web")
        );
    }

    #[test]
    fn a_forwarder_without_xfcc_is_itself_the_caller() {
        let r = resolve(&svid(GW), NOW, None, &forwarders());
        assert_eq!(caller_id(&r), Some(GW));
    }

    #[test]
    fn bad_forwarded_identities_are_rejected() {
        let peer = svid(GW);
        for header in [
            "URI=spiffe://cluster.local/ns/bank-a/../bank-b/sa/x".to_string(),
            "URI=spiffe://Cluster.local/ns/bank-a/sa/x".to_string(),
            "URI=spiffe://cluster.local/ns/bank-a//sa/x".to_string(),
            "URI=spiffe://cluster.local/ns/bank%2Da/sa/x".to_string(),
            "URI=spiffe://cluster.local".to_string(),
            "By=spiffe://cluster.local/ns/x/sa/y;URI=spiffe://cluster.local/ns/bank-a/sa/x"
                .to_string(),
            format!("By={GW};Hash=00"),
            format!(r#"By={GW};URI="spiffe://cluster.local/ns/bank-a/sa/x"#),
            String::new(),
        ] {
            let r = resolve(&peer, NOW, Some(&header), &forwarders());
            assert!(
                matches!(
                    r.caller,
                    Resolved::Rejected {
                        reason: Reason::InvalidXfcc,
                        ..
                    }
                ),
                "{header}: {r:?}"
            );
        }
    }

    #[test]
    fn an_expired_or_future_svid_is_rejected_at_request_time() {
        let peer = svid("spiffe://cluster.local/ns/bank-a/sa/api");
        for t in [NOW - 11, NOW + 11] {
            let r = resolve(&peer, t, None, &[]);
            assert!(matches!(
                r.caller,
                Resolved::Rejected {
                    reason: Reason::InvalidSvid,
                    ..
                }
            ));
        }
        assert!(caller_id(&resolve(&peer, NOW + 10, None, &[])).is_some());
    }

    #[test]
    fn plaintext_has_no_identity_and_xfcc_does_not_give_one() {
        let r = resolve(
            &PeerIdentity::None,
            NOW,
            Some(&format!("By={GW};URI={GW}")),
            &forwarders(),
        );
        assert_eq!(r.caller, Resolved::Anonymous);
        assert!(!r.peer_is_trusted_forwarder);
    }

    #[test]
    fn garbage_certificates_are_invalid_not_absent() {
        assert_eq!(
            PeerIdentity::from_peer_certificate(None),
            PeerIdentity::None
        );
        assert_eq!(
            PeerIdentity::from_peer_certificate(Some(b"")),
            PeerIdentity::None
        );
        assert!(matches!(
            PeerIdentity::from_peer_certificate(Some(b"%zz")),
            PeerIdentity::Invalid(SvidError::UrlEncoding)
        ));
        assert!(matches!(
            PeerIdentity::from_peer_certificate(Some(b"hello")),
            PeerIdentity::Invalid(SvidError::Pem)
        ));
        let pem = "-----BEGIN%20CERTIFICATE-----%0AaGVsbG8%3D%0A-----END%20CERTIFICATE-----%0A";
        assert!(matches!(
            PeerIdentity::from_peer_certificate(Some(pem.as_bytes())),
            PeerIdentity::Invalid(SvidError::Der)
        ));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest() {
        let mut c = IdentityCache::new(2);
        c.insert(1, PeerIdentity::None);
        c.insert(2, svid(GW));
        c.insert(2, svid(GW));
        assert_eq!(c.len(), 2);
        c.insert(3, PeerIdentity::None);
        assert_eq!(c.len(), 2);
        assert!(c.get(1).is_none());
        assert!(c.get(2).is_some());
        assert!(c.get(3).is_some());
    }
}
