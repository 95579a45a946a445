//! The `airlock` command line: argument parsing and printing only; the work happens in the
//! library.

mod credentials;
mod plugin;
mod progress;
mod service;
mod upload;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::LoadedConfig;
use crate::home::Home;
use crate::run::{self, redacted, PluginDir, PreviewReport, RunError, RunObserver, RunReport};
use crate::runtime::cache::ComponentCache;
use crate::runtime::Runtime;
use crate::secrets::redact::RedactingStderr;
use progress::{PlainProgress, TerminalProgress};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the run failed (plugin error, crash or limit, output not writable); nothing was published
  2  usage or configuration error (bad arguments, config or plugin file)
  130 interrupted (Ctrl-C); nothing was published

Environment:
  AIRLOCK_PLUGIN_DIR  directory of installed plugins (<name>.wasm)
  AIRLOCK_CACHE_DIR   directory of the compiled-component cache
  AIRLOCK_LOG         log filter, e.g. `info` or `airlock=debug` (default: warn)
  AIRLOCK_HOME        state store and embedded vault (default: ~/.local/share/airlock)
  AIRLOCK_VAULT_KEY_FILE  the vault key (default: <home>/vault.key, created 0600)";

/// airlock runs sandboxed connector plugins that extract metadata, filters what they emit and
/// publishes it whole or not at all. Plugins never see a secret, a file or a socket.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    /// The airlock home: state store and embedded vault [default: $AIRLOCK_HOME, else
    /// ~/.local/share/airlock].
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Log lines on stderr as `text` or as `json` (one object per line, for log collectors).
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow: a stored one by id (`--workflow`) or a TOML config file (`--config`).
    Run(RunArgs),
    /// Extract and filter as `run` does and show what would leave; publish nothing (the same
    /// as `run --dry-run`).
    Preview(RunArgs),
    /// Explain the filter policy of a workflow.
    #[command(subcommand)]
    Filters(FiltersCommand),
    /// Manage credentials: secrets live in the vault, workflows name them by GUID.
    #[command(subcommand)]
    Credential(credentials::CredentialCommand),
    /// Manage stored workflows.
    #[command(subcommand)]
    Workflow(credentials::WorkflowCommand),
    /// List audit entries (resolutions, logins, denials, rotations, revocations).
    Audit(credentials::AuditArgs),
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Install and approve plugins (digest, capabilities, signatures); author keys and signing.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Internal: compile a plugin read from stdin (run by `plugin install` in a limited child).
    #[command(name = "__compile-plugin", hide = true)]
    CompilePlugin(plugin::CompileChildArgs),
    /// Create a sample shop database and a config in DIR, run it, and print a summary.
    Demo(DemoArgs),
    /// Finish an interrupted object-store upload (`--resume RUN`).
    Upload(upload::UploadArgs),
    /// Check a published run: its manifest, every file's size and hash, the counts, and every
    /// asset against the asset contract version the manifest names. Exits 0 when valid, 1
    /// with the first problems listed otherwise.
    Validate(ValidateArgs),
    /// Write a published run in a catalog's own format: `--format datahub` writes what
    /// DataHub's `file` source ingests (`datahub ingest`), with the URNs DataHub's own
    /// postgres, mysql and sqlite sources give the same objects; `--format openmetadata`
    /// writes OpenMetadata's CreateDatabase/CreateDatabaseSchema/CreateTable requests.
    Export(ExportArgs),
    /// Run as a Temporal worker: poll a task queue and run triggered workflows (serves
    /// /healthz, /readyz and /metrics).
    Worker(crate::service::worker::WorkerArgs),
    /// Start a stored workflow on the Temporal workers (the payload is the workflow id alone).
    Trigger(service::TriggerArgs),
    /// Manage Temporal Schedules that trigger stored workflows.
    #[command(subcommand)]
    Schedule(service::ScheduleCommand),
}

#[derive(Debug, Args)]
struct CommonRunArgs {
    /// Print a machine-readable JSON summary on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Directory of installed plugins [default: $AIRLOCK_PLUGIN_DIR, else
    /// ~/.local/share/airlock/plugins, then target/plugins beside the binary].
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// Do not cache compiled plugins on disk.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "what")]
struct RunArgs {
    /// Workflow config file (TOML). Unknown keys are errors.
    #[arg(long, short, value_name = "FILE", group = "what")]
    config: Option<PathBuf>,
    /// Id of a stored workflow (`airlock workflow create`): the trigger's only input.
    #[arg(long, short, value_name = "ID", group = "what")]
    workflow: Option<String>,
    /// Extract and filter, show what would leave (counts, field actions, bytes, samples) and
    /// publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Sample assets shown per kind by a dry run.
    #[arg(long, value_name = "N", default_value_t = 3)]
    samples: usize,
    #[command(flatten)]
    common: CommonRunArgs,
}

#[derive(Debug, Subcommand)]
enum FiltersCommand {
    /// Say for each qualified name whether it is kept, and which rule decides.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// Workflow config file (TOML).
    #[arg(
        long,
        short,
        value_name = "FILE",
        required_unless_present = "workflow",
        conflicts_with = "workflow"
    )]
    config: Option<PathBuf>,
    /// Id of a stored workflow.
    #[arg(long, short, value_name = "ID")]
    workflow: Option<String>,
    /// The asset kind of the names (checks `filters.kinds` and selects field rules).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Qualified names as the output writes them, e.g. shop.main.orders or db."odd.name".t
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory for the sample database, config and output.
    #[arg(long, value_name = "DIR", default_value = "airlock-demo")]
    dir: PathBuf,
    #[command(flatten)]
    common: CommonRunArgs,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The run directory (holding manifest.json).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// List at most this many problems (the rest are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    max_problems: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The catalog format.
    #[arg(long, value_enum)]
    format: crate::formats::CatalogFormat,
    /// The run directory (holding manifest.json); it must validate.
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// The file to write (replaced whole).
    #[arg(value_name = "OUT")]
    out: PathBuf,
    /// DataHub: the environment of the URNs.
    #[arg(long, default_value = "PROD")]
    env: String,
    /// DataHub: the platform instance, when the catalog's other recipes set one.
    #[arg(long, value_name = "NAME")]
    platform_instance: Option<String>,
    /// OpenMetadata: the database service the entities belong to (required).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// DataHub, SQLite only: the database path DataHub's recipes use in their connection URI (DataHub
    /// keys a SQLite database by it) [default: the database's name].
    #[arg(long, value_name = "PATH")]
    sqlite_database: Option<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn export(args: &ExportArgs) -> i32 {
    use crate::formats::CatalogFormat;
    let result = match (args.format, &args.service) {
        (CatalogFormat::Openmetadata, None) => Err(
            "--format openmetadata needs --service NAME: the OpenMetadata \
             database service the entities belong to"
                .into(),
        ),
        (format, service) => crate::formats::export(
            &args.run_dir,
            format,
            &crate::formats::CatalogOptions {
                env: Some(args.env.clone()),
                platform_instance: args.platform_instance.clone(),
                sqlite_database: args.sqlite_database.clone(),
                service: service.clone(),
            },
            &args.out,
        ),
    };
    match result {
        Ok(done) => {
            if args.json {
                println!("{}", serde_json::to_string(&done).unwrap_or_default());
            } else {
                let what = match args.format {
                    CatalogFormat::Datahub => "DataHub records (ingest with a `file` source)",
                    CatalogFormat::Openmetadata => "OpenMetadata create requests",
                };
                println!(
                    "exported run {} to {}: {} {what}",
                    done.run_id,
                    args.out.display(),
                    done.records
                );
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn validate(args: &ValidateArgs) -> i32 {
    let v = crate::validate::validate_run(&args.run_dir, args.max_problems);
    if args.json {
        println!("{}", serde_json::to_string(&v).unwrap_or_default());
    } else if v.ok() {
        println!(
            "valid: run {} in {}, {} assets checked against asset contract {}",
            v.run_id.as_deref().unwrap_or("?"),
            args.run_dir.display(),
            v.assets_checked,
            v.contract.as_deref().unwrap_or("?")
        );
    }
    if !v.ok() {
        eprintln!("invalid: {}", args.run_dir.display());
        for p in &v.problems {
            eprintln!("  - {p}");
        }
        if v.more_problems > 0 {
            eprintln!("  ... and {} more problems", v.more_problems);
        }
        return 1;
    }
    0
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the plugins in the plugin directory: name, version, digest, WIT version.
    List {
        /// Directory to list [default: the first existing plugin directory].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Do not cache compiled plugins on disk.
        #[arg(long)]
        no_cache: bool,
    },
}

/// Parses arguments, runs the command and returns the process exit code.
pub async fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // A worker is a service: it logs what it does (runs, connections) unless told otherwise.
    let default_filter = if matches!(cli.command, Command::Worker(_)) {
        "warn,airlock=info"
    } else {
        "warn"
    };
    init_tracing(cli.log_format == "json", default_filter);
    let home_dir = cli.home.clone().unwrap_or_else(Home::default_dir);
    match cli.command {
        Command::Run(args) => run_command(&args, &home_dir).await,
        Command::Preview(mut args) => {
            args.dry_run = true;
            run_command(&args, &home_dir).await
        }
        Command::Filters(FiltersCommand::Explain(args)) => explain(&args, &home_dir),
        Command::Credential(c) => credentials::credential(c, &home_dir).await,
        Command::Workflow(c) => credentials::workflow(c, &home_dir),
        Command::Audit(a) => credentials::audit(a, &home_dir),
        Command::Demo(args) => demo(&args).await,
        Command::Upload(args) => upload::upload(&args, &home_dir).await,
        Command::Validate(args) => validate(&args),
        Command::Export(args) => export(&args),
        Command::Worker(args) => service::worker(&args, &home_dir).await,
        Command::Trigger(args) => service::trigger(&args, &home_dir).await,
        Command::Schedule(cmd) => service::schedule(&cmd, &home_dir).await,
        Command::Plugin(c) => plugin::plugin(c, &home_dir).await,
        Command::CompilePlugin(args) => plugin::compile_child(args),
        Command::Plugins(PluginsCommand::List {
            dir,
            json,
            no_cache,
        }) => plugins_list(dir, json, no_cache).await,
    }
}

/// Opens the home, or explains why not (exit code 2).
pub(crate) fn open_home(dir: &Path) -> Result<Home, i32> {
    Home::open(dir).map_err(|e| {
        eprintln!("error: {}", redacted(&e.to_string()));
        2
    })
}

/// Loads a config file or a stored workflow, opening the home when it is needed (a stored
/// workflow, a source credential, or a `hash` field rule's key credential).
fn load_target(
    config: &Option<PathBuf>,
    workflow: &Option<String>,
    home_dir: &Path,
    json: bool,
) -> Result<(LoadedConfig, Option<Home>), i32> {
    match (config, workflow) {
        (Some(path), _) => {
            let cfg = LoadedConfig::load(path).map_err(|e| fail(&RunError::Config(e), json))?;
            let needs_home = cfg.config.source.credential.is_some()
                || home_dir.join("state.sqlite").is_file()
                || crate::plugins::PluginPolicy::path_for(home_dir).is_file()
                || cfg
                    .config
                    .filters
                    .fields
                    .iter()
                    .any(|f| f.key_credential.is_some());
            let home = if needs_home {
                Some(open_home(home_dir)?)
            } else {
                None
            };
            Ok((cfg, home))
        }
        (None, Some(id)) => {
            let home = open_home(home_dir)?;
            let cfg = home.load_workflow(id).map_err(|e| {
                fail(
                    &RunError::Config(crate::config::ConfigError::Invalid(e.to_string())),
                    json,
                )
            })?;
            Ok((cfg, Some(home)))
        }
        (None, None) => {
            eprintln!("error: pass --config FILE or --workflow ID");
            Err(2)
        }
    }
}

async fn run_command(args: &RunArgs, home_dir: &Path) -> i32 {
    let (cfg, home) = match load_target(&args.config, &args.workflow, home_dir, args.common.json) {
        Ok(t) => t,
        Err(code) => return code,
    };
    if args.dry_run {
        preview_and_report(&cfg, &args.common, home.as_ref(), args.samples).await
    } else {
        run_and_report(&cfg, &args.common, home.as_ref()).await
    }
}

fn explain(args: &ExplainArgs, home_dir: &Path) -> i32 {
    let (cfg, _home) = match (&args.config, &args.workflow) {
        (Some(path), _) => match LoadedConfig::load(path) {
            Ok(cfg) => (cfg, None),
            Err(e) => return fail(&RunError::Config(e), args.json),
        },
        _ => match load_target(&None, &args.workflow, home_dir, args.json) {
            Ok(t) => t,
            Err(code) => return code,
        },
    };
    let kind = match args
        .kind
        .as_deref()
        .map(str::parse::<crate::pipeline::asset::AssetKind>)
    {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            eprintln!("error: --kind: {e}");
            return 2;
        }
    };
    let policy = match crate::pipeline::filter::FilterPolicy::compile_for(
        &cfg.config.filters,
        &cfg.config.source.plugin,
    ) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                &RunError::Config(crate::config::ConfigError::Invalid(e.to_string())),
                args.json,
            )
        }
    };
    let mut explanations = Vec::new();
    for name in &args.names {
        match policy.explain(name, kind) {
            Ok(e) => explanations.push(e),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    }
    if args.json {
        let v = serde_json::json!({
            "case_sensitive": policy.case_sensitive(),
            "digest": policy.digest(),
            "names": explanations,
        });
        println!("{v}");
        return 0;
    }
    println!(
        "filters (digest {}): {} matching",
        policy.digest(),
        if policy.case_sensitive() {
            "case-sensitive"
        } else {
            "case-insensitive"
        }
    );
    for e in &explanations {
        match e.kind {
            Some(k) => println!("{} ({k}): {}", e.name, e.decision),
            None => println!("{}: {}", e.name, e.decision),
        }
        if e.decision.keeps() {
            for rule in &e.fields {
                println!("  field rule: {rule}");
            }
        }
        if let Some(p) = &e.confusable_with_exclude {
            println!(
                "  warning: confusable with filters.exclude `{p}`: it looks like a name that \
                 pattern drops (Unicode look-alike characters); filters.include is the boundary"
            );
        }
    }
    0
}

fn init_tracing(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Both formats go through the redactor, which knows each secret's JSON-escaped forms too.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

pub(crate) fn runtime(no_cache: bool) -> Result<Runtime, RunError> {
    let cache = if no_cache {
        None
    } else {
        ComponentCache::default_dir()
    };
    let runtime = Runtime::new(cache).map_err(|e| RunError::Runtime(format!("{e:#}")))?;
    // A component not compiled yet (not installed, or its cache entry gone) is compiled in a
    // limited child process, like `plugin install` does, never in this one.
    Ok(match std::env::current_exe() {
        Ok(exe) => runtime.with_compiler(exe),
        Err(e) => {
            tracing::warn!("cannot find the airlock executable to compile plugins in a child: {e}");
            runtime
        }
    })
}

fn plugin_dir(explicit: &Option<PathBuf>) -> PluginDir {
    match explicit {
        Some(d) => PluginDir::single(d.clone()),
        None => PluginDir::from_env(),
    }
}

fn observer(json: bool) -> Arc<dyn RunObserver> {
    if !json && std::io::stderr().is_terminal() {
        Arc::new(TerminalProgress::new())
    } else {
        Arc::new(PlainProgress::new(json))
    }
}

/// Runs `run` until it ends. The first Ctrl-C asks it to `stop`: it ends as interrupted,
/// publishes nothing, keeps its log and is recorded as failed. A second Ctrl-C drops it at
/// once (its staging goes with it: still nothing is published, but no log is kept).
async fn interruptible<T>(
    run: impl std::future::Future<Output = Result<T, RunError>>,
    stop: &run::Stop,
) -> Result<T, RunError> {
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => return r,
        _ = tokio::signal::ctrl_c() => {}
    }
    stop.stop("Ctrl-C");
    eprintln!("interrupted: stopping the run and keeping its log (Ctrl-C again to quit at once)");
    tokio::select! {
        r = &mut run => r,
        _ = tokio::signal::ctrl_c() => Err(RunError::Interrupted("Ctrl-C twice, the run's log was not kept".into())),
    }
}

async fn run_and_report(cfg: &LoadedConfig, args: &CommonRunArgs, home: Option<&Home>) -> i32 {
    let runtime = match runtime(args.no_cache) {
        Ok(r) => r,
        Err(e) => return fail(&e, args.json),
    };
    let observer = observer(args.json);
    let plugins = plugin_dir(&args.plugin_dir);
    let stop = run::Stop::new();
    let result = interruptible(
        run::run_workflow_gated(
            &runtime,
            cfg,
            &plugins,
            observer.clone(),
            home,
            None,
            stop.clone(),
        ),
        &stop,
    )
    .await;
    drop(observer);
    match result {
        Ok(report) => {
            print_report(&report, args.json);
            0
        }
        Err(e) => fail(&e, args.json),
    }
}

async fn demo(args: &DemoArgs) -> i32 {
    let config = match crate::demo::prepare(&args.dir) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                &RunError::Output(format!(
                    "cannot prepare demo in {}: {e}",
                    args.dir.display()
                )),
                args.common.json,
            )
        }
    };
    if !args.common.json {
        eprintln!(
            "demo: sample database and config written to {}",
            args.dir.display()
        );
    }
    match LoadedConfig::load(&config) {
        Ok(cfg) => run_and_report(&cfg, &args.common, None).await,
        Err(e) => fail(&RunError::Config(e), args.common.json),
    }
}

async fn preview_and_report(
    cfg: &LoadedConfig,
    args: &CommonRunArgs,
    home: Option<&Home>,
    samples: usize,
) -> i32 {
    let runtime = match runtime(args.no_cache) {
        Ok(r) => r,
        Err(e) => return fail(&e, args.json),
    };
    let observer = observer(args.json);
    let plugins = plugin_dir(&args.plugin_dir);
    let stop = run::Stop::new();
    let result = interruptible(
        run::preview_workflow_in(
            &runtime,
            cfg,
            &plugins,
            observer.clone(),
            home,
            samples,
            stop.clone(),
        ),
        &stop,
    )
    .await;
    drop(observer);
    match result {
        Ok(report) => {
            print_preview(&report, args.json);
            0
        }
        Err(e) => fail(&e, args.json),
    }
}

fn print_preview(r: &PreviewReport, json: bool) {
    let m = &r.manifest;
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    if json {
        let v = serde_json::json!({
            "status": "preview",
            "published": false,
            "run_id": m.run_id,
            "plugin": m.plugin,
            "filter": m.filter,
            "counts": m.counts,
            "totals": m.totals,
            "files": m.files,
            "bytes": bytes,
            "samples": r.samples,
            "warnings": m.warnings,
        });
        println!("{v}");
        return;
    }
    println!(
        "preview {}: {} assets would leave of {} emitted, {bytes} bytes; nothing was published",
        m.run_id, m.totals.kept, m.totals.emitted
    );
    println!(
        "  {:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "kind", "emitted", "kept", "filter", "oversize", "cap", "secret", "bytes"
    );
    for (kind, c) in &m.counts {
        let kind_bytes: u64 = m
            .files
            .iter()
            .filter(|f| &f.kind == kind)
            .map(|f| f.bytes)
            .sum();
        println!(
            "  {:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
            kind,
            c.emitted,
            c.kept,
            c.dropped_filter,
            c.dropped_oversize,
            c.dropped_kind_limit,
            c.quarantined,
            kind_bytes
        );
    }
    for (kind, c) in &m.counts {
        for (field, actions) in &c.fields {
            for (action, n) in actions {
                println!("field {kind}.{field}: {action} x{n}");
            }
        }
    }
    for (kind, lines) in &r.samples {
        for line in lines {
            println!("sample {kind}: {line}");
        }
    }
    for w in m.warnings.iter().take(10) {
        println!("warning: {w}");
    }
    for w in filter_warnings(m) {
        println!("warning: {w}");
    }
}

/// One line per pattern that matched nothing and per kept name confusable with an exclude
/// pattern (the first 10; the manifest lists up to 100 and counts the rest).
fn filter_warnings(m: &crate::pipeline::manifest::Manifest) -> Vec<String> {
    let f = &m.filter;
    let mut out: Vec<String> = f
        .unmatched_patterns
        .iter()
        .map(|p| format!("{p} matched no asset (a typo, or the source changed?)"))
        .collect();
    for c in f.confusable_with_exclude.iter().take(10) {
        out.push(format!(
            "kept {} {} is confusable with filters.exclude `{}` (a look-alike of an excluded name)",
            c.kind, c.name, c.pattern
        ));
    }
    let more =
        (f.confusable_with_exclude.len() as u64).saturating_sub(10) + f.confusable_not_listed;
    if more > 0 {
        out.push(format!(
            "{more} more kept names are confusable with an exclude pattern (see the manifest)"
        ));
    }
    out
}

fn fail(e: &RunError, json: bool) -> i32 {
    let message = redacted(&e.to_string());
    if json {
        let v = serde_json::json!({
            "status": "failed",
            "error": { "kind": e.kind(), "message": message },
            "exit_code": e.exit_code(),
        });
        println!("{v}");
    }
    eprintln!("error: {message}");
    if e.exit_code() == 1 {
        eprintln!("nothing was published");
    }
    e.exit_code()
}

fn print_report(r: &RunReport, json: bool) {
    let m = &r.manifest;
    if json {
        let v = serde_json::json!({
            "status": m.status,
            "run_id": m.run_id,
            "output_dir": r.output_dir,
            "plugin": m.plugin,
            "counts": m.counts,
            "totals": m.totals,
            "files": m.files,
            "warnings": m.warnings,
            "timings_ms": m.timings_ms,
            "sql_guard": { "statements": r.sql_guard.0, "micros": r.sql_guard.1 },
            "plugin_usage": r.plugin_usage,
        });
        println!("{v}");
        return;
    }
    println!(
        "run {} complete: {} assets kept of {} emitted ({} dropped by filters, {} oversize)",
        m.run_id,
        m.totals.kept,
        m.totals.emitted,
        m.totals.dropped_filter,
        m.totals.dropped_oversize
    );
    println!(
        "plugin {} {} (sha256 {}…, WIT {})",
        m.plugin.name,
        m.plugin.version,
        &m.plugin.sha256[..12.min(m.plugin.sha256.len())],
        m.plugin.wit_version
    );
    println!(
        "  {:<20} {:>8} {:>8} {:>8}",
        "kind", "emitted", "kept", "dropped"
    );
    for (kind, c) in &m.counts {
        println!(
            "  {:<20} {:>8} {:>8} {:>8}",
            kind,
            c.emitted,
            c.kept,
            c.dropped_filter + c.dropped_oversize
        );
    }
    for w in m.warnings.iter().take(10) {
        println!("warning: {w}");
    }
    for w in filter_warnings(m) {
        println!("warning: {w}");
    }
    if r.dropped_log_lines > 0 {
        println!(
            "note: {} plugin log lines were dropped (limits.log_lines)",
            r.dropped_log_lines
        );
    }
    println!("output: {}", r.output_dir.display());
}

async fn plugins_list(dir: Option<PathBuf>, json: bool, no_cache: bool) -> i32 {
    let dir = match dir {
        Some(d) => d,
        None => match PluginDir::from_env().0.into_iter().find(|d| d.is_dir()) {
            Some(d) => d,
            None => {
                eprintln!("error: no plugin directory found; pass --dir or set AIRLOCK_PLUGIN_DIR");
                return 2;
            }
        },
    };
    let runtime = match runtime(no_cache) {
        Ok(r) => r,
        Err(e) => return fail(&e, json),
    };
    let listings = match run::list_plugins(&runtime, &dir).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot read plugin directory {}: {e}", dir.display());
            return 2;
        }
    };
    if json {
        println!("{}", serde_json::to_string(&listings).unwrap_or_default());
    } else {
        print_listings(&dir, &listings);
    }
    if listings.iter().any(|l| l.error.is_some()) {
        1
    } else {
        0
    }
}

fn print_listings(dir: &Path, listings: &[run::PluginListing]) {
    println!("plugins in {}:", dir.display());
    println!(
        "  {:<16} {:<10} {:<6} {:<14} file",
        "name", "version", "wit", "sha256"
    );
    for l in listings {
        let file = l
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match (&l.description, &l.error) {
            (Some(d), _) => println!(
                "  {:<16} {:<10} {:<6} {:<14} {}",
                d.name,
                d.version,
                l.wit_version.as_deref().unwrap_or("?"),
                l.sha256.as_deref().map(|s| &s[..12]).unwrap_or("?"),
                file
            ),
            (None, Some(e)) => println!("  {file}: error: {e}"),
            (None, None) => {}
        }
    }
}
