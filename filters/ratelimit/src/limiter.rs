//! The local decision for one request: every applicable rule must admit it.
//!
//! Two phases, so a request rejected by one rule does not spend the quota of
//! another (a caller over its own limit does not eat its tenant's):
//!
//! 1. **Check**: for each applicable rule, read its key's state and decide
//!    with GCRA, writing nothing. An enforcing rule that denies ends here:
//!    the request is limited and no state changes.
//! 2. **Commit**: write each admitting rule's new state with the CAS token it
//!    was read with. On `CAS_MISMATCH` (another worker wrote in between) that
//!    rule is read and decided again; if it now denies, the request is limited
//!    by it (rules already committed keep their admission — the window is one
//!    concurrent write wide).

use crate::config::Config;
use crate::gcra::Verdict;
use crate::rules::{Facts, KeyHasher};
use crate::store::{Located, SharedStore, SlotTable, MAX_ATTEMPTS};

/// What one applicable rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleResult {
    /// Index into `Config::rules`.
    pub rule: usize,
    pub verdict: Verdict,
    /// The rule (or the whole filter) is in dry-run mode.
    pub dry_run: bool,
    /// The key found no slot and was counted in the overflow bucket.
    pub overflow: bool,
}

/// The local decision for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One entry per applicable rule that was decided, in rule order.
    pub results: Vec<RuleResult>,
    /// Index into `results` of the enforcing rule that limited the request.
    pub limited_by: Option<usize>,
    /// CAS mismatches retried.
    pub cas_retries: u32,
    /// Rules admitted because their write kept failing ([`MAX_ATTEMPTS`]).
    pub cas_exhausted: u32,
}

impl Outcome {
    pub fn limited(&self) -> Option<&RuleResult> {
        self.limited_by.and_then(|i| self.results.get(i))
    }

    /// Rules in dry-run mode that would have limited the request.
    pub fn dry_run_limited(&self) -> impl Iterator<Item = &RuleResult> {
        self.results
            .iter()
            .filter(|r| r.dry_run && !r.verdict.is_allow())
    }

    /// The admitting rule closest to its limit (fewest remaining), for the
    /// `x-ratelimit-*` headers of an admitted request.
    pub fn tightest(&self) -> Option<&RuleResult> {
        self.results
            .iter()
            .filter(|r| r.verdict.is_allow())
            .min_by_key(|r| r.verdict.remaining())
    }
}

/// The configuration's rules over a slot table.
#[derive(Debug, Clone)]
pub struct Limiter {
    pub config: Config,
    pub table: SlotTable,
    overflow_fps: Vec<u64>,
}

struct Pending {
    result: usize,
    fp: u64,
    located: Located,
}

impl Limiter {
    pub fn new(config: Config, table: SlotTable) -> Self {
        let overflow_fps = config
            .rules
            .iter()
            .map(|r| {
                let mut h = KeyHasher::new();
                h.part(b'o', &r.name);
                h.finish()
            })
            .collect();
        Limiter {
            config,
            table,
            overflow_fps,
        }
    }

    fn locate(&self, store: &impl SharedStore, rule: usize, fp: u64, now_ns: u64) -> Located {
        let ofp = self.overflow_fps.get(rule).copied().unwrap_or(0);
        self.table.locate(store, fp, rule, ofp, now_ns)
    }

    /// Decides `req` at `now_ns` (Unix nanoseconds) and records admissions.
    pub fn check(&self, store: &impl SharedStore, req: &impl Facts, now_ns: u64) -> Outcome {
        let mut out = Outcome::default();
        let mut pending: Vec<Pending> = Vec::new();
        for (i, rule) in self.config.rules.iter().enumerate() {
            let Some(fp) = rule.fingerprint(req) else {
                continue;
            };
            let located = self.locate(store, i, fp, now_ns);
            let verdict = rule.limit.check(located.tat, now_ns);
            let dry_run = rule.dry_run || self.config.dry_run;
            out.results.push(RuleResult {
                rule: i,
                verdict,
                dry_run,
                overflow: located.overflow,
            });
            if verdict.is_allow() {
                pending.push(Pending {
                    result: out.results.len() - 1,
                    fp,
                    located,
                });
            } else if !dry_run {
                out.limited_by = Some(out.results.len() - 1);
                return out;
            }
        }
        for p in pending {
            self.commit(store, now_ns, p, &mut out);
            if out.limited_by.is_some() {
                break;
            }
        }
        out
    }

    fn commit(&self, store: &impl SharedStore, now_ns: u64, p: Pending, out: &mut Outcome) {
        let Some(result) = out.results.get(p.result).copied() else {
            return;
        };
        let Some(rule) = self.config.rules.get(result.rule) else {
            return;
        };
        let mut located = p.located;
        let mut verdict = result.verdict;
        for attempt in 0..MAX_ATTEMPTS {
            let Verdict::Allow { tat, .. } = verdict else {
                break;
            };
            if located.commit(store, tat).is_ok() {
                break;
            }
            if attempt + 1 == MAX_ATTEMPTS {
                out.cas_exhausted += 1;
                break;
            }
            out.cas_retries += 1;
            located = self.locate(store, result.rule, p.fp, now_ns);
            verdict = rule.limit.check(located.tat, now_ns);
        }
        if let Some(r) = out.results.get_mut(p.result) {
            r.verdict = verdict;
            r.overflow = located.overflow;
            if !verdict.is_allow() && !r.dry_run {
                out.limited_by = Some(p.result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::NANOS_PER_SEC as S;
    use crate::rules::Request;
    use crate::store::{MemStore, Record};

    const T0: u64 = 1_767_225_600 * S;

    fn limiter(json: serde_json::Value) -> Limiter {
        let c = Config::parse(json.to_string().as_bytes()).unwrap();
        let n = c.max_keys;
        Limiter::new(c, SlotTable::new("ratelimit", "gen1", n))
    }

    fn req<'a>(
        tenant: &'a str,
        principal: &'a str,
        headers: &'a [(String, String)],
    ) -> Request<'a> {
        Request {
            tenant: Some(tenant),
            principal: Some(principal),
            method: "GET",
            path: "/accounts/1",
            source_ip: "10.0.0.1".parse().ok(),
            headers,
        }
    }

    const NONE: &[(String, String)] = &[];

    fn admitted(
        l: &Limiter,
        s: &MemStore,
        r: &Request<'_>,
        instants: impl IntoIterator<Item = u64>,
    ) -> usize {
        instants
            .into_iter()
            .filter(|t| l.check(s, r, *t).limited_by.is_none())
            .count()
    }

    #[test]
    fn four_workers_sharing_a_store_admit_exactly_the_limit() {
        // 100/s, burst 20, 10 s, requests spread round-robin over 4 "workers"
        // (one store: that is what shared data is).
        let l = limiter(
            serde_json::json!({"rules": [{"name": "t", "key": {"tenant": true},
            "limit": {"requests": 100, "per": "second", "burst": 20}}]}),
        );
        let s = MemStore::new();
        let r = req("bank-a", "p", NONE);
        let n = admitted(&l, &s, &r, (0..=10_000).map(|i| T0 + i * 1_000_000));
        assert_eq!(n, 1020);
    }

    #[test]
    fn every_applicable_rule_must_admit_and_a_rejection_spends_nothing() {
        let l = limiter(serde_json::json!({"rules": [
            {"name": "tenant", "key": {"tenant": true}, "limit": {"requests": 10, "per": "second", "burst": 10}},
            {"name": "caller", "key": {"principal": true}, "limit": {"requests": 2, "per": "second", "burst": 2}}
        ]}));
        let s = MemStore::new();
        let a = req("bank-a", "caller-a", NONE);
        let b = req("bank-a", "caller-b", NONE);
        // caller-a: 2 admitted, then limited by its own rule.
        assert_eq!(admitted(&l, &s, &a, [T0; 5]), 2);
        let out = l.check(&s, &a, T0);
        assert_eq!(out.limited().map(|r| r.rule), Some(1));
        // The 4 rejected requests did not spend the tenant's quota: 10 - 2 = 8 left.
        let out = l.check(&s, &b, T0);
        assert_eq!(out.results[0].verdict.remaining(), 7);
        assert_eq!(
            admitted(&l, &s, &b, [T0; 5]),
            1,
            "caller-b had 2, used 1 above"
        );
    }

    #[test]
    fn dry_run_rule_records_but_does_not_limit() {
        let l = limiter(serde_json::json!({"rules": [
            {"name": "dry", "dryRun": true, "limit": {"requests": 1, "per": "minute", "burst": 1}}]}));
        let s = MemStore::new();
        let r = req("bank-a", "p", NONE);
        let first = l.check(&s, &r, T0);
        assert!(first.limited_by.is_none() && first.dry_run_limited().count() == 0);
        let second = l.check(&s, &r, T0);
        assert!(second.limited_by.is_none());
        assert_eq!(second.dry_run_limited().count(), 1);
        let global_dry = limiter(serde_json::json!({"dryRun": true, "rules": [
            {"name": "r", "limit": {"requests": 1, "per": "minute", "burst": 1}}]}));
        assert_eq!(admitted(&global_dry, &s, &r, [T0; 3]), 3);
    }

    #[test]
    fn cas_mismatch_is_retried_and_the_count_stays_exact() {
        let l = limiter(serde_json::json!({"rules": [
            {"name": "r", "limit": {"requests": 10, "per": "second", "burst": 5}}]}));
        let s = MemStore::new();
        let r = req("bank-a", "p", NONE);
        s.inject_cas_mismatches(3);
        let out = l.check(&s, &r, T0);
        assert!(out.limited_by.is_none());
        assert_eq!(out.cas_retries, 3);
        assert_eq!(admitted(&l, &s, &r, [T0; 10]), 4, "burst 5, one used");
    }

    #[test]
    fn a_worker_interleaved_at_the_cas_step_is_counted_once() {
        // Worker A reads the state; worker B admits 3 requests in between;
        // A's write fails, A re-reads and decides on B's state.
        let l = limiter(serde_json::json!({"rules": [
            {"name": "r", "limit": {"requests": 1, "per": "minute", "burst": 4}}]}));
        let s = MemStore::new();
        let r = req("bank-a", "p", NONE);
        assert!(l.check(&s, &r, T0).limited_by.is_none()); // 3 left
        let key = l.check_key_for_test(&s, &r, T0);
        let mut fired = false;
        s.before_set(move |k, map| {
            if !fired && k == key {
                fired = true;
                // B admits 3: TAT moves 3 minutes on.
                let rec = Record::decode(map.get(k).unwrap()).unwrap();
                let mut later = rec;
                later.tat.nanos += 3 * 60 * S;
                map.write(k, &later.encode());
            }
        });
        let out = l.check(&s, &r, T0);
        assert_eq!(out.cas_retries, 1);
        assert!(
            out.limited_by.is_some(),
            "B used the last 3: A is over the limit"
        );
        s.clear_hook();
        assert!(l.check(&s, &r, T0).limited_by.is_some());
    }

    #[test]
    fn concurrent_creation_of_a_key_is_not_lost() {
        // Both "workers" see the key missing; B creates it first. A's create
        // (CAS = CREATE_CAS) fails instead of overwriting, so B's admission
        // stays counted.
        let l = limiter(serde_json::json!({"maxKeys": 1, "rules": [
            {"name": "r", "limit": {"requests": 1, "per": "minute", "burst": 2}}]}));
        let s = MemStore::new();
        let r = req("bank-a", "p", NONE);
        let l2 = l.clone();
        let mut fired = false;
        s.before_set(move |k, map| {
            if !fired {
                fired = true;
                // B: its own full check against an empty table, then its write.
                let b = MemStore::new();
                let rr = req("bank-a", "p", NONE);
                assert!(l2.check(&b, &rr, T0).limited_by.is_none());
                let (v, _) = b.get(k).unwrap();
                map.write(k, &v);
            }
        });
        let out = l.check(&s, &r, T0);
        assert!(out.limited_by.is_none());
        assert_eq!(out.cas_retries, 1);
        s.clear_hook();
        assert!(
            l.check(&s, &r, T0).limited_by.is_some(),
            "burst 2: A + B used it"
        );
    }

    #[test]
    fn cas_exhaustion_admits_and_is_counted() {
        let l = limiter(serde_json::json!({"rules": [
            {"name": "r", "limit": {"requests": 1, "per": "minute", "burst": 1}}]}));
        let s = MemStore::new();
        let r = req("bank-a", "p", NONE);
        assert!(l.check(&s, &r, T0).limited_by.is_none());
        s.inject_cas_mismatches(1000);
        // Limited requests do not write, so they are still limited.
        assert!(l.check(&s, &r, T0).limited_by.is_some());
        let out = l.check(&s, &r, T0 + 60 * S);
        assert!(out.limited_by.is_none());
        assert_eq!(out.cas_exhausted, 1);
    }

    #[test]
    fn past_the_key_ceiling_keys_share_the_overflow_bucket() {
        let l = limiter(serde_json::json!({"maxKeys": 2, "rules": [
            {"name": "per-caller", "key": {"principal": true},
             "limit": {"requests": 1, "per": "minute", "burst": 3}}]}));
        let s = MemStore::new();
        // Two callers take both slots (their buckets are not full again for minutes).
        for p in ["a", "b"] {
            let out = l.check(&s, &req("bank-a", p, NONE), T0);
            assert!(!out.results[0].overflow, "{p} gets a slot");
        }
        // Callers c, d, e find no slot: they share one overflow bucket of 3.
        let mut admitted = 0;
        for p in ["c", "d", "e", "c", "d", "e"] {
            let out = l.check(&s, &req("bank-a", p, NONE), T0);
            assert!(out.results[0].overflow, "{p} overflows");
            admitted += usize::from(out.limited_by.is_none());
        }
        assert_eq!(admitted, 3);
        // Never more than maxKeys + one overflow entry per rule.
        assert_eq!(s.len(), 3, "{:?}", s.keys());
        // a and b keep their own buckets.
        assert_eq!(
            l.check(&s, &req("bank-a", "a", NONE), T0).results[0]
                .verdict
                .remaining(),
            1
        );
    }

    #[test]
    fn idle_keys_are_recycled() {
        let l = limiter(serde_json::json!({"maxKeys": 1, "rules": [
            {"name": "per-caller", "key": {"principal": true},
             "limit": {"requests": 1, "per": "second", "burst": 1}}]}));
        let s = MemStore::new();
        assert!(!l.check(&s, &req("bank-a", "a", NONE), T0).results[0].overflow);
        // Within a's interval, b overflows.
        assert!(l.check(&s, &req("bank-a", "b", NONE), T0).results[0].overflow);
        // Once a's bucket is full again (idle), b takes the slot over.
        let out = l.check(&s, &req("bank-a", "b", NONE), T0 + S);
        assert!(!out.results[0].overflow);
        assert!(out.limited_by.is_none());
        assert_eq!(s.len(), 2, "one slot + one overflow: {:?}", s.keys());
        // ... and a, now evicted, starts from a full bucket, which is what it had.
        assert!(l
            .check(&s, &req("bank-a", "a", NONE), T0 + 2 * S)
            .limited_by
            .is_none());
    }

    #[test]
    fn many_distinct_keys_never_exceed_the_ceiling() {
        let l = limiter(serde_json::json!({"maxKeys": 50, "rules": [
            {"name": "by-key", "key": {"header": "x-api-key"}, "limit": {"requests": 1, "per": "hour", "burst": 1}}]}));
        let s = MemStore::new();
        for i in 0..2000 {
            let hs = vec![("x-api-key".to_string(), format!("k{i}"))];
            l.check(&s, &req("bank-a", "p", &hs), T0 + i);
        }
        assert_eq!(s.len(), 51);
    }

    #[test]
    fn rules_that_do_not_apply_are_not_in_the_outcome() {
        let l = limiter(serde_json::json!({"rules": [
            {"name": "anon", "match": {"identity": "unauthenticated"}, "key": {"sourceIp": true},
             "limit": {"requests": 1, "per": "second"}}]}));
        let s = MemStore::new();
        let out = l.check(&s, &req("bank-a", "p", NONE), T0);
        assert!(out.results.is_empty() && out.limited_by.is_none());
        assert!(s.is_empty());
    }

    impl Limiter {
        /// The slot key a single-rule limiter uses for `req`.
        fn check_key_for_test(&self, s: &MemStore, req: &Request<'_>, now: u64) -> String {
            let fp = self.config.rules[0].fingerprint(req).unwrap();
            self.locate(s, 0, fp, now).key
        }
    }
}
