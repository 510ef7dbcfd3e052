//! GCRA (the generic cell rate algorithm) on integer nanoseconds.
//!
//! A limit of `requests` per `period` with a `burst` is a bucket that holds
//! `burst` requests and refills one request every `period / requests`. GCRA
//! keeps the same bucket as one number per key, the *theoretical arrival time*
//! (TAT): the instant at which the bucket would be full again. A request at
//! `now` is admitted when `max(TAT, now) - now <= (burst - 1) * interval`, and
//! then moves the TAT one interval on.
//!
//! The arithmetic is exact: times are kept in units of `1 / requests`
//! nanoseconds, so `3 per second` has an interval of exactly one third of a
//! second and no rounding error accumulates over hours. Such a "scaled" time
//! is a `u128`; a stored TAT is split into whole nanoseconds and a remainder
//! (see [`Tat`]) so it can be read without knowing the limit.

/// Nanoseconds per second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A rate limit as GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests admitted per `period_ns` at the steady rate (at least 1).
    pub requests: u32,
    /// The period in nanoseconds (a second, a minute or an hour).
    pub period_ns: u64,
    /// Requests admitted back to back when the bucket is full (at least 1).
    pub burst: u32,
}

/// A theoretical arrival time: `nanos + frac / requests` nanoseconds since
/// the Unix epoch, with `frac < requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tat {
    pub nanos: u64,
    pub frac: u32,
}

/// What GCRA decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; store `tat` for the key.
    Allow {
        tat: Tat,
        /// Requests that would still be admitted right now.
        remaining: u32,
        /// Nanoseconds until the bucket is full again.
        reset_ns: u64,
    },
    /// Over the limit; the stored state does not change.
    Deny {
        /// Nanoseconds until one request would be admitted.
        retry_after_ns: u64,
        /// Nanoseconds until the bucket is full again.
        reset_ns: u64,
    },
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }

    /// Requests still admitted right now (0 when denied).
    pub fn remaining(&self) -> u32 {
        match self {
            Verdict::Allow { remaining, .. } => *remaining,
            Verdict::Deny { .. } => 0,
        }
    }

    pub fn reset_ns(&self) -> u64 {
        match self {
            Verdict::Allow { reset_ns, .. } | Verdict::Deny { reset_ns, .. } => *reset_ns,
        }
    }
}

impl Limit {
    /// The emission interval in scaled units (`1 / requests` ns): the period.
    fn interval(&self) -> u128 {
        u128::from(self.period_ns)
    }

    fn requests(&self) -> u128 {
        u128::from(self.requests.max(1))
    }

    fn scale(&self, nanos: u64) -> u128 {
        u128::from(nanos) * self.requests()
    }

    fn tat_scaled(&self, tat: Tat) -> u128 {
        self.scale(tat.nanos) + u128::from(tat.frac)
    }

    fn tat_from_scaled(&self, scaled: u128) -> Tat {
        let r = self.requests();
        Tat {
            nanos: u64::try_from(scaled / r).unwrap_or(u64::MAX),
            // < requests <= u32::MAX
            frac: u32::try_from(scaled % r).unwrap_or(0),
        }
    }

    /// Scaled units → whole nanoseconds, rounded up.
    fn ceil_nanos(&self, scaled: u128) -> u64 {
        let r = self.requests();
        u64::try_from(scaled.div_ceil(r)).unwrap_or(u64::MAX)
    }

    /// Decides one request at `now_ns` against the stored TAT (`None` for a
    /// key seen for the first time, which has a full bucket).
    pub fn check(&self, stored: Option<Tat>, now_ns: u64) -> Verdict {
        let t = self.interval();
        let burst = u128::from(self.burst.max(1));
        let tolerance = (burst - 1) * t;
        let now = self.scale(now_ns);
        let tat = stored.map_or(now, |s| self.tat_scaled(s)).max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Verdict::Deny {
                retry_after_ns: self.ceil_nanos(ahead - tolerance),
                reset_ns: self.ceil_nanos(ahead),
            };
        }
        let new_tat = tat + t;
        let ahead = new_tat - now; // in (0, burst * t]
        let remaining = (burst * t - ahead) / t;
        Verdict::Allow {
            tat: self.tat_from_scaled(new_tat),
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_ns: self.ceil_nanos(ahead),
        }
    }
}

/// Whole seconds for a header, rounded up, at least `min`.
pub fn ceil_secs(ns: u64, min: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SEC).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;

    fn per_sec(requests: u32, burst: u32) -> Limit {
        Limit {
            requests,
            period_ns: S,
            burst,
        }
    }

    /// Runs `n` requests at the given instants, feeding the state back.
    fn admitted(limit: Limit, instants: impl IntoIterator<Item = u64>) -> usize {
        let mut state = None;
        let mut n = 0;
        for now in instants {
            if let Verdict::Allow { tat, .. } = limit.check(state, now) {
                state = Some(tat);
                n += 1;
            }
        }
        n
    }

    #[test]
    fn table_of_admitted_counts() {
        // (label, limit, request instants, admitted)
        let t0 = 1_767_225_600 * S; // 2026-01-01T00:00:00Z, like the harness
        let rows: Vec<(&str, Limit, Vec<u64>, usize)> = vec![
            (
                "a full bucket admits exactly `burst` requests at one instant",
                per_sec(10, 5),
                vec![t0; 50],
                5,
            ),
            (
                "burst 1 admits one request per interval",
                per_sec(100, 1),
                (0..100).map(|i| t0 + i * 10_000_000).collect(),
                100,
            ),
            (
                "burst 1: two requests closer than the interval admit one",
                per_sec(10, 1),
                vec![t0, t0 + 99_999_999],
                1,
            ),
            (
                "flood for 10 s at 100/s burst 20 admits burst + 10 s of refill",
                per_sec(100, 20),
                // one attempt every millisecond from t0 to t0 + 10 s inclusive
                (0..=10_000).map(|i| t0 + i * 1_000_000).collect(),
                20 + 1000,
            ),
            (
                "a steady rate below the limit is never limited",
                per_sec(100, 1),
                (0..1000).map(|i| t0 + i * 20_000_000).collect(),
                1000,
            ),
            (
                "per minute: 60/min burst 60 admits 60 at once, then one per second",
                Limit {
                    requests: 60,
                    period_ns: 60 * S,
                    burst: 60,
                },
                std::iter::repeat_n(t0, 100)
                    .chain((1..=10).map(|i| t0 + i * S))
                    .collect(),
                70,
            ),
        ];
        for (label, limit, instants, want) in rows {
            assert_eq!(admitted(limit, instants), want, "{label}");
        }
    }

    #[test]
    fn three_per_second_is_exact_over_an_hour() {
        // An interval of 1/3 s rounded to whole nanoseconds would admit the
        // 10,802nd request 3.6 µs early; the exact arithmetic does not.
        let l = per_sec(3, 2);
        let t0 = 1_767_225_600 * S;
        let mut state = None;
        let mut n = 0;
        for i in 0..360_000u64 {
            if let Verdict::Allow { tat, .. } = l.check(state, t0 + i * 10_000_000) {
                state = Some(tat);
                n += 1;
            }
        }
        assert_eq!(n, 2 + 10_799, "burst + one every 1/3 s up to 3599.99 s");
        assert!(!l.check(state, t0 + 3600 * S - 1).is_allow());
        assert!(l.check(state, t0 + 3600 * S).is_allow());
    }

    #[test]
    fn first_request_reports_burst_minus_one_remaining() {
        let l = per_sec(100, 20);
        let v = l.check(None, 5 * S);
        assert_eq!(
            v,
            Verdict::Allow {
                tat: Tat {
                    nanos: 5 * S + 10_000_000,
                    frac: 0
                },
                remaining: 19,
                reset_ns: 10_000_000,
            }
        );
    }

    #[test]
    fn denied_request_says_when_to_retry_and_changes_nothing() {
        let l = per_sec(1, 2);
        let now = 100 * S;
        let Verdict::Allow { tat, .. } = l.check(None, now) else {
            panic!()
        };
        let Verdict::Allow { tat, remaining, .. } = l.check(Some(tat), now) else {
            panic!()
        };
        assert_eq!(remaining, 0);
        assert_eq!(
            l.check(Some(tat), now + S / 4),
            Verdict::Deny {
                retry_after_ns: 3 * S / 4,
                reset_ns: 2 * S - S / 4
            }
        );
        assert!(l.check(Some(tat), now + S).is_allow());
    }

    #[test]
    fn idle_key_is_a_full_bucket_again() {
        let l = per_sec(10, 3);
        let mut state = None;
        for _ in 0..3 {
            let Verdict::Allow { tat, .. } = l.check(state, S) else {
                panic!()
            };
            state = Some(tat);
        }
        assert!(!l.check(state, S).is_allow());
        // A TAT in the past counts as "now": a whole burst again, not more.
        assert_eq!(admitted(l, [1000 * S; 10]), 3);
        let v = l.check(state, 1000 * S);
        assert_eq!(v.remaining(), 2);
    }

    #[test]
    fn fractional_interval_is_kept_in_the_remainder() {
        let l = per_sec(3, 1);
        let Verdict::Allow { tat, .. } = l.check(None, 0) else {
            panic!()
        };
        assert_eq!(
            tat,
            Tat {
                nanos: 333_333_333,
                frac: 1
            }
        );
        // 333_333_333 ns is still (just) early; 333_333_334 is not.
        assert!(!l.check(Some(tat), 333_333_333).is_allow());
        assert!(l.check(Some(tat), 333_333_334).is_allow());
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        let l = Limit {
            requests: u32::MAX,
            period_ns: 3600 * S,
            burst: u32::MAX,
        };
        let v = l.check(
            Some(Tat {
                nanos: u64::MAX,
                frac: 0,
            }),
            u64::MAX,
        );
        assert!(v.is_allow());
    }

    #[test]
    fn seconds_for_headers_round_up_and_respect_the_minimum() {
        assert_eq!(ceil_secs(0, 1), 1);
        assert_eq!(ceil_secs(1, 1), 1);
        assert_eq!(ceil_secs(S, 1), 1);
        assert_eq!(ceil_secs(S + 1, 1), 2);
        assert_eq!(ceil_secs(0, 0), 0);
    }
}
