//! The `airlock` command line: argument parsing and printing only; the work happens in the
//! library.

mod progress;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::config::LoadedConfig;
use crate::run::{self, PluginDir, RunError, RunObserver, RunReport};
use crate::runtime::cache::ComponentCache;
use crate::runtime::Runtime;
use progress::{PlainProgress, TerminalProgress};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the run failed (plugin error, crash or limit, output not writable); nothing was published
  2  usage or configuration error (bad arguments, config or plugin file)

Environment:
  AIRLOCK_PLUGIN_DIR  directory of installed plugins (<name>.wasm)
  AIRLOCK_CACHE_DIR   directory of the compiled-component cache
  AIRLOCK_LOG         log filter, e.g. `info` or `airlock=debug` (default: warn)";

/// airlock runs sandboxed connector plugins that extract metadata, filters what they emit and
/// publishes it whole or not at all. Plugins never see a secret, a file or a socket.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow from a TOML config file.
    Run(RunArgs),
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
struct RunArgs {
    /// Workflow config file (TOML). Unknown keys are errors.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
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
    match cli.command {
        Command::Run(args) => match LoadedConfig::load(&args.config) {
            Ok(cfg) => run_and_report(&cfg, &args.common).await,
            Err(e) => fail(&RunError::Config(e), args.common.json),
        },
        Command::Demo(args) => demo(&args).await,
        Command::Plugins(PluginsCommand::List {
            dir,
            json,
            no_cache,
        }) => plugins_list(dir, json, no_cache).await,
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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

async fn run_and_report(cfg: &LoadedConfig, args: &CommonRunArgs) -> i32 {
    let runtime = match runtime(args.no_cache) {
        Ok(r) => r,
        Err(e) => return fail(&e, args.json),
    };
    let observer = observer(args.json);
    let result = run::run_workflow(
        &runtime,
        cfg,
        &plugin_dir(&args.plugin_dir),
        observer.clone(),
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
        Ok(cfg) => run_and_report(&cfg, &args.common).await,
        Err(e) => fail(&RunError::Config(e), args.common.json),
    }
}

fn fail(e: &RunError, json: bool) -> i32 {
    if json {
        let v = serde_json::json!({
            "status": "failed",
            "error": { "kind": e.kind(), "message": e.to_string() },
            "exit_code": e.exit_code(),
        });
        println!("{v}");
    }
    eprintln!("error: {e}");
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
