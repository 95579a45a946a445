//! Per-run sandbox limits and the resource limiter that enforces the memory and table caps.

use serde::{Deserialize, Serialize};

/// Limits of one plugin run; the `[limits]` table of a workflow. Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Maximum linear memory of the plugin, in MiB.
    pub memory_mb: u64,
    /// Wall-clock deadline of the whole run (describe + extract), in seconds.
    pub deadline_s: u64,
    /// Maximum CPU time the plugin itself may spend running (not waiting on host calls),
    /// in seconds; measured with 10 ms resolution.
    pub cpu_s: u64,
    /// Maximum number of core instances inside the component.
    pub instances: usize,
    /// Maximum number of tables inside the component.
    pub tables: usize,
    /// Maximum elements per table.
    pub table_elements: usize,
    /// Maximum bytes copied across the boundary in one host call (an emit batch, a row batch).
    pub call_bytes: usize,
    /// Maximum assets the plugin may emit in one run.
    pub max_assets: u64,
    /// Maximum bytes of assets the plugin may emit in one run, in MiB.
    pub max_output_mb: u64,
    /// Assets larger than this (path plus attributes, in KiB) are dropped and counted.
    pub asset_kb: usize,
    /// Timeout of one SQL query, in seconds.
    pub query_timeout_s: u64,
    /// Maximum bytes of plugin stdout and stderr kept for the log, in KiB each.
    pub stdio_kb: usize,
    /// Maximum log lines the plugin may write; later lines are counted, not shown.
    pub log_lines: u64,
    /// Maximum bytes of one streamed HTTP response body, in MiB.
    pub http_stream_mb: u64,
    /// Maximum bytes the host holds for the plugin at once, in MiB: rows streamed ahead of
    /// it, buffered query results, open SQLite files' page caches, database sessions, HTTP
    /// bodies being read. A host call that would pass it fails with a `limit` error.
    pub host_memory_mb: u64,
    /// Maximum SQL connections the plugin holds open at once, per engine.
    pub sql_connections: u32,
    /// Maximum handles of every kind the plugin holds open at once (credential handles, SQL
    /// connections and result sets, HTTP clients and bodies).
    pub handles: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 256,
            deadline_s: 3600,
            cpu_s: 1800,
            instances: 32,
            tables: 32,
            table_elements: 100_000,
            call_bytes: 16 << 20,
            max_assets: 10_000_000,
            max_output_mb: 4096,
            asset_kb: 1024,
            query_timeout_s: 300,
            stdio_kb: 64,
            log_lines: 10_000,
            http_stream_mb: 1024,
            host_memory_mb: 256,
            sql_connections: 4,
            handles: 256,
        }
    }
}

impl Limits {
    /// Rejects values that would disable a limit or make a run impossible.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("limits.memory_mb", self.memory_mb),
            ("limits.deadline_s", self.deadline_s),
            ("limits.cpu_s", self.cpu_s),
            ("limits.max_assets", self.max_assets),
            ("limits.max_output_mb", self.max_output_mb),
            ("limits.query_timeout_s", self.query_timeout_s),
            ("limits.http_stream_mb", self.http_stream_mb),
            ("limits.host_memory_mb", self.host_memory_mb),
            ("limits.sql_connections", u64::from(self.sql_connections)),
            ("limits.handles", u64::from(self.handles)),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.memory_mb > 16 * 1024 {
            return Err("limits.memory_mb must be at most 16384 (16 GiB)".into());
        }
        if self.call_bytes < 64 * 1024 {
            return Err("limits.call_bytes must be at least 65536".into());
        }
        if self.asset_kb == 0 || self.asset_kb * 1024 > self.call_bytes {
            return Err("limits.asset_kb must be between 1 and limits.call_bytes / 1024".into());
        }
        Ok(())
    }

    /// Memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Why the host stopped a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The wall-clock deadline passed.
    #[error("deadline exceeded: the plugin ran longer than {0} s (limits.deadline_s)")]
    Deadline(u64),
    /// The plugin used more CPU time than allowed.
    #[error("CPU time exceeded: the plugin computed for more than {0} s (limits.cpu_s)")]
    Cpu(u64),
    /// The plugin tried to grow its memory past the limit.
    #[error("memory limit exceeded: the plugin asked for {requested_mb} MiB, the limit is {limit_mb} MiB (limits.memory_mb)")]
    Memory { requested_mb: u64, limit_mb: u64 },
    /// The plugin tried to grow a table past the limit.
    #[error("table limit exceeded: the plugin asked for {requested} table elements, the limit is {limit} (limits.table_elements)")]
    Table { requested: usize, limit: usize },
    /// A run-wide output limit was reached.
    #[error("output limit exceeded: {0}")]
    Output(String),
    /// Compiling the plugin did not finish within the run's deadline or the compile memory
    /// limit.
    #[error("{0}")]
    Compile(String),
    /// The host's buffers for the plugin passed `limits.host_memory_mb`.
    #[error("{0}")]
    HostMemory(String),
    /// One host call carried too much data.
    #[error("call size limit exceeded: {0}")]
    CallSize(String),
}

/// The store's resource limiter: memory and table caps, recording what was hit.
#[derive(Debug)]
pub struct RunLimiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    /// The first limit that was hit, if any.
    pub hit: Option<LimitExceeded>,
    /// The largest linear memory the plugin asked for and got, in bytes.
    pub peak_memory: usize,
}

impl RunLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        RunLimiter {
            memory_bytes: limits.memory_bytes(),
            table_elements: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            hit: None,
            peak_memory: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for RunLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let e = LimitExceeded::Memory {
                requested_mb: (desired as u64).div_ceil(1 << 20),
                limit_mb: (self.memory_bytes as u64) >> 20,
            };
            self.hit.get_or_insert(e.clone());
            // An error (not `Ok(false)`) traps at once instead of letting the guest's
            // allocator turn the failure into an opaque abort.
            return Err(wasmtime::Error::new(e));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let e = LimitExceeded::Table {
                requested: desired,
                limit: self.table_elements,
            };
            self.hit.get_or_insert(e.clone());
            return Err(wasmtime::Error::new(e));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.instances
    }
}
