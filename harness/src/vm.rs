//! One plugin VM: a wasmtime `Store` with its host state, the plugin's exported
//! callbacks, and start-up as Envoy does it.

use crate::abi::BufferType;
use crate::host::{self, ContextKind, HostState};
use anyhow::{anyhow, bail, Context as _};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;
use wasmtime::{Engine, Instance, Linker, Module, Store, TypedFunc, WasmParams, WasmResults};

/// One engine for the process: compiled modules are shared by every proxy and
/// VM (they are immutable); all mutable state lives in each VM's `Store`.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// Compiles a `.wasm` file once per process (keyed by path, size and mtime).
pub(crate) fn load_module(path: &Path) -> anyhow::Result<Module> {
    type Cache = Mutex<HashMap<PathBuf, (u64, Option<SystemTime>, Module)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "plugin module {} not found (run `make build`)",
            path.display()
        )
    })?;
    let (len, mtime) = (meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(cache) = cache.lock() {
        if let Some((l, m, module)) = cache.get(path) {
            if *l == len && *m == mtime {
                return Ok(module.clone());
            }
        }
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let module = Module::new(engine(), &bytes)
        .map_err(|e| anyhow!("{}: not a loadable Wasm module: {e}", path.display()))?;
    if let Ok(mut cache) = cache.lock() {
        cache.insert(path.to_path_buf(), (len, mtime, module.clone()));
    }
    Ok(module)
}

/// The ABI versions whose marker export this host accepts.
const ABI_MARKERS: &[&str] = &["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

type F1 = TypedFunc<i32, ()>;
type F2 = TypedFunc<(i32, i32), ()>;
type F2R = TypedFunc<(i32, i32), i32>;
type F3 = TypedFunc<(i32, i32, i32), ()>;
type F3R = TypedFunc<(i32, i32, i32), i32>;
type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// Picks one callback out of [`Callbacks`].
pub(crate) type Pick<P, R> = for<'a> fn(&'a Callbacks) -> Option<&'a TypedFunc<P, R>>;

/// The plugin's callbacks; each is optional, as the ABI says.
pub(crate) struct Callbacks {
    pub context_create: Option<F2>,
    pub vm_start: Option<F2R>,
    pub configure: Option<F2R>,
    pub request_headers: Option<F3R>,
    pub request_body: Option<F3R>,
    pub request_trailers: Option<F2R>,
    pub response_headers: Option<F3R>,
    pub response_body: Option<F3R>,
    pub response_trailers: Option<F2R>,
    pub log: Option<F1>,
    pub done: Option<TypedFunc<i32, i32>>,
    pub delete: Option<F1>,
    pub tick: Option<F1>,
    pub queue_ready: Option<F2>,
    pub http_call_response: Option<F5>,
    pub grpc_receive_initial_metadata: Option<F3>,
    pub grpc_receive: Option<F3>,
    pub grpc_receive_trailing_metadata: Option<F3>,
    pub grpc_close: Option<F3>,
}

fn typed<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &str,
) -> anyhow::Result<Option<TypedFunc<P, R>>> {
    if instance.get_func(&mut *store, name).is_none() {
        return Ok(None);
    }
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .map(Some)
        .map_err(|e| anyhow!("export {name} has the wrong signature: {e}"))
}

impl Callbacks {
    fn new(store: &mut Store<HostState>, i: &Instance) -> anyhow::Result<Self> {
        Ok(Callbacks {
            context_create: typed(store, i, "proxy_on_context_create")?,
            vm_start: typed(store, i, "proxy_on_vm_start")?,
            configure: typed(store, i, "proxy_on_configure")?,
            request_headers: typed(store, i, "proxy_on_request_headers")?,
            request_body: typed(store, i, "proxy_on_request_body")?,
            request_trailers: typed(store, i, "proxy_on_request_trailers")?,
            response_headers: typed(store, i, "proxy_on_response_headers")?,
            response_body: typed(store, i, "proxy_on_response_body")?,
            response_trailers: typed(store, i, "proxy_on_response_trailers")?,
            log: typed(store, i, "proxy_on_log")?,
            done: typed(store, i, "proxy_on_done")?,
            delete: typed(store, i, "proxy_on_delete")?,
            tick: typed(store, i, "proxy_on_tick")?,
            queue_ready: typed(store, i, "proxy_on_queue_ready")?,
            http_call_response: typed(store, i, "proxy_on_http_call_response")?,
            grpc_receive_initial_metadata: typed(
                store,
                i,
                "proxy_on_grpc_receive_initial_metadata",
            )?,
            grpc_receive: typed(store, i, "proxy_on_grpc_receive")?,
            grpc_receive_trailing_metadata: typed(
                store,
                i,
                "proxy_on_grpc_receive_trailing_metadata",
            )?,
            grpc_close: typed(store, i, "proxy_on_grpc_close")?,
        })
    }
}

/// A trap: the VM is failed from now on (the reason is in the log).
#[derive(Debug, Clone)]
pub(crate) struct Trap;

pub(crate) struct Vm {
    pub store: Store<HostState>,
    pub callbacks: Callbacks,
    instance: Instance,
    pub failed: bool,
}

impl Vm {
    /// Instantiates the module; the VM is not started yet.
    pub fn instantiate(
        linker: &Linker<HostState>,
        module: &Module,
        host: HostState,
    ) -> anyhow::Result<Vm> {
        if !ABI_MARKERS.iter().any(|m| module.get_export(m).is_some()) {
            bail!("the module exports no supported proxy-wasm ABI version (want proxy_abi_version_0_2_1)");
        }
        let mut store = Store::new(engine(), host);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| anyhow!("instantiating the module failed: {e}"))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("the module exports no memory"))?;
        let allocate = match typed::<i32, i32>(&mut store, &instance, "proxy_on_memory_allocate")? {
            Some(f) => Some(f),
            None => typed::<i32, i32>(&mut store, &instance, "malloc")?,
        };
        if allocate.is_none() {
            bail!("the module exports neither proxy_on_memory_allocate nor malloc");
        }
        store.data_mut().memory = Some(memory);
        store.data_mut().allocate = allocate;
        let callbacks = Callbacks::new(&mut store, &instance)?;
        Ok(Vm {
            store,
            callbacks,
            instance,
            failed: false,
        })
    }

    /// Envoy's start-up: `_initialize` (then `main` if exported), or `_start`;
    /// then for the plugin `proxy_on_context_create(root, 0)`,
    /// `proxy_on_vm_start` and `proxy_on_configure`. `Err` carries the reason.
    pub fn start(&mut self) -> Result<(), String> {
        let store = &mut self.store;
        let init = self
            .instance
            .get_typed_func::<(), ()>(&mut *store, "_initialize")
            .ok();
        let result = match init {
            Some(init) => init.call(&mut *store, ()).and_then(|_| {
                match self
                    .instance
                    .get_typed_func::<(i32, i32), i32>(&mut *store, "main")
                {
                    Ok(main) => main.call(&mut *store, (0, 0)).map(|_| ()),
                    Err(_) => Ok(()),
                }
            }),
            None => match self
                .instance
                .get_typed_func::<(), ()>(&mut *store, "_start")
            {
                Ok(start) => start.call(&mut *store, ()),
                Err(_) => Ok(()),
            },
        };
        store.data_mut().starting = false;
        result.map_err(|e| format!("module start-up trapped: {e}"))?;

        let root = store.data_mut().new_context_id();
        {
            let host = store.data_mut();
            host.contexts.insert(root, ContextKind::Root);
            host.root_context = root;
            host.effective_context = root;
        }
        if let Some(f) = self.callbacks.context_create.as_ref() {
            f.call(&mut *store, (root as i32, 0))
                .map_err(|e| format!("proxy_on_context_create trapped: {e}"))?;
        }
        let vm_config = store.data().plugin.vm_configuration.clone();
        let plugin_config = store.data().plugin.configuration.clone();
        if let Some(f) = self.callbacks.vm_start.as_ref() {
            let len = vm_config.len() as i32;
            store.data_mut().configuration_buffer = Some((BufferType::VmConfiguration, vm_config));
            store.data_mut().effective_context = root;
            let ok = f.call(&mut *store, (root as i32, len));
            store.data_mut().configuration_buffer = None;
            match ok {
                Ok(0) => return Err("proxy_on_vm_start returned false".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("proxy_on_vm_start trapped: {e}")),
            }
        }
        self.configure(plugin_config)
    }

    /// `proxy_on_configure` with this plugin configuration.
    pub fn configure(&mut self, configuration: Vec<u8>) -> Result<(), String> {
        let Some(f) = self.callbacks.configure.as_ref() else {
            return Ok(());
        };
        let store = &mut self.store;
        let root = store.data().root_context;
        let len = configuration.len() as i32;
        store.data_mut().configuration_buffer =
            Some((BufferType::PluginConfiguration, configuration));
        store.data_mut().effective_context = root;
        let ok = f.call(&mut *store, (root as i32, len));
        store.data_mut().configuration_buffer = None;
        match ok {
            Ok(0) => Err("proxy_on_configure returned false".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("proxy_on_configure trapped: {e}")),
        }
    }

    /// Calls a callback in `context`. A trap fails the VM. The callback is
    /// picked by reference: cloning a `TypedFunc` costs a type-registry round trip.
    pub fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        pick: Pick<P, R>,
        context: u32,
        args: P,
    ) -> Result<Option<R>, Trap> {
        let Vm {
            store,
            callbacks,
            failed,
            ..
        } = self;
        let Some(f) = pick(callbacks) else {
            return Ok(None);
        };
        store.data_mut().effective_context = context;
        match f.call(&mut *store, args) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                *failed = true;
                let message = format!("{e:#}");
                let host = store.data();
                host.log(
                    crate::abi::LogLevel::Critical,
                    format!(
                        "wasm trap in plugin {}: {}",
                        host.plugin.name,
                        first_line(&message)
                    ),
                );
                Err(Trap)
            }
        }
    }

    pub fn host(&self) -> &HostState {
        self.store.data()
    }

    /// The size of the VM's linear memory in bytes (what it has grown to).
    pub fn memory_bytes(&self) -> usize {
        self.host()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    pub fn host_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A linker with every hostcall bound, and ENOSYS stubs for the module's other
/// WASI imports.
pub(crate) fn linker_for(modules: &[&Module]) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine());
    host::add_to_linker(&mut linker)?;
    for module in modules {
        host::add_wasi_stubs(&mut linker, module)?;
        for import in module.imports() {
            if import.module() == "env" && !import.name().starts_with("proxy_") {
                bail!(
                    "the module imports env.{}, which Envoy does not provide",
                    import.name()
                );
            }
        }
    }
    Ok(linker)
}
