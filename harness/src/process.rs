//! State the whole Envoy process holds, shared by every worker VM: the clock,
//! logs, metrics by name, and shared data and queues per `vm_id`.

use crate::abi::{MetricType, Status};
use crate::exchange::LogLine;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The virtual clock. Tests move it; nothing reads the machine's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub wall_nanos: u64,
    pub monotonic_nanos: u64,
}

/// A metric as Envoy's stats store holds it: one value per name, whatever VM
/// defined it.
#[derive(Debug, Clone)]
pub struct Metric {
    pub kind: MetricType,
    /// Counter total, gauge value, or for a histogram the number of samples.
    pub value: i64,
    /// Histogram samples (bounded: the last 10 000).
    pub samples: VecDeque<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct SharedData {
    entries: HashMap<String, (Vec<u8>, u32)>,
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub vm_id: String,
    pub name: String,
    pub owner: (crate::host::VmKey, u32),
    pub items: VecDeque<Vec<u8>>,
}

/// Envoy's node: `node.id`, `node.cluster`, `node.metadata.*` (Istio puts
/// `NAMESPACE`, `WORKLOAD_NAME`, … there).
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    pub metadata: Vec<(String, String)>,
}

pub(crate) struct Process {
    pub clock: Clock,
    pub node: Node,
    /// Clusters that `proxy_http_call` / `proxy_grpc_call` may name.
    pub clusters: Vec<String>,
    /// The route's upstream cluster (`xds.cluster_name`).
    pub upstream_cluster: String,
    logs: Vec<LogLine>,
    /// Lines dropped from the front once `log_limit` was reached.
    logs_dropped: usize,
    /// How many log lines the process keeps (Envoy writes them out; the
    /// harness keeps the newest for tests to read).
    pub log_limit: usize,
    pub metrics: BTreeMap<String, Metric>,
    shared_data: HashMap<String, SharedData>,
    /// CAS values come from one counter starting at 1, as in proxy-wasm-cpp-host.
    next_cas: u32,
    /// Forced CAS_MISMATCH answers still to give (tests of retry loops).
    pub injected_cas_mismatches: usize,
    pub queues: Vec<Queue>,
    /// `proxy_on_queue_ready` calls to deliver: (owner VM, root context, queue id).
    pub queue_ready: Vec<(crate::host::VmKey, u32, u32)>,
}

/// Log lines kept by default: plenty for any test, bounded for long replays.
pub const DEFAULT_LOG_LIMIT: usize = 200_000;

/// The next CAS value; 0 is skipped when the counter wraps, as 0 means "no cas".
fn take_cas(counter: &mut u32) -> u32 {
    let cas = *counter;
    *counter = counter.wrapping_add(1).max(1);
    cas
}

impl Process {
    pub fn new(start_nanos: u64, node: Node) -> Self {
        Process {
            node,
            clusters: Vec::new(),
            upstream_cluster: "app".to_string(),
            clock: Clock {
                wall_nanos: start_nanos,
                monotonic_nanos: 1_000_000_000,
            },
            logs: Vec::new(),
            logs_dropped: 0,
            log_limit: DEFAULT_LOG_LIMIT,
            metrics: BTreeMap::new(),
            shared_data: HashMap::new(),
            next_cas: 1,
            injected_cas_mismatches: 0,
            queues: Vec::new(),
            queue_ready: Vec::new(),
        }
    }

    pub fn push_log(&mut self, line: LogLine) {
        if self.logs.len() >= self.log_limit.max(1) {
            let drop = self.logs.len() / 2 + 1;
            self.logs.drain(..drop);
            self.logs_dropped += drop;
        }
        self.logs.push(line);
    }

    /// A position in the log that stays valid when old lines are dropped.
    pub fn log_mark(&self) -> usize {
        self.logs_dropped + self.logs.len()
    }

    /// The lines logged since `mark` (those still kept).
    pub fn logs_since(&self, mark: usize) -> &[LogLine] {
        let from = mark.saturating_sub(self.logs_dropped).min(self.logs.len());
        &self.logs[from..]
    }

    pub fn get_shared(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared_data
            .get(vm_id)
            .and_then(|d| d.entries.get(key))
            .cloned()
    }

    /// Envoy's rules: cas 0 writes unconditionally; a missing key is created
    /// whatever the cas; a stale non-zero cas is CAS_MISMATCH.
    pub fn set_shared(&mut self, vm_id: &str, key: &str, value: Vec<u8>, cas: u32) -> Status {
        let data = self.shared_data.entry(vm_id.to_string()).or_default();
        if let Some((_, current)) = data.entries.get(key) {
            if cas != 0 && self.injected_cas_mismatches > 0 {
                self.injected_cas_mismatches -= 1;
                // As if another worker wrote the same value first.
                let bumped = take_cas(&mut self.next_cas);
                if let Some(entry) = data.entries.get_mut(key) {
                    entry.1 = bumped;
                }
                return Status::CasMismatch;
            }
            if cas != 0 && cas != *current {
                return Status::CasMismatch;
            }
        }
        let cas = take_cas(&mut self.next_cas);
        data.entries.insert(key.to_string(), (value, cas));
        Status::Ok
    }

    pub fn shared_keys(&self, vm_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .shared_data
            .get(vm_id)
            .map(|d| d.entries.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    pub fn metric_value(&self, name: &str) -> Option<i64> {
        self.metrics.get(name).map(|m| m.value)
    }
}
