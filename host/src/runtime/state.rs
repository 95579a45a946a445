//! The data of one run's `Store`: WASI context (granting nothing), resources, limits and the
//! capabilities' per-run state.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::{LimitExceeded, Limits, RunLimiter};
use crate::capabilities::credentials::CredentialSlots;
use crate::capabilities::log::PluginLog;
use crate::capabilities::sql::login::SqlLogin;
use crate::capabilities::sql::SqlPolicy;
use crate::pipeline::{Pipeline, PipelineError};

/// Why the host stopped a plugin from inside a host call; the run fails with it.
#[derive(Debug, thiserror::Error)]
pub enum HostFailure {
    /// A limit was hit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The pipeline refused the plugin's output.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Everything a run's store holds.
pub struct RunState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) limiter: RunLimiter,
    pub(crate) sql: SqlPolicy,
    /// Logging in to network SQL sources; `None` when the workflow binds no credential.
    pub(crate) login: Option<SqlLogin>,
    pub(crate) credentials: CredentialSlots,
    /// Outbound HTTP; `None` denies every request (no `[network]` allow list).
    pub(crate) http: Option<std::sync::Arc<crate::capabilities::http::HttpAccess>>,
    /// `None` while only describing a plugin: emitting is then refused.
    pub(crate) pipeline: Option<Pipeline>,
    pub(crate) log: PluginLog,
    pub(crate) deadline: Instant,
    pub(crate) deadline_s: u64,
    pub(crate) cpu_ticks: u64,
    pub(crate) cpu_limit_ticks: u64,
    pub(crate) cpu_s: u64,
    pub(crate) call_bytes: usize,
    /// Bytes one streamed HTTP response body may have in total.
    pub(crate) http_stream_bytes: u64,
    /// Streamed HTTP response bodies the plugin holds open (each holds a connection).
    pub(crate) http_bodies_open: usize,
    /// Host-memory bytes of the query results the plugin holds open, by rows resource: all of
    /// them together may not exceed the per-query result limit, so a plugin cannot pile up
    /// results in host memory by keeping many rows handles alive.
    pub(crate) sql_held: std::collections::HashMap<u32, usize>,
    /// Handles the plugin holds open (every resource kind), and the most it may.
    pub(crate) handles_open: usize,
    pub(crate) handles_limit: usize,
    /// SQL connections the plugin holds open, per engine, and the most it may per engine.
    pub(crate) sql_open: std::collections::HashMap<&'static str, usize>,
    pub(crate) sql_limit: usize,
    /// What each open SQL connection is charged to the run's host-memory budget, by resource.
    pub(crate) sql_charges: std::collections::HashMap<u32, crate::runtime::budget::Reservation>,
    /// Every byte a capability hands the plugin passes it (reflected secrets are withheld).
    pub(crate) inbound: std::sync::Arc<crate::capabilities::inbound::InboundFilter>,
    /// The first failure a host call raised (the trap that follows carries it too).
    pub(crate) failure: Option<String>,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

impl RunState {
    /// A state for one run with `limits`.
    pub fn new(
        limits: &Limits,
        sql: SqlPolicy,
        credentials: CredentialSlots,
        pipeline: Option<Pipeline>,
        log: PluginLog,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(limits.stdio_kb * 1024);
        let stderr = MemoryOutputPipe::new(limits.stdio_kb * 1024);
        // Deny by default: no args, env, preopened dirs, stdin or network. Only the capped
        // stdout/stderr pipes exist.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        RunState {
            table: ResourceTable::new(),
            wasi,
            limiter: RunLimiter::new(limits),
            sql,
            login: None,
            credentials,
            http: None,
            pipeline,
            log,
            deadline: Instant::now() + std::time::Duration::from_secs(limits.deadline_s),
            deadline_s: limits.deadline_s,
            cpu_ticks: 0,
            cpu_limit_ticks: limits.cpu_s.saturating_mul(1000) / super::EPOCH_TICK_MS,
            cpu_s: limits.cpu_s,
            call_bytes: limits.call_bytes,
            http_stream_bytes: limits.http_stream_mb.saturating_mul(1 << 20),
            http_bodies_open: 0,
            sql_held: std::collections::HashMap::new(),
            inbound: std::sync::Arc::new(crate::capabilities::inbound::InboundFilter::disarmed()),
            handles_open: 0,
            handles_limit: limits.handles as usize,
            sql_open: std::collections::HashMap::new(),
            sql_limit: limits.sql_connections as usize,
            sql_charges: std::collections::HashMap::new(),
            failure: None,
            stdout,
            stderr,
        }
    }

    /// Enables network SQL logins for this run.
    pub fn with_login(mut self, login: Option<SqlLogin>) -> Self {
        self.login = login;
        self
    }

    /// Passes everything the SQL capability hands the plugin through `inbound` (the HTTP
    /// capability gets the same filter with [`crate::capabilities::http::HttpAccess`]).
    pub fn with_inbound(
        mut self,
        inbound: std::sync::Arc<crate::capabilities::inbound::InboundFilter>,
    ) -> Self {
        self.inbound = inbound;
        self
    }

    /// Enables outbound HTTP for this run.
    pub fn with_http(mut self, http: Option<crate::capabilities::http::HttpAccess>) -> Self {
        self.http = http.map(std::sync::Arc::new);
        self
    }

    /// Counts a new handle of the plugin, or says why it may not have one more
    /// (`limits.handles`).
    pub(crate) fn take_handle(&mut self, what: &str) -> Result<(), String> {
        if self.handles_open >= self.handles_limit {
            return Err(format!(
                "the plugin holds {} open handles (credential handles, connections, result sets, \
                 HTTP clients and bodies), the most limits.handles allows; drop one before \
                 opening {what}",
                self.handles_open
            ));
        }
        self.handles_open += 1;
        Ok(())
    }

    /// Gives back a handle counted by [`RunState::take_handle`].
    pub(crate) fn release_handle(&mut self) {
        self.handles_open = self.handles_open.saturating_sub(1);
    }

    /// Checks the plugin may open one more `engine` connection (`limits.sql_connections`).
    pub(crate) fn admit_sql(&self, engine: &'static str) -> Result<(), String> {
        let open = self.sql_open.get(engine).copied().unwrap_or(0);
        if open >= self.sql_limit {
            return Err(format!(
                "the plugin holds {open} open {engine} connections, the most \
                 limits.sql_connections allows; drop one before opening another"
            ));
        }
        Ok(())
    }

    /// Records a failure and turns it into the error that traps the guest.
    pub(crate) fn fail(&mut self, failure: HostFailure) -> wasmtime::Error {
        self.failure.get_or_insert_with(|| failure.to_string());
        wasmtime::Error::new(failure)
    }

    /// The plugin's captured stdout and stderr.
    pub fn captured_output(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.stdout.contents().to_vec(),
            self.stderr.contents().to_vec(),
        )
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
