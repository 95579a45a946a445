//! The wasmtime runtime: one engine per process, compiled components cached on disk, one
//! `Store` per run with memory, table, instance, CPU and wall-clock limits.

pub mod bindings;
pub mod budget;
pub mod cache;
mod host_impl;
pub mod limits;
pub mod state;
mod v0_1_0;
mod v0_2_0;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

use cache::ComponentCache;
use limits::LimitExceeded;
use state::RunState;

use crate::pipeline::asset::AssetKind;

/// Epoch tick: the resolution of deadlines and CPU accounting.
pub const EPOCH_TICK_MS: u64 = 10;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component.
    #[error("{path} is not a WebAssembly component ({reason}); build plugins with `cargo build --target wasm32-wasip2` (./scripts/build-plugins)")]
    NotAComponent { path: PathBuf, reason: String },
    /// The component was built against a WIT version this host does not serve.
    #[error("{path} targets airlock:connector@{found}; this host serves {supported}; rebuild the plugin against a supported airlock-sdk")]
    WitVersion {
        path: PathBuf,
        found: String,
        supported: String,
    },
    /// The component does not fit the connector world.
    #[error("{path} is not an airlock connector: {reason}")]
    NotAConnector { path: PathBuf, reason: String },
}

/// A plugin compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The file it came from.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// The `airlock:connector` version it was built against.
    pub wit_version: String,
    /// Whether the compiled form came from the cache.
    pub from_cache: bool,
    pre: PluginPre,
}

/// A pre-linked component, by the WIT version it speaks.
#[derive(Clone)]
enum PluginPre {
    V0_1_0(bindings::v0_1_0::ConnectorPre<RunState>),
    V0_2_0(bindings::v0_2_0::ConnectorPre<RunState>),
}

/// An instantiated plugin, by the WIT version it speaks.
pub enum ConnectorInstance {
    /// A plugin built against `airlock:connector@0.1.0`.
    V0_1_0(bindings::v0_1_0::Connector),
    /// A plugin built against `airlock:connector@0.2.0`.
    V0_2_0(bindings::v0_2_0::Connector),
}

/// What a plugin says about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginDescription {
    pub name: String,
    pub version: String,
    pub description: String,
    pub capabilities: Vec<String>,
    pub kinds: Vec<String>,
    pub config_schema_json: Option<String>,
}

/// The process-wide runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: ComponentCache,
    ticker_stop: Arc<AtomicBool>,
    /// The `airlock` executable that compiles a component in a limited child process
    /// ([`crate::plugins::compile`]); `None` compiles in this process (a library user that
    /// cannot re-execute itself).
    compiler: Option<PathBuf>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Compiles components that are not cached yet in a child process running `program` (the
    /// `airlock` executable) under time and memory limits, as `plugin install` does.
    pub fn with_compiler(mut self, program: PathBuf) -> Self {
        self.compiler = Some(program);
        self
    }

    /// The executable that compiles components in a limited child, if any.
    pub fn compiler(&self) -> Option<&Path> {
        self.compiler.as_deref()
    }

    /// The component cache directory, if caching is on.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.dir()
    }

    /// Whether the compiled form of the component with this SHA-256 is cached.
    pub fn is_cached(&self, wasm_sha256: &str) -> bool {
        self.cache.contains(&self.engine, wasm_sha256)
    }

    /// Creates the engine, links the host interfaces and starts the epoch ticker.
    /// `cache_dir: None` disables the on-disk component cache.
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(1 << 20);
        config.async_stack_size(2 << 20);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Both versions' interfaces live side by side: their names carry the version.
        bindings::v0_1_0::Connector::add_to_linker::<RunState, HasSelf<RunState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::v0_2_0::Connector::add_to_linker::<RunState, HasSelf<RunState>>(
            &mut linker,
            |s| s,
        )?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                    ticking.increment_epoch();
                }
            })
            .map_err(wasmtime::Error::new)?;
        Ok(Runtime {
            engine,
            linker,
            cache: ComponentCache::new(cache_dir),
            ticker_stop,
            compiler: None,
        })
    }

    /// Reads, verifies, compiles (or loads from cache) and pre-links a plugin.
    pub fn load_plugin(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_plugin_bytes(path, &wasm)
    }

    /// Like [`Runtime::load_plugin`] for bytes already read.
    pub fn load_plugin_bytes(&self, path: &Path, wasm: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        if !is_component(wasm) {
            let reason = if wasm.starts_with(b"\0asm") {
                "it is a core WebAssembly module, not a component".to_string()
            } else {
                "it does not start with the WebAssembly magic bytes".to_string()
            };
            return Err(LoadError::NotAComponent {
                path: path.to_path_buf(),
                reason,
            });
        }
        let (component, from_cache) = self
            .cache
            .load_or_compile(&self.engine, wasm, &sha256)
            .map_err(|e| LoadError::NotAComponent {
                path: path.to_path_buf(),
                reason: first_line(&e),
            })?;
        let wit_version =
            wit_version_of(&component, &self.engine).unwrap_or_else(|| "0.1.0".into());
        if !bindings::SUPPORTED_WIT_VERSIONS.contains(&wit_version.as_str()) {
            return Err(LoadError::WitVersion {
                path: path.to_path_buf(),
                found: wit_version,
                supported: bindings::SUPPORTED_WIT_VERSIONS.join(", "),
            });
        }
        let not_connector = |e: wasmtime::Error| LoadError::NotAConnector {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(not_connector)?;
        let pre = match wit_version.as_str() {
            "0.1.0" => PluginPre::V0_1_0(
                bindings::v0_1_0::ConnectorPre::new(instance_pre).map_err(not_connector)?,
            ),
            _ => PluginPre::V0_2_0(
                bindings::v0_2_0::ConnectorPre::new(instance_pre).map_err(not_connector)?,
            ),
        };
        Ok(LoadedPlugin {
            path: path.to_path_buf(),
            sha256,
            wit_version,
            from_cache,
            pre,
        })
    }

    /// A store for one run, with every limit of `state` armed.
    pub fn new_store(&self, state: RunState) -> Store<RunState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            s.cpu_ticks += 1;
            if Instant::now() >= s.deadline {
                return Err(wasmtime::Error::new(LimitExceeded::Deadline(s.deadline_s)));
            }
            if s.cpu_ticks > s.cpu_limit_ticks {
                return Err(wasmtime::Error::new(LimitExceeded::Cpu(s.cpu_s)));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Instantiates the plugin in `store` and asks it to describe itself.
    pub async fn instantiate(
        &self,
        plugin: &LoadedPlugin,
        store: &mut Store<RunState>,
    ) -> wasmtime::Result<ConnectorInstance> {
        Ok(match &plugin.pre {
            PluginPre::V0_1_0(pre) => {
                ConnectorInstance::V0_1_0(pre.instantiate_async(store).await?)
            }
            PluginPre::V0_2_0(pre) => {
                ConnectorInstance::V0_2_0(pre.instantiate_async(store).await?)
            }
        })
    }
}

/// Calls `describe` on an instance.
pub async fn describe(
    instance: &ConnectorInstance,
    store: &mut Store<RunState>,
) -> wasmtime::Result<PluginDescription> {
    match instance {
        ConnectorInstance::V0_1_0(i) => v0_1_0_calls::describe(i, store).await,
        ConnectorInstance::V0_2_0(i) => v0_2_0_calls::describe(i, store).await,
    }
}

/// The outcome of `extract` as the host sees it.
pub enum ExtractOutcome {
    /// The plugin finished and reported this summary.
    Finished { warnings: Vec<String> },
    /// The plugin returned an error of this kind.
    PluginError { kind: &'static str, message: String },
}

/// Calls `extract` on an instance.
pub async fn extract(
    instance: &ConnectorInstance,
    store: &mut Store<RunState>,
    config_json: &str,
    include: Vec<String>,
    exclude: Vec<String>,
    kinds: &[AssetKind],
) -> wasmtime::Result<ExtractOutcome> {
    match instance {
        ConnectorInstance::V0_1_0(i) => {
            v0_1_0_calls::extract(i, store, config_json, include, exclude, kinds).await
        }
        ConnectorInstance::V0_2_0(i) => {
            v0_2_0_calls::extract(i, store, config_json, include, exclude, kinds).await
        }
    }
}

/// The export calls, identical in shape for every version; only the WIT types differ.
macro_rules! export_calls {
    ($module:ident, $glue:ident) => {
        mod $module {
            use super::bindings::$glue::airlock::connector::types as t;
            use super::bindings::$glue::Connector;
            use super::{$glue as glue, AssetKind, ExtractOutcome, PluginDescription, RunState};
            use wasmtime::Store;

            pub(super) async fn describe(
                instance: &Connector,
                store: &mut Store<RunState>,
            ) -> wasmtime::Result<PluginDescription> {
                let info = instance.call_describe(store).await?;
                Ok(PluginDescription {
                    name: info.name,
                    version: info.version,
                    description: info.description,
                    capabilities: info
                        .capabilities
                        .iter()
                        .map(|c| match c {
                            t::Capability::Sql => "sql".to_string(),
                            t::Capability::Http => "http".to_string(),
                        })
                        .collect(),
                    kinds: info
                        .kinds
                        .iter()
                        .map(|k| glue::asset_kind(*k).as_str().to_string())
                        .collect(),
                    config_schema_json: info.config_schema_json,
                })
            }

            pub(super) async fn extract(
                instance: &Connector,
                store: &mut Store<RunState>,
                config_json: &str,
                include: Vec<String>,
                exclude: Vec<String>,
                kinds: &[AssetKind],
            ) -> wasmtime::Result<ExtractOutcome> {
                let kinds = kinds.iter().map(|k| to_wit_kind(*k)).collect();
                let scope = t::Scope {
                    include,
                    exclude,
                    kinds,
                };
                match instance.call_extract(store, config_json, &scope).await? {
                    Ok(summary) => Ok(ExtractOutcome::Finished {
                        warnings: summary.warnings,
                    }),
                    Err(e) => {
                        let (kind, message) = glue::plugin_error(e);
                        Ok(ExtractOutcome::PluginError { kind, message })
                    }
                }
            }

            fn to_wit_kind(k: AssetKind) -> t::AssetKind {
                use t::AssetKind as W;
                match k {
                    AssetKind::Database => W::Database,
                    AssetKind::Schema => W::Schema,
                    AssetKind::Table => W::Table,
                    AssetKind::View => W::View,
                    AssetKind::MaterializedView => W::MaterializedView,
                    AssetKind::Column => W::Column,
                    AssetKind::PrimaryKey => W::PrimaryKey,
                    AssetKind::UniqueKey => W::UniqueKey,
                    AssetKind::ForeignKey => W::ForeignKey,
                    AssetKind::CheckConstraint => W::CheckConstraint,
                    AssetKind::Index => W::Index,
                    AssetKind::Trigger => W::Trigger,
                    AssetKind::Partition => W::Partition,
                    AssetKind::Function => W::Function,
                    AssetKind::Procedure => W::Procedure,
                    AssetKind::Sequence => W::Sequence,
                }
            }
        }
    };
}

export_calls!(v0_1_0_calls, v0_1_0);
export_calls!(v0_2_0_calls, v0_2_0);

/// A component's binary starts with the magic and a layer-1 version field.
fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[6..8] == [1, 0]
}

/// The `airlock:connector` version named by the component's imports, if any.
fn wit_version_of(component: &wasmtime::component::Component, engine: &Engine) -> Option<String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix("airlock:connector/") {
            if let Some((_, version)) = rest.split_once('@') {
                return Some(version.to_string());
            }
        }
    }
    None
}

fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_string()
}
