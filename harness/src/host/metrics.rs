//! `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`. Ids are per VM and carry the type in their low 2 bits;
//! values live in the process by name, so every worker adds to one stat.

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::HostState;
use crate::abi::{MetricType, Status};
use crate::process::Metric;
use std::collections::VecDeque;
use wasmtime::Linker;

const MAX_SAMPLES: usize = 10_000;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap("env", "proxy_define_metric", proxy_define_metric)?;
    linker.func_wrap("env", "proxy_increment_metric", proxy_increment_metric)?;
    linker.func_wrap("env", "proxy_record_metric", proxy_record_metric)?;
    linker.func_wrap("env", "proxy_get_metric", proxy_get_metric)?;
    Ok(())
}

fn proxy_define_metric(
    mut caller: Cx<'_>,
    kind: i32,
    name_ptr: i32,
    name_len: i32,
    return_id: i32,
) -> HostResult {
    let Some(kind) = MetricType::from_raw(kind) else {
        return Ok(Status::BadArgument.code());
    };
    let name = or_status!(mem::read_string(&mut caller, name_ptr, name_len));
    let host = caller.data_mut();
    {
        let mut process = host.process.borrow_mut();
        let metric = process.metrics.entry(name.clone()).or_insert(Metric {
            kind,
            value: 0,
            samples: VecDeque::new(),
        });
        if metric.kind != kind {
            return Ok(Status::BadArgument.code());
        }
    }
    let id = match host.metric_by_name.get(&(name.clone(), kind as u32)) {
        Some(id) => *id,
        None => {
            let id = host.new_metric_id(kind);
            host.metric_ids.insert(id, (name.clone(), kind));
            host.metric_by_name.insert((name, kind as u32), id);
            id
        }
    };
    Ok(mem::status(mem::write_u32(&mut caller, return_id, id)))
}

/// Applies `f` to the metric behind `id`, or answers NOT_FOUND.
fn with_metric(caller: &Cx<'_>, id: i32, f: impl FnOnce(&mut Metric) -> Status) -> i32 {
    let host = caller.data();
    let Some((name, _)) = host.metric_ids.get(&(id as u32)) else {
        return Status::NotFound.code();
    };
    let mut process = host.process.borrow_mut();
    match process.metrics.get_mut(name) {
        Some(metric) => f(metric).code(),
        None => Status::NotFound.code(),
    }
}

fn proxy_increment_metric(caller: Cx<'_>, id: i32, offset: i64) -> HostResult {
    Ok(with_metric(&caller, id, |m| match m.kind {
        // Envoy adds only positive deltas to a counter: 0 and below are BAD_ARGUMENT.
        MetricType::Counter if offset <= 0 => Status::BadArgument,
        MetricType::Counter => {
            m.value = m.value.saturating_add(offset);
            Status::Ok
        }
        MetricType::Gauge => {
            m.value = m.value.saturating_add(offset).max(0);
            Status::Ok
        }
        MetricType::Histogram => Status::BadArgument,
    }))
}

/// On a counter, `record` adds (Envoy's behaviour); on a gauge it sets; on a
/// histogram it records a sample.
fn proxy_record_metric(caller: Cx<'_>, id: i32, value: i64) -> HostResult {
    let value = value as u64;
    Ok(with_metric(&caller, id, |m| {
        match m.kind {
            MetricType::Counter => m.value = m.value.saturating_add(value as i64),
            MetricType::Gauge => m.value = value as i64,
            MetricType::Histogram => {
                m.value += 1;
                if m.samples.len() == MAX_SAMPLES {
                    m.samples.pop_front();
                }
                m.samples.push_back(value);
            }
        }
        Status::Ok
    }))
}

fn proxy_get_metric(mut caller: Cx<'_>, id: i32, return_value: i32) -> HostResult {
    let mut value = 0u64;
    let status = with_metric(&caller, id, |m| match m.kind {
        MetricType::Histogram => Status::BadArgument,
        _ => {
            value = m.value as u64;
            Status::Ok
        }
    });
    if status != Status::Ok.code() {
        return Ok(status);
    }
    Ok(mem::status(mem::write_u64(
        &mut caller,
        return_value,
        value,
    )))
}
