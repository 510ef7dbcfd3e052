//! Shared data and shared queues. Both are per `vm_id` and shared by every
//! worker VM of the process (ARCHITECTURE §4).

use super::mem::or_status;
use super::mem::{self, Cx, HostResult};
use super::HostState;
use crate::abi::Status;
use crate::process::Queue;
use std::collections::VecDeque;
use wasmtime::Linker;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.func_wrap("env", "proxy_get_shared_data", proxy_get_shared_data)?;
    linker.func_wrap("env", "proxy_set_shared_data", proxy_set_shared_data)?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        proxy_register_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        proxy_resolve_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        proxy_enqueue_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        proxy_dequeue_shared_queue,
    )?;
    Ok(())
}

fn proxy_get_shared_data(
    mut caller: Cx<'_>,
    key_ptr: i32,
    key_len: i32,
    return_ptr: i32,
    return_size: i32,
    return_cas: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let key = or_status!(mem::read_string(&mut caller, key_ptr, key_len));
    let found = {
        let host = caller.data();
        host.process.borrow().get_shared(&host.plugin.vm_id, &key)
    };
    let Some((value, cas)) = found else {
        return Ok(Status::NotFound.code());
    };
    if let Err(s) = mem::return_bytes(&mut caller, &value, return_ptr, return_size)? {
        return Ok(s.code());
    }
    Ok(mem::status(mem::write_u32(&mut caller, return_cas, cas)))
}

fn proxy_set_shared_data(
    mut caller: Cx<'_>,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
    cas: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let key = or_status!(mem::read_string(&mut caller, key_ptr, key_len));
    let value = or_status!(mem::read(&mut caller, value_ptr, value_len));
    let host = caller.data();
    let status = host
        .process
        .borrow_mut()
        .set_shared(&host.plugin.vm_id, &key, value, cas as u32);
    Ok(status.code())
}

/// Queue ids are 1-based indexes into the process's queue list.
fn queue_id(index: usize) -> u32 {
    index as u32 + 1
}

fn proxy_register_shared_queue(
    mut caller: Cx<'_>,
    name_ptr: i32,
    name_len: i32,
    return_id: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let name = or_status!(mem::read_string(&mut caller, name_ptr, name_len));
    let id = {
        let host = caller.data();
        // proxy_on_queue_ready goes to the root context, even when a stream
        // context registered the queue (proxy-wasm-cpp-host registers the root's id).
        let owner = (host.vm, host.root_context);
        let vm_id = host.plugin.vm_id.clone();
        let mut process = host.process.borrow_mut();
        match process
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        {
            Some(i) => {
                // Registering again moves the queue to the new owner, as in Envoy.
                process.queues[i].owner = owner;
                queue_id(i)
            }
            None => {
                process.queues.push(Queue {
                    vm_id,
                    name,
                    owner,
                    items: VecDeque::new(),
                });
                queue_id(process.queues.len() - 1)
            }
        }
    };
    Ok(mem::status(mem::write_u32(&mut caller, return_id, id)))
}

fn proxy_resolve_shared_queue(
    mut caller: Cx<'_>,
    vm_id_ptr: i32,
    vm_id_len: i32,
    name_ptr: i32,
    name_len: i32,
    return_id: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let vm_id = or_status!(mem::read_string(&mut caller, vm_id_ptr, vm_id_len));
    let name = or_status!(mem::read_string(&mut caller, name_ptr, name_len));
    let found = caller
        .data()
        .process
        .borrow()
        .queues
        .iter()
        .position(|q| q.vm_id == vm_id && q.name == name);
    match found {
        Some(i) => Ok(mem::status(mem::write_u32(
            &mut caller,
            return_id,
            queue_id(i),
        ))),
        None => Ok(Status::NotFound.code()),
    }
}

fn proxy_enqueue_shared_queue(
    mut caller: Cx<'_>,
    id: i32,
    value_ptr: i32,
    value_len: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let value = or_status!(mem::read(&mut caller, value_ptr, value_len));
    let host = caller.data();
    let mut process = host.process.borrow_mut();
    let index = (id as u32 as usize).wrapping_sub(1);
    let Some(queue) = process.queues.get_mut(index) else {
        return Ok(Status::NotFound.code());
    };
    queue.items.push_back(value);
    let owner = queue.owner;
    process.queue_ready.push((owner.0, owner.1, id as u32));
    Ok(Status::Ok.code())
}

fn proxy_dequeue_shared_queue(
    mut caller: Cx<'_>,
    id: i32,
    return_ptr: i32,
    return_size: i32,
) -> HostResult {
    if mem::starting(&caller) {
        return Ok(Status::InternalFailure.code());
    }
    let item = {
        let host = caller.data();
        let mut process = host.process.borrow_mut();
        let index = (id as u32 as usize).wrapping_sub(1);
        match process.queues.get_mut(index) {
            None => return Ok(Status::NotFound.code()),
            Some(q) => q.items.pop_front(),
        }
    };
    match item {
        None => Ok(Status::Empty.code()),
        Some(v) => Ok(mem::status(mem::return_bytes(
            &mut caller,
            &v,
            return_ptr,
            return_size,
        )?)),
    }
}
