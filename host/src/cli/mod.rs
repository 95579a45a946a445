//! The `airlock` command line: argument parsing and printing only; the work happens in the
//! library.

mod credentials;
mod progress;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::LoadedConfig;
use crate::home::Home;
use crate::run::{self, redacted, PluginDir, RunError, RunObserver, RunReport};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow: a stored one by id (`--workflow`) or a TOML config file (`--config`).
    Run(RunArgs),
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
    /// Create a sample shop database and a config in DIR, run it, and print a summary.
    Demo(DemoArgs),
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
    #[command(flatten)]
    common: CommonRunArgs,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory for the sample database, config and output.
    #[arg(long, value_name = "DIR", default_value = "airlock-demo")]
    dir: PathBuf,
    #[command(flatten)]
    common: CommonRunArgs,
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
    init_tracing();
    let home_dir = cli.home.clone().unwrap_or_else(Home::default_dir);
    match cli.command {
        Command::Run(args) => run_command(&args, &home_dir).await,
        Command::Credential(c) => credentials::credential(c, &home_dir).await,
        Command::Workflow(c) => credentials::workflow(c, &home_dir),
        Command::Audit(a) => credentials::audit(a, &home_dir),
        Command::Demo(args) => demo(&args).await,
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

async fn run_command(args: &RunArgs, home_dir: &Path) -> i32 {
    let json = args.common.json;
    let cfg = match (&args.config, &args.workflow) {
        (Some(path), _) => match LoadedConfig::load(path) {
            Ok(cfg) => cfg,
            Err(e) => return fail(&RunError::Config(e), json),
        },
        (None, Some(id)) => {
            let home = match open_home(home_dir) {
                Ok(h) => h,
                Err(code) => return code,
            };
            match home.load_workflow(id) {
                Ok(cfg) => return run_and_report(&cfg, &args.common, Some(&home)).await,
                Err(e) => {
                    return fail(
                        &RunError::Config(crate::config::ConfigError::Invalid(e.to_string())),
                        json,
                    )
                }
            }
        }
        (None, None) => {
            eprintln!("error: pass --config FILE or --workflow ID");
            return 2;
        }
    };
    // Only a config that names a credential needs the home (state store and vault).
    if cfg.config.source.credential.is_some() {
        let home = match open_home(home_dir) {
            Ok(h) => h,
            Err(code) => return code,
        };
        run_and_report(&cfg, &args.common, Some(&home)).await
    } else {
        run_and_report(&cfg, &args.common, None).await
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_target(false)
        .try_init();
}

fn runtime(no_cache: bool) -> Result<Runtime, RunError> {
    let cache = if no_cache {
        None
    } else {
        ComponentCache::default_dir()
    };
    Runtime::new(cache).map_err(|e| RunError::Runtime(format!("{e:#}")))
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

async fn run_and_report(cfg: &LoadedConfig, args: &CommonRunArgs, home: Option<&Home>) -> i32 {
    let runtime = match runtime(args.no_cache) {
        Ok(r) => r,
        Err(e) => return fail(&e, args.json),
    };
    let observer = observer(args.json);
    let plugins = plugin_dir(&args.plugin_dir);
    // On Ctrl-C the run future is dropped, which removes its staging directory: an interrupted
    // run publishes nothing and leaves nothing behind.
    let result = tokio::select! {
        r = run::run_workflow_in(&runtime, cfg, &plugins, observer.clone(), home) => r,
        _ = tokio::signal::ctrl_c() => {
            drop(observer);
            eprintln!("interrupted: nothing was published");
            return 130;
        }
    };
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
