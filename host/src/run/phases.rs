//! The phases of a run, in order: load (find, verify and compile the plugin), prepare
//! (policies, credentials, sinks, the spool), extract (the plugin inside its limits, every asset
//! through the pipeline) and publish (the manifest last, whole or not at all).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::log::{home_log_path, write_private, Audience, RunLog, LOG_FILE};
use super::manifest::{plugin_warnings, read_samples};
use super::plugin::{
    check_data_access, classify_trap, compile_in_limited_child, plugin_ref, report_captured_output,
};
use super::prepare::{credentials_for, plugin_config_json, resolve_hash_keys, sql_policy, Staging};
use super::{
    redacted, resolve_plugin, Finished, Mode, Phase, PluginDir, PluginUsage, PreviewReport,
    PublishGate, RunError, RunObserver, RunReport,
};
use crate::capabilities::inbound::InboundFilter;
use crate::capabilities::log::{clean_line, PluginLog};
use crate::capabilities::sql::SqlPolicy;
use crate::config::{ConfigError, LoadedConfig, SinkConfig};
use crate::home::Home;
use crate::pipeline::filter::FilterPolicy;
use crate::pipeline::manifest::{FilterRef, Manifest, Timings, MANIFEST_FORMAT};
use crate::pipeline::scan::OutboundScanner;
use crate::pipeline::spool::{write_whole, SpoolKey};
use crate::pipeline::{Pipeline, PipelineError};
use crate::runtime::limits::LimitExceeded;
use crate::runtime::state::RunState;
use crate::runtime::{self, ExtractOutcome, LoadError, LoadedPlugin, Runtime};
use crate::sinks::local::LocalSink;
use crate::sinks::remote::{RemoteSink, SinkError};
use crate::state::RunAudit;

/// What every phase of one run shares.
pub(super) struct RunContext<'a> {
    pub runtime: &'a Runtime,
    pub cfg: &'a LoadedConfig,
    pub home: Option<&'a Home>,
    pub observer: Arc<dyn RunObserver>,
    pub run_id: String,
    pub mode: Mode,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The run's own log; the audit contexts of the run feed it too.
    pub log: RunLog,
    /// The run's outbound scanner: every secret the run resolves is registered with it, and
    /// it checks every asset, the manifest and every log line (of a failed run too).
    pub scanner: Arc<OutboundScanner>,
    /// Ends the run early, as [`RunError::Interrupted`].
    pub stop: super::Stop,
}

impl<'a> RunContext<'a> {
    /// The audit context of this run for the plugin `sha256`, feeding the run's log.
    fn audit(&self, sha256: Option<&str>) -> RunAudit {
        RunAudit::new(
            self.home.map(|h| h.state().clone()),
            &self.run_id,
            self.cfg.workflow_id.as_deref(),
            sha256,
        )
        .with_tap(Arc::new(self.log.clone()))
    }
}

/// The plugin, verified and compiled, with the policies the config asks for.
pub(super) struct Loaded {
    policy: FilterPolicy,
    sql: SqlPolicy,
    plugin: LoadedPlugin,
    load_ms: u64,
}

/// Everything the plugin will run with: its store (credential slots, logins, HTTP access, the
/// pipeline spooling into the staging directory) and what the run reads back afterwards.
pub(super) struct Prepared {
    policy: FilterPolicy,
    plugin: LoadedPlugin,
    load_ms: u64,
    audit: RunAudit,
    inbound: Arc<InboundFilter>,
    guard_stats: Arc<crate::capabilities::sql::GuardStats>,
    host_budget: Arc<crate::runtime::budget::MemoryBudget>,
    staged: Staging,
    spool_key: Option<Arc<SpoolKey>>,
    store: wasmtime::Store<RunState>,
}

/// A finished extraction: the manifest to publish and what the run reports.
pub(super) struct Extracted {
    manifest: Manifest,
    dropped_log_lines: u64,
    sql_guard: (u64, u64),
    plugin_usage: PluginUsage,
    /// What this run published, under its workflow's key, for the next run to compare with.
    published_set: Option<(String, crate::state::PublishedSet)>,
}

/// The phases in order. A failure at any point publishes nothing; the run's log of a failed
/// run is kept (see [`keep_failed_log`]).
pub(super) async fn run_inner(
    ctx: &RunContext<'_>,
    plugins: &PluginDir,
    gate: Option<&dyn PublishGate>,
) -> Result<Finished, RunError> {
    let mut remote = None;
    let result = run_phases(ctx, plugins, gate, &mut remote).await;
    if let Err(e) = &result {
        ctx.log.event(
            "run-failed",
            serde_json::json!({ "kind": e.kind(), "error": e.to_string() }),
        );
        keep_failed_log(ctx, e, remote.as_ref()).await;
    }
    result
}

async fn run_phases<'a>(
    ctx: &RunContext<'a>,
    plugins: &PluginDir,
    gate: Option<&dyn PublishGate>,
    remote: &mut Option<RemoteSink<'a>>,
) -> Result<Finished, RunError> {
    let until_publish = async {
        let loaded = load(ctx, plugins).await?;
        let mut prepared = prepare(ctx, loaded, &mut *remote).await?;
        let extracted = extract(ctx, &mut prepared).await?;
        Ok::<_, RunError>((prepared, extracted))
    };
    // A stop drops the phases before publishing where they are (the staging goes with them:
    // nothing is published) and ends the run through the failure path, which keeps its log.
    // Publishing itself is not cut short: a run is either published whole and reported so,
    // or not at all.
    let (prepared, extracted) = tokio::select! {
        r = until_publish => r?,
        why = ctx.stop.stopped() => return Err(RunError::Interrupted(why)),
    };
    publish(ctx, prepared, extracted, remote.as_ref(), gate).await
}

/// Finds the plugin, checks it against the workflow's pin and the operator's approval, and
/// compiles it (in a limited child process when it is not cached).
pub(super) async fn load(ctx: &RunContext<'_>, plugins: &PluginDir) -> Result<Loaded, RunError> {
    let cfg = ctx.cfg;
    let config = &cfg.config;
    let limits = &config.limits;
    let policy = FilterPolicy::compile_for(&config.filters, &config.source.plugin)
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let sql = sql_policy(cfg, limits)?;

    ctx.observer.phase(Phase::Loading);
    let plugin_path = resolve_plugin(&config.source.plugin, &cfg.base_dir, plugins)?;
    // Read once: the bytes checked against the pin and the approval are the bytes compiled.
    let wasm = std::fs::read(&plugin_path).map_err(|source| LoadError::Read {
        path: plugin_path.clone(),
        source,
    })?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    crate::plugins::verify::check(
        &config.source.plugin,
        &plugin_path,
        &wasm,
        config.source.plugin_sha256.as_deref(),
        ctx.home,
        &ctx.audit(Some(&sha256)),
    )?;
    check_data_access(cfg, &sql, &wasm)?;
    compile_in_limited_child(ctx.runtime, &wasm, limits, ctx.started).await?;
    let plugin = ctx.runtime.load_plugin_bytes(&plugin_path, &wasm)?;
    drop(wasm);
    tracing::debug!(
        from_cache = plugin.from_cache,
        "plugin {} loaded",
        plugin_path.display()
    );
    let load_ms = ctx.started.elapsed().as_millis() as u64;
    ctx.log.event(
        "plugin-loaded",
        serde_json::json!({
            "plugin": config.source.plugin,
            "sha256": plugin.sha256,
            "wit_version": plugin.wit_version,
            "from_cache": plugin.from_cache,
            "load_ms": load_ms,
        }),
    );
    Ok(Loaded {
        policy,
        sql,
        plugin,
        load_ms,
    })
}

/// Resolves what the run needs before the plugin starts — hash keys, the source credential
/// and its login, HTTP access, a remote sink's credentials (into `remote`, so the scan knows
/// them too) — creates the staging directory and builds the plugin's store.
pub(super) async fn prepare<'a>(
    ctx: &RunContext<'a>,
    loaded: Loaded,
    remote: &mut Option<RemoteSink<'a>>,
) -> Result<Prepared, RunError> {
    let Loaded {
        policy,
        mut sql,
        plugin,
        load_ms,
    } = loaded;
    let cfg = ctx.cfg;
    let config = &cfg.config;
    let limits = &config.limits;
    let audit = ctx.audit(Some(&plugin.sha256));
    sql.audit = Some(audit.clone());
    let guard_stats = sql.guard_stats.clone();
    let host_budget = sql.budget.clone();
    let scanner = ctx.scanner.clone();
    let inbound = Arc::new(InboundFilter::new(
        scanner.clone(),
        Some(audit.clone()),
        config.filters.on_reflected_secret.unwrap_or_default(),
    ));
    let hash_keys = resolve_hash_keys(&policy, ctx.home, &audit, &scanner).await?;
    let (slots, login) = credentials_for(cfg, limits, ctx.home, audit.clone(), &scanner)?;
    let http = crate::capabilities::http::HttpAccess::for_run(
        cfg,
        ctx.home,
        audit.clone(),
        &scanner,
        &inbound,
    )
    .await
    .map_err(|e| match e {
        crate::capabilities::http::HttpError::Denied(m) => RunError::Credential(m),
        e => RunError::Config(ConfigError::Invalid(e.to_string())),
    })?
    .map(|h| h.with_budget(host_budget.clone()));
    // A remote sink's credentials are resolved before extraction: the scan then catches them too.
    *remote = RemoteSink::prepare(
        &config.sink,
        |p| cfg.resolve(p),
        ctx.home,
        &audit,
        Some(&scanner),
    )
    .await
    .map_err(|e| match e {
        SinkError::Config(m) => RunError::Config(ConfigError::Invalid(m)),
        e => RunError::Credential(e.to_string()),
    })?;

    let staged = Staging::create(ctx.mode, cfg, ctx.home, &ctx.run_id)?;
    let spool_key = staged.key();
    let pipeline = Pipeline::new(policy.clone(), limits, staged.dir())
        .with_spool_key(spool_key.clone())
        .with_scanner(scanner.clone(), audit.clone())
        .with_hash_keys(hash_keys);
    let state = RunState::new(
        limits,
        sql,
        slots,
        Some(pipeline),
        PluginLog::new(ctx.observer.clone(), limits.log_lines),
    )
    .with_login(login)
    .with_http(http)
    .with_inbound(inbound.clone());
    let store = ctx.runtime.new_store(state);
    Ok(Prepared {
        policy,
        plugin,
        load_ms,
        audit,
        inbound,
        guard_stats,
        host_budget,
        staged,
        spool_key,
        store,
    })
}

/// Runs the plugin's `describe` and `extract` inside its limits and finishes the pipeline:
/// every kept asset is spooled, and the manifest that would publish them is built and scanned.
pub(super) async fn extract(
    ctx: &RunContext<'_>,
    prepared: &mut Prepared,
) -> Result<Extracted, RunError> {
    let cfg = ctx.cfg;
    let config = &cfg.config;
    let limits = &config.limits;
    let policy = &prepared.policy;
    ctx.observer.phase(Phase::Extracting);
    ctx.log.event(
        "extract-started",
        serde_json::json!({
            "endpoint": config.source.endpoint,
            "database": config.source.database,
            "databases": config.source.databases,
        }),
    );
    let extract_started = Instant::now();
    let config_json = plugin_config_json(cfg);
    // Plugins push name patterns down case-sensitively; under case-insensitive matching they
    // get none, so they cannot skip what the host would keep. The host enforces either way.
    let (include, exclude) = if policy.case_sensitive() {
        (
            config.filters.include.clone(),
            config.filters.exclude.clone(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let kinds = policy.kinds().to_vec();
    // The epoch callback stops a computing plugin at the deadline; this timeout also stops one
    // that waits inside a host call, a quarter second later (well inside the promised
    // "deadline plus one second", even on a loaded machine).
    let grace = Duration::from_secs(limits.deadline_s) + Duration::from_millis(250);
    let store = &mut prepared.store;
    let runtime = ctx.runtime;
    let plugin = &prepared.plugin;
    let outcome = tokio::time::timeout(grace, async {
        let instance = runtime.instantiate(plugin, &mut *store).await?;
        let description = runtime::describe(&instance, &mut *store).await?;
        let outcome = runtime::extract(
            &instance,
            &mut *store,
            &config_json,
            include,
            exclude,
            &kinds,
        )
        .await?;
        Ok::<_, wasmtime::Error>((description, outcome))
    })
    .await;
    let extract_ms = extract_started.elapsed().as_millis() as u64;
    report_captured_output(store, ctx.observer.as_ref());
    let plugin_usage = PluginUsage {
        peak_memory_bytes: store.data().limiter.peak_memory as u64,
        cpu_ms: store.data().cpu_ticks * crate::runtime::EPOCH_TICK_MS,
    };
    ctx.log.event(
        "extract-finished",
        serde_json::json!({
            "extract_ms": extract_ms,
            "peak_memory_bytes": plugin_usage.peak_memory_bytes,
            "cpu_ms": plugin_usage.cpu_ms,
            "secrets_withheld": prepared.inbound.hits(),
        }),
    );

    // A host-memory budget the plugin exhausted fails the run, whatever the plugin made of
    // the failed call: the rows it did not get would be missing from a "complete" run.
    if let Some(exceeded) = prepared.host_budget.exceeded() {
        return Err(RunError::Limit(LimitExceeded::HostMemory(exceeded)));
    }
    // A reflected secret under `on_reflected_secret = "fail"` decides the run whatever the
    // plugin made of the failed call.
    if let Some(reflected) = prepared.inbound.failure() {
        return Err(RunError::SecretDetected(format!(
            "inbound secret filter: {reflected}"
        )));
    }
    let (description, warnings) = match outcome {
        Err(_elapsed) => return Err(RunError::Limit(LimitExceeded::Deadline(limits.deadline_s))),
        Ok(Err(trap)) => return Err(classify_trap(&trap, store.data())),
        Ok(Ok((_, ExtractOutcome::PluginError { kind, message }))) => {
            return Err(RunError::PluginFailed {
                kind: kind.to_string(),
                message: redacted(&clean_line(&message)),
            })
        }
        Ok(Ok((description, ExtractOutcome::Finished { warnings }))) => (description, warnings),
    };
    if let Some(failure) = &store.data().failure {
        return Err(RunError::InvalidOutput(failure.clone()));
    }

    ctx.observer.phase(Phase::Publishing);
    let publish_started = Instant::now();
    let dropped_log_lines = store.data().log.dropped();
    let sql_guard = prepared.guard_stats.totals();
    let pipeline = store
        .data_mut()
        .pipeline
        .take()
        .ok_or_else(|| RunError::Runtime("pipeline missing after extraction".into()))?;
    let output = pipeline.finish().map_err(|e| match e {
        PipelineError::Io(e) => RunError::Output(e.to_string()),
        other => RunError::InvalidOutput(other.to_string()),
    })?;
    let mut all_warnings = plugin_warnings(&warnings, &output.dropped_names);
    drop(warnings);
    all_warnings.extend(output.warnings);
    let config_json_full = serde_json::to_vec(config).unwrap_or_default();
    let totals = Manifest::sum_counts(&output.counts);
    let entities = output.entities;
    // Entities this run dropped by a limit, the contract or the secret scan: it is partial,
    // and what it lacks says nothing about the source.
    let entities_dropped: u64 = crate::pipeline::ENTITY_KINDS
        .iter()
        .filter_map(|k| output.counts.get(k.as_str()))
        .map(|c| c.dropped_oversize + c.dropped_kind_limit + c.quarantined + c.dropped_invalid)
        .sum();
    ctx.log.event(
        "output",
        serde_json::json!({
            "plugin": { "name": clean_line(&description.name), "version": clean_line(&description.version) },
            "emitted": totals.emitted,
            "kept": totals.kept,
            "dropped_by_filter": totals.dropped_filter,
            "files": output.files.len(),
            "warnings": all_warnings.len(),
            "first_warnings": all_warnings.iter().take(20).collect::<Vec<_>>(),
            "sql_statements_checked": sql_guard.0,
            "plugin_log_lines_dropped": dropped_log_lines,
        }),
    );
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        contract: crate::pipeline::contract::CONTRACT_VERSION.to_string(),
        run_id: ctx.run_id.clone(),
        status: "complete".to_string(),
        workflow: config.name.clone(),
        config_sha256: hex::encode(Sha256::digest(&config_json_full)),
        plugin: plugin_ref(&prepared.plugin, &description),
        filter: FilterRef {
            digest: policy.digest().to_string(),
            include: config.filters.include.clone(),
            exclude: config.filters.exclude.clone(),
            kinds: config.filters.kinds.clone(),
            case_sensitive: policy.case_sensitive(),
            fields: config.filters.fields.clone(),
            max_per_kind: config.filters.max_per_kind.clone(),
            on_secret: policy.on_secret(),
            unmatched_patterns: output.unmatched_patterns,
            confusable_with_exclude: output.confusables,
            confusable_not_listed: output.confusables_not_listed,
        },
        started_at: ctx
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: String::new(),
        timings_ms: Timings {
            load: prepared.load_ms,
            extract: extract_ms,
            publish: 0,
            total: 0,
        },
        totals,
        counts: output.counts,
        files: output.files,
        secrets_withheld: prepared.inbound.hits(),
        warnings: all_warnings,
        log: None,
        exports: Vec::new(),
        changes: None,
    };
    // What changed since the workflow's last complete run, when a state store keeps runs.
    let mut published_set = None;
    if let (Mode::Publish, Some(home), Some(key)) = (ctx.mode, ctx.home, workflow_key(ctx.cfg)) {
        let current = super::changes::snapshot(
            &ctx.run_id,
            &manifest.plugin.sha256,
            &manifest.filter.digest,
            &entities,
        );
        match home.state().published_set(&key) {
            Ok(previous) => {
                let partial = (entities_dropped > 0).then(|| {
                    format!(
                        "{entities_dropped} databases, schemas, tables or views were dropped by \
                         a limit, the asset contract or the secret scan"
                    )
                });
                let (changes, next) = super::changes::compare(
                    previous.as_ref(),
                    &current,
                    &entities.unreadable,
                    partial,
                    config.changes.max_removed_share,
                );
                manifest.changes = Some(changes);
                published_set = next.map(|set| (key, set));
            }
            Err(e) => manifest.warnings.push(format!(
                "changes since the last complete run are not reported: the state store did not \
                 answer ({e})"
            )),
        }
    }
    if let (Mode::Publish, Some((format, options))) = (ctx.mode, config.sink.catalog()) {
        // The catalog's file, from the spooled lines (after `changes`, whose removals it
        // carries), written into the staging like every other file of the run.
        let failed =
            |e: &dyn std::fmt::Display| RunError::Output(format!("{}: {e}", format.file_name()));
        let dir = prepared.staged.dir();
        let key = prepared.spool_key.as_deref();
        let lines = crate::formats::read_lines(&manifest, &|path| {
            crate::pipeline::spool::open_spooled(&dir.join(path), key)
        })
        .map_err(|e| failed(&e))?;
        let (bytes, records) =
            crate::formats::render(format, &manifest, &lines, &options).map_err(|e| failed(&e))?;
        drop(lines);
        let file = write_whole(dir, format.file_name(), format.kind(), records, &bytes, key)
            .map_err(|e| failed(&e))?;
        manifest.exports.push(file);
    }
    if matches!(ctx.mode, Mode::Publish) {
        // The log goes out with the run, listed and hashed in the manifest; it ends here, at
        // the last event before the manifest (whose existence says the rest).
        ctx.log.event(
            "publishing",
            serde_json::json!({ "sink": sink_kind(&config.sink) }),
        );
        let bytes = ctx.log.render(Audience::Public, Some(&ctx.scanner));
        let records = bytes.iter().filter(|b| **b == b'\n').count() as u64;
        manifest.log = Some(
            write_whole(
                prepared.staged.dir(),
                LOG_FILE,
                "log",
                records,
                &bytes,
                prepared.spool_key.as_deref(),
            )
            .map_err(|e| RunError::Output(format!("{LOG_FILE}: {e}")))?,
        );
    }
    manifest.timings_ms.publish = publish_started.elapsed().as_millis() as u64;
    manifest.timings_ms.total = ctx.started.elapsed().as_millis() as u64;
    manifest.finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // The manifest leaves too (warnings quote the plugin): it is scanned like every asset.
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    if let Some(encoding) = ctx.scanner.find(&manifest_bytes) {
        let detail =
            format!("manifest withheld: it holds a secret this run resolved ({encoding} form)");
        prepared
            .audit
            .record("secret-scan", "denied", None, None, Some(&detail));
        return Err(RunError::SecretDetected(format!(
            "outbound secret scan: {detail}; the run fails"
        )));
    }
    Ok(Extracted {
        manifest,
        dropped_log_lines,
        sql_guard,
        plugin_usage,
        published_set,
    })
}

/// The key a workflow's runs are compared under: its stored id, or its config file.
fn workflow_key(cfg: &crate::config::LoadedConfig) -> Option<String> {
    match (&cfg.workflow_id, &cfg.file) {
        (Some(id), _) => Some(format!("workflow:{id}")),
        (None, Some(file)) => Some(format!("file:{}", file.display())),
        (None, None) => None,
    }
}

/// Publishes the extracted run whole — the local sink renames its staging directory, a remote
/// sink uploads the sealed spool, the manifest last — or, for a preview, reads samples back.
/// A gate, when given, decides right before anything is published.
pub(super) async fn publish(
    ctx: &RunContext<'_>,
    prepared: Prepared,
    extracted: Extracted,
    remote: Option<&RemoteSink<'_>>,
    gate: Option<&dyn PublishGate>,
) -> Result<Finished, RunError> {
    let Prepared {
        staged,
        spool_key,
        store,
        ..
    } = prepared;
    drop(store);
    let Extracted {
        mut manifest,
        dropped_log_lines,
        sql_guard,
        plugin_usage,
        published_set,
    } = extracted;
    // Once published, this run is what the next one compares with. Failing to record it
    // never fails the published run; the next run then compares with an older one.
    let record = |run: &str| {
        if let (Some(home), Some((key, set))) = (ctx.home, &published_set) {
            if let Err(e) = home.state().record_published_set(key, set) {
                tracing::warn!("cannot record what run {run} published: {e}");
            }
        }
    };
    let run_id = &ctx.run_id;
    let config = &ctx.cfg.config;
    // The gate decides last, after everything that can fail before publishing did not.
    let gate = match (&ctx.mode, gate) {
        (Mode::Publish, Some(g)) => {
            g.claim(run_id)?;
            Some(g)
        }
        _ => None,
    };
    let released = |e: RunError| {
        if let Some(g) = gate {
            g.release(run_id);
        }
        e
    };
    let report = |output_dir: PathBuf, manifest: Manifest| {
        Finished::Published(RunReport {
            output_dir,
            manifest,
            dropped_log_lines,
            sql_guard,
            plugin_usage,
        })
    };
    match staged {
        Staging::Spool(spool) => {
            let Some(remote) = remote else {
                return Err(RunError::Runtime("remote sink without settings".into()));
            };
            let dir = spool
                .seal(&manifest, remote.config())
                .map_err(|e| released(RunError::Output(format!("spool: {e}"))))?;
            let uploaded = remote.upload(&dir, run_id, spool_key).await.map_err(|e| {
                released(RunError::Upload(format!(
                    "{e}; no manifest was uploaded. Finish it with `airlock upload --resume {run_id}`"
                )))
            })?;
            record(run_id);
            Ok(report(PathBuf::from(uploaded.url), manifest))
        }
        Staging::Sink(staged) => {
            let sink_dir = staged
                .dir()
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let output_dir = staged
                .publish(&manifest)
                .map_err(|e| released(RunError::Output(format!("{sink_dir}: {e}"))))?;
            if let SinkConfig::Local {
                keep_runs: Some(keep),
                ..
            } = &config.sink
            {
                // Retention never fails a published run; a leftover run is only a warning.
                if let Err(e) = LocalSink::new(PathBuf::from(&sink_dir)).prune(*keep as usize) {
                    tracing::warn!("sink.keep_runs: cannot remove old runs in {sink_dir}: {e}");
                }
            }
            record(run_id);
            Ok(report(output_dir, manifest))
        }
        Staging::Temp(tmp) => {
            let n = match ctx.mode {
                Mode::Preview { samples } => samples,
                Mode::Publish => 0,
            };
            manifest.status = "preview".to_string();
            let samples = read_samples(tmp.path(), &manifest, n)
                .map_err(|e| RunError::Output(format!("preview spool: {e}")))?;
            Ok(Finished::Preview(PreviewReport {
                manifest,
                samples,
                dropped_log_lines,
            }))
        }
    }
}

fn sink_kind(sink: &SinkConfig) -> &'static str {
    match sink {
        SinkConfig::Local { .. } => "local",
        SinkConfig::S3(_) => "s3",
        SinkConfig::Https(_) => "https",
    }
}

/// Keeps the log of a failed run where an operator looks: in the home (`logs/<run-id>.jsonl`,
/// owner-only, everything the audit log has), and, for a publishing run, beside the sink's
/// runs (`<sink.dir>/failed/<run-id>.jsonl`, or `failed/<run-id>.jsonl` under a remote sink's
/// prefix, when its credentials were resolved), never inside them. Where it was kept is told
/// to the observer. A run whose upload failed keeps it locally only: the sink just refused or
/// did not answer. Keeping the log never changes the run's error.
async fn keep_failed_log(ctx: &RunContext<'_>, error: &RunError, remote: Option<&RemoteSink<'_>>) {
    let name = format!("{}.jsonl", ctx.run_id);
    let keep_at = |path: &std::path::Path, bytes: &[u8]| match write_private(path, bytes) {
        Ok(()) => ctx.observer.kept_log(&path.display().to_string()),
        Err(e) => tracing::warn!(
            "cannot keep the failed run's log at {}: {e}",
            path.display()
        ),
    };
    if let Some(home) = ctx.home {
        keep_at(
            &home_log_path(home, &ctx.run_id),
            &ctx.log.render(Audience::Operator, Some(&ctx.scanner)),
        );
    }
    if !matches!(ctx.mode, Mode::Publish) {
        return;
    }
    let public = ctx.log.render(Audience::Public, Some(&ctx.scanner));
    match (&ctx.cfg.config.sink, remote) {
        (SinkConfig::Local { dir, .. }, _) => {
            keep_at(&ctx.cfg.resolve(dir).join("failed").join(&name), &public)
        }
        (_, Some(_)) if matches!(error, RunError::Upload(_)) => {}
        (_, Some(remote)) => match remote.put_failed_log(&ctx.run_id, &public).await {
            Ok(url) => ctx.observer.kept_log(&url),
            Err(e) => tracing::warn!("cannot upload the failed run's log: {e}"),
        },
        (_, None) => {}
    }
}
