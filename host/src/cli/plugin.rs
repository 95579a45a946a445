//! `airlock plugin ...`: install and approve plugins, author keys and signatures.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::plugins::{compile, install, signature, CompileLimits, PluginPolicy};
use crate::run::{redacted, PluginDir};
use crate::runtime::cache::ComponentCache;

const INSTALL_HELP: &str = "\
Before anything compiles the plugin, install reads it once, computes its SHA-256, and reads what
it asks for: the airlock:connector interfaces it imports (sql, http, ...) with their versions,
and the destinations its `airlock-capabilities` section declares. It shows them and needs your
approval: answer the prompt in a terminal, or pass --approve from a script. Then it compiles the
plugin in a child process (limited to --compile-timeout-s of wall time and --compile-memory-mb
of address space) into the component cache, copies it to <plugin dir>/<NAME>.wasm and records
the approval (digest, capabilities, signer) in the state store and the audit log.

A run refuses, before compiling, a plugin whose digest differs from the approved one or from the
workflow's `source.plugin_sha256`, and one that asks for capabilities that were not approved.

Signatures: FILE.sig (or --signature) is verified against the public keys in
<home>/trusted-keys/*.pub. A bad signature is always refused; with `require_signature = true`
in <home>/plugins.toml, unsigned plugins and untrusted keys are refused too.";

/// Plugin supply-chain commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install a plugin: show what it asks for, approve it, compile it in a limited child
    /// process, and record its digest and capabilities.
    #[command(after_help = INSTALL_HELP)]
    Install(InstallArgs),
    /// List installed, approved plugins: name, digest, capabilities, signer.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// For authors: create an ed25519 key pair (KEYFILE, mode 0600, and KEYFILE.pub).
    Keygen {
        /// Where to write the secret key; the public key goes to KEYFILE.pub. Never overwritten.
        #[arg(long, value_name = "KEYFILE")]
        out: PathBuf,
        /// A comment stored with the public key (e.g. who owns it).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// For authors: write a detached signature FILE.sig over the SHA-256 of FILE.
    Sign {
        /// The plugin (.wasm) to sign.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The secret key from `airlock plugin keygen`.
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// Where to write the signature [default: FILE.sig].
        #[arg(long, value_name = "SIGFILE")]
        out: Option<PathBuf>,
    },
}

/// `airlock plugin install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The plugin component (.wasm) to install.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The name workflows use (`[source] plugin = "NAME"`) [default: the file name without
    /// .wasm].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Approve the capabilities shown without asking (for scripts). Without it, a terminal is
    /// asked and anything else is refused.
    #[arg(long)]
    approve: bool,
    /// The detached signature [default: FILE.sig when it exists].
    #[arg(long, value_name = "SIGFILE")]
    signature: Option<PathBuf>,
    /// Where to install [default: $AIRLOCK_PLUGIN_DIR, else ~/.local/share/airlock/plugins].
    #[arg(long, value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// Wall-time limit of compiling, in seconds (fractions allowed) [default:
    /// compile_timeout_s in <home>/plugins.toml, else 120].
    #[arg(long, value_name = "SECONDS")]
    compile_timeout_s: Option<f64>,
    /// Address-space limit of the compiler process, in MiB [default: compile_memory_mb in
    /// <home>/plugins.toml, else 4096].
    #[arg(long, value_name = "MIB")]
    compile_memory_mb: Option<u64>,
    /// Compile only to check the plugin; do not write the component cache.
    #[arg(long)]
    no_cache: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// The hidden child command that compiles a plugin read from stdin.
#[derive(Debug, Args)]
pub struct CompileChildArgs {
    /// The SHA-256 the bytes on stdin must have.
    #[arg(long)]
    sha256: String,
    /// The component cache to write.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Runs the hidden compile child.
pub fn compile_child(args: CompileChildArgs) -> i32 {
    compile::child_main(&args.sha256, args.cache_dir)
}

/// Runs a `plugin` subcommand.
pub async fn plugin(cmd: PluginCommand, home_dir: &Path) -> i32 {
    match cmd {
        PluginCommand::Install(args) => install_command(args, home_dir).await,
        PluginCommand::List { json } => list(json, home_dir),
        PluginCommand::Keygen { out, comment } => match signature::generate(&out, &comment) {
            Ok(public) => {
                println!("{public}");
                eprintln!(
                    "secret key: {} (keep it private); public key: {} (give it to operators, who copy it into <home>/trusted-keys/)",
                    out.display(),
                    signature::pub_path_of(&out).display()
                );
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        PluginCommand::Sign { file, key, out } => sign(&file, &key, out),
    }
}

fn sign(file: &Path, key: &Path, out: Option<PathBuf>) -> i32 {
    use sha2::{Digest, Sha256};
    let wasm = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return 2;
        }
    };
    let sha256 = hex::encode(Sha256::digest(&wasm));
    let sig = match signature::sign(&sha256, key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let out = out.unwrap_or_else(|| signature::sig_path_of(file));
    let text = serde_json::to_string_pretty(&sig).unwrap_or_default() + "\n";
    if let Err(e) = std::fs::write(&out, text) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return 1;
    }
    println!("{}", out.display());
    eprintln!("signed sha256 {sha256} with {}", sig.key);
    0
}

fn list(json: bool, home_dir: &Path) -> i32 {
    let home = match super::open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let approvals = match home.state().plugin_approvals() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if json {
        let v: Vec<serde_json::Value> = approvals
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "sha256": a.sha256,
                    "wit_version": a.wit_version,
                    "capabilities": serde_json::from_str::<serde_json::Value>(&a.capabilities).unwrap_or_default(),
                    "signer": a.signer,
                    "file": a.file,
                    "approved_at": a.approved_at,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return 0;
    }
    if approvals.is_empty() {
        println!("no approved plugins; install one with `airlock plugin install FILE`");
    }
    for a in &approvals {
        let caps: crate::plugins::Capabilities =
            serde_json::from_str(&a.capabilities).unwrap_or_default();
        println!(
            "{}  sha256 {}  approved {}",
            a.name, a.sha256, a.approved_at
        );
        println!("  file: {}", a.file);
        println!("  signer: {}", a.signer.as_deref().unwrap_or("none"));
        for l in caps.describe() {
            println!("  {l}");
        }
    }
    0
}

async fn install_command(args: InstallArgs, home_dir: &Path) -> i32 {
    let home = match super::open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let state = home.state();
    let fail = |e: &dyn std::fmt::Display, code: i32| {
        let message = redacted(&e.to_string());
        if args.json {
            println!(
                "{}",
                serde_json::json!({"status": "refused", "error": message, "exit_code": code})
            );
        }
        eprintln!("error: {message}");
        eprintln!("nothing was installed");
        code
    };
    if args
        .compile_timeout_s
        .is_some_and(|t| t.is_nan() || t <= 0.0)
    {
        return fail(
            &"--compile-timeout-s must be a positive number of seconds",
            2,
        );
    }
    let policy = match PluginPolicy::load(home_dir) {
        Ok(p) => p,
        Err(e) => return fail(&e, 2),
    };
    let plan = match install::prepare(
        &args.file,
        args.name.as_deref(),
        args.signature.as_deref(),
        home_dir,
        state,
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e, 2),
    };
    let summary = plan.summary();
    if !args.json {
        for l in &summary {
            println!("{l}");
        }
    }
    if !args.approve {
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if !interactive {
            let e = install::refuse(
                &plan,
                state,
                "not approved: review the capabilities above and pass --approve to approve them from a script (or run the command in a terminal to be asked)",
            );
            return fail(&e, 2);
        }
        if args.json {
            for l in &summary {
                eprintln!("{l}");
            }
        }
        eprint!(
            "Approve plugin {} with these capabilities? [y/N] ",
            plan.name
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            let e = install::refuse(&plan, state, "not approved at the prompt");
            return fail(&e, 2);
        }
    }
    let mut limits: CompileLimits = policy.compile_limits();
    if let Some(t) = args.compile_timeout_s {
        limits.time = std::time::Duration::from_secs_f64(t);
    }
    if let Some(m) = args.compile_memory_mb {
        limits.memory_mb = m;
    }
    let plugin_dir = match &args.plugin_dir {
        Some(d) => d.clone(),
        None => match PluginDir::from_env().0.into_iter().next() {
            Some(d) => d,
            None => {
                return fail(
                    &"no plugin directory: pass --plugin-dir or set AIRLOCK_PLUGIN_DIR",
                    2,
                )
            }
        },
    };
    let cache_dir = if args.no_cache {
        None
    } else {
        ComponentCache::default_dir()
    };
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find the airlock executable: {e}"), 1),
    };
    if !args.json {
        eprintln!(
            "compiling in a child process (limits: {} s, {} MiB)...",
            limits.time.as_secs_f64(),
            limits.memory_mb
        );
    }
    match install::complete(
        &plan,
        state,
        &plugin_dir,
        cache_dir.as_deref(),
        &program,
        limits,
    )
    .await
    {
        Ok((approval, compiled)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "installed",
                        "name": approval.name,
                        "sha256": approval.sha256,
                        "file": approval.file,
                        "wit_version": compiled.wit_version,
                        "cached": compiled.cached,
                        "signer": approval.signer,
                        "capabilities": plan.capabilities,
                    })
                );
            } else {
                println!(
                    "installed plugin {} into {}; approved and recorded{}",
                    approval.name,
                    approval.file,
                    if compiled.cached {
                        "; compiled into the component cache"
                    } else {
                        ""
                    }
                );
                println!(
                    "pin it in a workflow: [source] plugin = \"{}\" and plugin_sha256 = \"{}\"",
                    approval.name, approval.sha256
                );
            }
            0
        }
        Err(e) => fail(&e, 1),
    }
}
