//! Per-key GCRA state in proxy-wasm shared data, bounded by a slot table.
//!
//! Envoy's shared data is one key/value map per `vm_id`, shared by every
//! worker VM, with a compare-and-swap token per entry and **no delete**
//! (ARCHITECTURE §4, §9). So state cannot live under one shared-data key per
//! rate-limit key — the map would grow without bound. Instead:
//!
//! - **Slot table.** A configuration has `maxKeys` slots, shared-data keys
//!   `meshward.ratelimit/<plugin>/<generation>/s<i>`. A rate-limit key (its
//!   64-bit [fingerprint](crate::rules::Rule::fingerprint)) may live in one of
//!   two slots picked from its fingerprint. A slot's value is a 21-byte
//!   [`Record`]: format, fingerprint, TAT. A slot held by another key is taken
//!   over only when that key is *idle* (its TAT is in the past: its bucket is
//!   full, so forgetting it changes nothing).
//! - **Overflow.** When both slots hold active keys, the request is counted
//!   in the rule's overflow bucket (`…/o<rule>`), shared by every key that
//!   found no slot: past the ceiling, keys are limited together, never
//!   unlimited. At most `maxKeys + rules` shared-data entries exist per
//!   configuration generation.
//! - **CAS.** Every write passes the CAS token of the value it was computed
//!   from; on `CAS_MISMATCH` the caller reads again and decides again.
//! - **Creation race, prevented.** A missing key is created whatever CAS is
//!   passed, but an *existing* key with a different non-zero CAS is a
//!   mismatch. So a missing slot is created with the CAS [`CREATE_CAS`]: if
//!   another worker created it in between, the write fails and is retried
//!   on the other worker's value instead of overwriting it. The only residual
//!   window is a concurrently created entry whose CAS is exactly `CREATE_CAS`
//!   (Envoy's CAS counter is process-wide; one value in 2³²), which can lose
//!   that one concurrent update: at most `workers − 1` extra admissions, once.

use crate::gcra::Tat;

/// The CAS passed when creating a slot that was missing: never 0 (which
/// would write unconditionally), so a slot created meanwhile by another
/// worker is a mismatch, not overwritten.
pub const CREATE_CAS: u32 = u32::MAX;

/// Writes that fail with `CAS_MISMATCH` more often than this in a row give
/// up: the request is admitted and `cas_exhausted` counted (a limiter that
/// cannot write must not take traffic down).
pub const MAX_ATTEMPTS: u32 = 16;

/// The value of a shared-data key was changed since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// The part of proxy-wasm shared data the limiter needs.
pub trait SharedStore {
    /// The value and CAS token of `key`, `None` when it does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the key's CAS token is still `cas` (0: always). A
    /// missing key is created whatever `cas` is.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch>;
}

const FORMAT: u8 = 1;
const RECORD_LEN: usize = 21;

/// What a slot holds: whose state it is, and that state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub fingerprint: u64,
    pub tat: Tat,
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0] = FORMAT;
        b[1..9].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[9..17].copy_from_slice(&self.tat.nanos.to_le_bytes());
        b[17..21].copy_from_slice(&self.tat.frac.to_le_bytes());
        b
    }

    /// `None` for anything but a well-formed record of this format (a slot
    /// holding garbage is treated as free).
    pub fn decode(b: &[u8]) -> Option<Record> {
        let b: &[u8; RECORD_LEN] = b.try_into().ok()?;
        if b[0] != FORMAT {
            return None;
        }
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let mut frac = [0u8; 4];
        frac.copy_from_slice(&b[17..21]);
        Some(Record {
            fingerprint: u64_at(1),
            tat: Tat {
                nanos: u64_at(9),
                frac: u32::from_le_bytes(frac),
            },
        })
    }
}

/// Where a key's state was found (or will be created), and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Shared-data key of the slot.
    pub key: String,
    /// CAS token read with it, `None` when the slot did not exist.
    pub cas: Option<u32>,
    /// The key's state, `None` for a key without state (a full bucket).
    pub tat: Option<Tat>,
    /// The fingerprint written with the state.
    pub fingerprint: u64,
    /// The key found no slot and is counted in the rule's overflow bucket.
    pub overflow: bool,
}

impl Located {
    /// Writes the key's new state with the CAS it was read with.
    pub fn commit(&self, store: &impl SharedStore, tat: Tat) -> Result<(), CasMismatch> {
        let record = Record {
            fingerprint: self.fingerprint,
            tat,
        };
        store.set(&self.key, &record.encode(), self.cas.unwrap_or(CREATE_CAS))
    }
}

/// The slots of one plugin and configuration generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
    prefix: String,
    slots: u32,
}

impl SlotTable {
    /// `plugin` is the plugin name (Envoy root id), `generation` names the
    /// configuration (a hash of its bytes), so two plugins or two
    /// configurations never share state.
    pub fn new(plugin: &str, generation: &str, slots: u32) -> Self {
        SlotTable {
            prefix: format!("meshward.ratelimit/{plugin}/{generation}/"),
            slots: slots.max(1),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn slot_key(&self, i: u32) -> String {
        format!("{}s{i}", self.prefix)
    }

    pub fn overflow_key(&self, rule: usize) -> String {
        format!("{}o{rule}", self.prefix)
    }

    /// The two slots a fingerprint may live in (one when there is one slot).
    fn candidates(&self, fp: u64) -> (u32, Option<u32>) {
        let n = u64::from(self.slots);
        // n <= u32::MAX so the remainders fit.
        let a = (fp % n) as u32;
        if n == 1 {
            return (a, None);
        }
        let mut b = ((fp.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15) % n) as u32;
        if b == a {
            b = ((u64::from(a) + 1) % n) as u32;
        }
        (a, Some(b))
    }

    /// Finds the state of `fp` at `now_ns`, or a slot to create it in, or
    /// else the overflow bucket of rule `rule` (whose records carry
    /// `overflow_fp`). Reads only; the caller commits with [`Located::commit`].
    pub fn locate(
        &self,
        store: &impl SharedStore,
        fp: u64,
        rule: usize,
        overflow_fp: u64,
        now_ns: u64,
    ) -> Located {
        let (a, b) = self.candidates(fp);
        let mut free: Option<(u8, u64, Located)> = None; // (preference, tat, slot)
        for i in std::iter::once(a).chain(b) {
            let key = self.slot_key(i);
            let read = store.get(&key);
            let (pref, tat, cas) = match &read {
                None => (0u8, 0u64, None),
                Some((value, cas)) => match Record::decode(value) {
                    Some(r) if r.fingerprint == fp => {
                        return Located {
                            key,
                            cas: Some(*cas),
                            tat: Some(r.tat),
                            fingerprint: fp,
                            overflow: false,
                        };
                    }
                    Some(r) if r.tat.nanos <= now_ns => (2, r.tat.nanos, Some(*cas)),
                    Some(_) => continue,
                    None => (1, 0, Some(*cas)),
                },
            };
            let better = free.as_ref().is_none_or(|(p, t, _)| (pref, tat) < (*p, *t));
            if better {
                let slot = Located {
                    key,
                    cas,
                    tat: None,
                    fingerprint: fp,
                    overflow: false,
                };
                free = Some((pref, tat, slot));
            }
        }
        if let Some((_, _, slot)) = free {
            return slot;
        }
        let key = self.overflow_key(rule);
        let (cas, tat) = match store.get(&key) {
            None => (None, None),
            Some((value, cas)) => (
                Some(cas),
                Record::decode(&value)
                    .filter(|r| r.fingerprint == overflow_fp)
                    .map(|r| r.tat),
            ),
        };
        Located {
            key,
            cas,
            tat,
            fingerprint: overflow_fp,
            overflow: true,
        }
    }
}

/// An in-memory [`SharedStore`] with Envoy's semantics (proxy-wasm-cpp-host
/// `SharedData::set`): one process-wide CAS counter starting at 1 and
/// skipping 0; a stale non-zero CAS on an existing key is a mismatch; a
/// missing key is created whatever the CAS. Tests can inject mismatches and
/// run a hook between a read and the next write to interleave "workers".
#[derive(Default)]
pub struct MemStore {
    inner: std::cell::RefCell<MemInner>,
}

#[derive(Default)]
struct MemInner {
    map: std::collections::HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    inject: u32,
    sets: u64,
    mismatches: u64,
    #[allow(clippy::type_complexity)]
    before_set: Option<Box<dyn FnMut(&str, &mut MemMap)>>,
}

/// The raw map handed to a `before_set` hook.
pub struct MemMap<'a> {
    map: &'a mut std::collections::HashMap<String, (Vec<u8>, u32)>,
    next_cas: &'a mut u32,
}

impl MemMap<'_> {
    /// An unconditional write, as another worker's successful write.
    pub fn write(&mut self, key: &str, value: &[u8]) {
        let cas = next(self.next_cas);
        self.map.insert(key.to_string(), (value.to_vec(), cas));
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key).map(|(v, _)| v.as_slice())
    }
}

fn next(counter: &mut u32) -> u32 {
    *counter = counter.wrapping_add(1);
    if *counter == 0 {
        *counter = 1;
    }
    *counter
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` writes with a non-zero CAS fail with `CAS_MISMATCH`.
    pub fn inject_cas_mismatches(&self, n: u32) {
        self.inner.borrow_mut().inject = n;
    }

    /// Runs `hook` right before every write, with the raw map: a test uses
    /// it to play another worker that writes between this worker's read and
    /// its write.
    pub fn before_set(&self, hook: impl FnMut(&str, &mut MemMap) + 'static) {
        self.inner.borrow_mut().before_set = Some(Box::new(hook));
    }

    pub fn clear_hook(&self) {
        self.inner.borrow_mut().before_set = None;
    }

    /// Number of shared-data entries.
    pub fn len(&self) -> usize {
        self.inner.borrow().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.inner.borrow().map.keys().cloned().collect();
        k.sort();
        k
    }

    /// CAS mismatches returned so far.
    pub fn mismatches(&self) -> u64 {
        self.inner.borrow().mismatches
    }

    /// Successful writes so far.
    pub fn writes(&self) -> u64 {
        self.inner.borrow().sets
    }
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.borrow().map.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        if let Some(mut hook) = inner.before_set.take() {
            hook(
                key,
                &mut MemMap {
                    map: &mut inner.map,
                    next_cas: &mut inner.next_cas,
                },
            );
            inner.before_set = Some(hook);
        }
        if cas != 0 && inner.inject > 0 {
            inner.inject -= 1;
            inner.mismatches += 1;
            return Err(CasMismatch);
        }
        if let Some((_, current)) = inner.map.get(key) {
            if cas != 0 && cas != *current {
                inner.mismatches += 1;
                return Err(CasMismatch);
            }
        }
        let c = next(&mut inner.next_cas);
        inner.map.insert(key.to_string(), (value.to_vec(), c));
        inner.sets += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_garbage_is_no_record() {
        let r = Record {
            fingerprint: 0xdead_beef_0123_4567,
            tat: Tat {
                nanos: 1_767_225_600_000_000_000,
                frac: 2,
            },
        };
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode(b""), None);
        assert_eq!(Record::decode(&[0u8; RECORD_LEN]), None, "unknown format");
        assert_eq!(Record::decode(&[1u8; RECORD_LEN + 1]), None, "wrong length");
    }

    #[test]
    fn mem_store_follows_envoy_cas_rules() {
        let s = MemStore::new();
        assert_eq!(s.get("k"), None);
        s.set("k", b"a", 12345).unwrap(); // missing: created whatever the CAS
        let (_, c1) = s.get("k").unwrap();
        assert_eq!(s.set("k", b"b", c1 + 1), Err(CasMismatch));
        s.set("k", b"b", c1).unwrap();
        assert_eq!(s.set("k", b"c", c1), Err(CasMismatch), "stale");
        s.set("k", b"d", 0).unwrap(); // 0: unconditional
        assert_eq!(s.get("k").unwrap().0, b"d");
    }

    #[test]
    fn keys_are_namespaced_by_plugin_and_generation() {
        let a = SlotTable::new("ratelimit", "00ff", 10);
        let b = SlotTable::new("ratelimit-edge", "00ff", 10);
        let c = SlotTable::new("ratelimit", "0100", 10);
        assert_eq!(a.slot_key(3), "meshward.ratelimit/ratelimit/00ff/s3");
        assert_eq!(a.overflow_key(1), "meshward.ratelimit/ratelimit/00ff/o1");
        assert_ne!(a.slot_key(3), b.slot_key(3));
        assert_ne!(a.slot_key(3), c.slot_key(3));
    }

    #[test]
    fn candidate_slots_are_in_range_and_distinct() {
        for n in [1u32, 2, 3, 7, 10_000] {
            let t = SlotTable::new("p", "g", n);
            for fp in [0u64, 1, u64::MAX, 0x1234_5678_9abc_def0] {
                let (a, b) = t.candidates(fp);
                assert!(a < n);
                match b {
                    None => assert_eq!(n, 1),
                    Some(b) => assert!(b < n && b != a),
                }
            }
        }
    }

    #[test]
    fn creating_a_slot_does_not_overwrite_one_created_meanwhile() {
        let s = MemStore::new();
        let t = SlotTable::new("p", "g", 1);
        let loc = t.locate(&s, 7, 0, 99, 100);
        assert_eq!(loc.cas, None);
        // Another worker creates the same slot between our read and write.
        let other = Record {
            fingerprint: 7,
            tat: Tat {
                nanos: 500,
                frac: 0,
            },
        };
        s.set(&loc.key, &other.encode(), 0).unwrap();
        assert_eq!(
            loc.commit(
                &s,
                Tat {
                    nanos: 200,
                    frac: 0
                }
            ),
            Err(CasMismatch)
        );
        assert_eq!(Record::decode(&s.get(&loc.key).unwrap().0), Some(other));
    }
}
