//! Counters defined on first use: the filters name metrics from bounded sets
//! (a reason, a rule id, a phase), so the name → id map stays small.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::HashMap;

/// One VM's counters by name.
#[derive(Debug, Default)]
pub struct Counters {
    ids: RefCell<HashMap<String, u32>>,
}

impl Counters {
    /// Adds one to the counter `name`, defining it the first time. A host
    /// that refuses the definition costs the count, never the request.
    pub fn count(&self, name: &str) {
        let mut ids = self.ids.borrow_mut();
        let id = match ids.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    ids.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}
