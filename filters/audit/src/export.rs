//! The bounded export queue: records wait here until a batch of them is
//! delivered to the collector. One batch is in flight at a time, so the
//! collector receives every VM's records in chain order, retries included.
//!
//! While the collector is down, records wait up to `queueLimit`; a record
//! that does not fit is dropped and counted (the caller bumps
//! `meshward_audit.export_dropped`), never lost silently — and a verifier
//! reading the collector's copy sees the gap in the chain.

use crate::config::ExportSettings;
use crate::otlp;
use std::collections::VecDeque;

/// One record waiting for export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub line: String,
    pub seq: u64,
    pub request_id: String,
    pub time_unix_nanos: u64,
    pub observed_unix_nanos: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue is full: the record was not queued.
    Dropped,
}

/// What to send: an OTLP/HTTP JSON body with the first `count` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub count: usize,
}

/// What a reply (or its absence) meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 2xx: these records are delivered.
    Delivered(usize),
    /// Connection failure, timeout, 408, 429 or 5xx: the batch stays queued
    /// and is retried after a back-off.
    Retry,
    /// Any other status: the collector refuses the data, so retrying cannot
    /// help. The batch is dropped (and counted by the caller).
    Rejected(usize),
    /// Not the call in flight (a stale token): ignored.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    token: u32,
    count: usize,
    deadline_ms: u64,
}

#[derive(Debug)]
pub struct ExportQueue {
    settings: ExportSettings,
    queue: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    next_attempt_ms: u64,
    backoff_ms: u64,
}

impl ExportQueue {
    pub fn new(settings: ExportSettings) -> Self {
        ExportQueue {
            queue: VecDeque::with_capacity(settings.batch_size.min(1024)),
            settings,
            in_flight: None,
            next_attempt_ms: 0,
            backoff_ms: 0,
        }
    }

    pub fn settings(&self) -> &ExportSettings {
        &self.settings
    }

    /// Records waiting, including those in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// New settings (a reconfiguration). Records beyond a smaller limit are
    /// dropped from the newest end; returns how many.
    pub fn reconfigure(&mut self, settings: ExportSettings) -> usize {
        let keep = settings
            .queue_limit
            .max(self.in_flight.map_or(0, |f| f.count));
        let dropped = self.queue.len().saturating_sub(keep);
        self.queue.truncate(keep);
        self.settings = settings;
        dropped
    }

    /// Whether a record pushed now would be dropped (so the caller need not
    /// build it).
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.settings.queue_limit
    }

    pub fn push(&mut self, record: Queued) -> Push {
        if self.is_full() {
            return Push::Dropped;
        }
        self.queue.push_back(record);
        Push::Queued
    }

    /// The next batch to send, if one is due: nothing in flight, the back-off
    /// elapsed, and records waiting.
    pub fn next_batch(&self, now_ms: u64, stream: &str) -> Option<Batch> {
        if self.in_flight.is_some() || now_ms < self.next_attempt_ms || self.queue.is_empty() {
            return None;
        }
        let count = self.queue.len().min(self.settings.batch_size);
        let records = self.queue.iter().take(count);
        Some(Batch {
            body: otlp::encode(&self.settings.service_name, stream, records),
            count,
        })
    }

    /// The batch was handed to the host under `token`.
    pub fn dispatched(&mut self, token: u32, count: usize, now_ms: u64) {
        // Envoy answers a timed-out call with a failure; the deadline only
        // guards against a reply that never comes.
        let timeout = u64::try_from(self.settings.timeout.as_millis()).unwrap_or(u64::MAX);
        self.in_flight = Some(InFlight {
            token,
            count,
            deadline_ms: now_ms
                .saturating_add(timeout.saturating_mul(2))
                .saturating_add(1_000),
        });
    }

    /// The host refused the call (e.g. unknown cluster): back off and retry.
    pub fn dispatch_failed(&mut self, now_ms: u64) {
        self.back_off(now_ms);
    }

    /// The reply to call `token`: `status` is `None` for a failed call
    /// (no headers: connection failure or timeout).
    pub fn on_reply(&mut self, token: u32, status: Option<u16>, now_ms: u64) -> Reply {
        let Some(flight) = self.in_flight.filter(|f| f.token == token) else {
            return Reply::Unknown;
        };
        self.in_flight = None;
        match status {
            Some(200..=299) => {
                let n = flight.count.min(self.queue.len());
                self.queue.drain(..n);
                self.backoff_ms = 0;
                self.next_attempt_ms = now_ms;
                Reply::Delivered(n)
            }
            None | Some(408) | Some(429) | Some(500..=599) => {
                self.back_off(now_ms);
                Reply::Retry
            }
            Some(_) => {
                let n = flight.count.min(self.queue.len());
                self.queue.drain(..n);
                self.next_attempt_ms = now_ms;
                Reply::Rejected(n)
            }
        }
    }

    /// A call in flight past its deadline is given up as failed; `true` if so.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        match self.in_flight {
            Some(f) if now_ms >= f.deadline_ms => {
                self.in_flight = None;
                self.back_off(now_ms);
                true
            }
            _ => false,
        }
    }

    fn back_off(&mut self, now_ms: u64) {
        let base = u64::try_from(self.settings.flush_interval.as_millis()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.settings.max_backoff.as_millis()).unwrap_or(u64::MAX);
        self.backoff_ms = if self.backoff_ms == 0 {
            base
        } else {
            self.backoff_ms.saturating_mul(2)
        }
        .min(max);
        self.next_attempt_ms = now_ms.saturating_add(self.backoff_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(batch: usize, limit: usize) -> ExportSettings {
        ExportSettings {
            cluster: "collector".into(),
            authority: "collector".into(),
            path: "/v1/logs".into(),
            timeout: Duration::from_millis(500),
            batch_size: batch,
            queue_limit: limit,
            flush_interval: Duration::from_millis(1000),
            max_backoff: Duration::from_millis(4000),
            service_name: "meshward-audit".into(),
        }
    }

    fn rec(seq: u64) -> Queued {
        Queued {
            line: format!("{{\"seq\":{seq}}}"),
            seq,
            request_id: format!("r{seq}"),
            time_unix_nanos: seq,
            observed_unix_nanos: seq,
        }
    }

    #[test]
    fn delivered_batches_leave_the_queue_in_order() {
        let mut q = ExportQueue::new(settings(2, 10));
        for i in 1..=3 {
            assert_eq!(q.push(rec(i)), Push::Queued);
        }
        let b = q.next_batch(0, "s").unwrap();
        assert_eq!(b.count, 2);
        q.dispatched(4, b.count, 0);
        assert!(
            q.next_batch(0, "s").is_none(),
            "one batch in flight at a time"
        );
        assert_eq!(q.on_reply(4, Some(200), 10), Reply::Delivered(2));
        let b = q.next_batch(10, "s").unwrap();
        assert_eq!(b.count, 1);
        assert!(String::from_utf8(b.body)
            .unwrap()
            .contains("{\\\"seq\\\":3}"));
    }

    #[test]
    fn failures_keep_the_batch_and_back_off_exponentially() {
        let mut q = ExportQueue::new(settings(2, 10));
        q.push(rec(1));
        q.dispatched(4, 1, 0);
        assert_eq!(q.on_reply(4, None, 0), Reply::Retry);
        assert!(q.next_batch(999, "s").is_none());
        assert!(q.next_batch(1000, "s").is_some());
        q.dispatched(8, 1, 1000);
        assert_eq!(q.on_reply(8, Some(503), 1000), Reply::Retry);
        assert!(q.next_batch(2999, "s").is_none());
        q.dispatched(12, 1, 3000);
        assert_eq!(q.on_reply(12, Some(429), 3000), Reply::Retry);
        q.dispatched(16, 1, 7000);
        assert_eq!(q.on_reply(16, None, 7000), Reply::Retry);
        assert!(q.next_batch(10_999, "s").is_none(), "capped at maxBackoff");
        assert!(q.next_batch(11_000, "s").is_some());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_full_queue_drops_new_records_and_says_so() {
        let mut q = ExportQueue::new(settings(2, 3));
        for i in 1..=3 {
            assert_eq!(q.push(rec(i)), Push::Queued);
        }
        assert_eq!(q.push(rec(4)), Push::Dropped);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_refused_batch_is_dropped_not_retried_forever() {
        let mut q = ExportQueue::new(settings(2, 10));
        q.push(rec(1));
        q.push(rec(2));
        q.push(rec(3));
        q.dispatched(4, 2, 0);
        assert_eq!(q.on_reply(4, Some(400), 0), Reply::Rejected(2));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn stale_tokens_are_ignored_and_lost_replies_expire() {
        let mut q = ExportQueue::new(settings(2, 10));
        q.push(rec(1));
        q.dispatched(4, 1, 0);
        assert_eq!(q.on_reply(8, Some(200), 0), Reply::Unknown);
        assert!(!q.expire(1_999));
        assert!(q.expire(2_000));
        assert_eq!(q.on_reply(4, Some(200), 2_000), Reply::Unknown);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn reconfiguring_to_a_smaller_limit_drops_the_newest() {
        let mut q = ExportQueue::new(settings(2, 10));
        for i in 1..=5 {
            q.push(rec(i));
        }
        assert_eq!(q.reconfigure(settings(2, 3)), 2);
        assert_eq!(q.len(), 3);
    }
}
