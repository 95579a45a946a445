//! Compiling a plugin in a child process with a wall-time and a memory limit, so a component
//! that takes forever or all memory to compile cannot hang or exhaust the host. The child is
//! `airlock` itself, re-executed with a hidden subcommand; it reads the wasm from stdin,
//! compiles it with the same engine settings as a run and writes the result into the
//! component cache, where runs find it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::runtime::Runtime;

/// The hidden subcommand the child runs.
pub const CHILD_SUBCOMMAND: &str = "__compile-plugin";

/// Exit code of a child that compiled nothing because the component is invalid.
pub const EXIT_REJECTED: i32 = 3;

/// Limits of one compilation.
#[derive(Debug, Clone, Copy)]
pub struct CompileLimits {
    /// Wall time; the child is killed when it passes.
    pub time: Duration,
    /// Address space of the child (RLIMIT_AS), in MiB.
    pub memory_mb: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            time: Duration::from_secs(120),
            memory_mb: 4096,
        }
    }
}

/// What the child reports after a successful compilation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Compiled {
    /// The `airlock:connector` version the component was linked against.
    pub wit_version: String,
    /// Whether the compiled component is in the cache now.
    pub cached: bool,
}

/// Why compilation failed. The host process is unaffected in every case.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The child could not be started.
    #[error("cannot start the compiler process {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    /// The wall-time limit passed.
    #[error("compiling the plugin did not finish within {seconds} s (the compile time limit), so the compiler process was killed; a component that takes this long may be a compile-time bomb. If you trust it, raise the limit with --compile-timeout-s")]
    TimeLimit { seconds: f64 },
    /// The child ran out of its address space.
    #[error("compiling the plugin needed more than the compile memory limit of {memory_mb} MiB ({detail}), so it was stopped; a component that needs this much may be a compile-time bomb. If you trust it, raise the limit with --compile-memory-mb")]
    MemoryLimit { memory_mb: u64, detail: String },
    /// The component is not a valid airlock connector.
    #[error("the plugin does not compile: {0}")]
    Rejected(String),
    /// The child crashed for another reason.
    #[error("the compiler process failed ({status}): {detail}")]
    Crashed { status: String, detail: String },
}

/// Compiles `wasm` in a child process running `program` (normally the current executable)
/// under `limits`, writing into `cache_dir` (`None`: compile only, to check it).
pub async fn compile_in_child(
    program: &Path,
    wasm: &[u8],
    cache_dir: Option<&Path>,
    limits: CompileLimits,
) -> Result<Compiled, CompileError> {
    let sha256 = hex::encode(Sha256::digest(wasm));
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(CHILD_SUBCOMMAND).arg("--sha256").arg(&sha256);
    if let Some(dir) = cache_dir {
        cmd.arg("--cache-dir").arg(dir);
    }
    // The child needs nothing from the environment; a small malloc arena count keeps its
    // address space (what RLIMIT_AS counts) close to what it really uses.
    cmd.env_clear()
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let memory_bytes = limits.memory_mb.saturating_mul(1 << 20);
    let cpu_seconds = limits.time.as_secs().saturating_add(2);
    // SAFETY: the closure runs in the forked child before exec and calls only setrlimit,
    // which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            set_limit(libc::RLIMIT_AS, memory_bytes)?;
            set_limit(libc::RLIMIT_CPU, cpu_seconds)?;
            set_limit(libc::RLIMIT_CORE, 0)?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(source) if source.raw_os_error() == Some(libc::ENOMEM) => {
            return Err(CompileError::MemoryLimit {
                memory_mb: limits.memory_mb,
                detail: "the compiler process could not even start".into(),
            })
        }
        Err(source) => {
            return Err(CompileError::Spawn {
                program: program.to_path_buf(),
                source,
            })
        }
    };
    let mut stdin = child.stdin.take();
    let input = wasm.to_vec();
    // A child that dies early closes its stdin; the exit status says why, not the write.
    let writer = tokio::spawn(async move {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    });
    let output = match tokio::time::timeout(limits.time, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Err(CompileError::Crashed {
                status: "no exit status".into(),
                detail: e.to_string(),
            })
        }
        // Dropping the child kills it (kill_on_drop) and tokio reaps it.
        Err(_) => {
            writer.abort();
            return Err(CompileError::TimeLimit {
                seconds: limits.time.as_secs_f64(),
            });
        }
    };
    let _ = writer.await;
    let stderr = tail(&output.stderr);
    if output.status.success() {
        return serde_json::from_slice::<Compiled>(&output.stdout).map_err(|e| {
            CompileError::Crashed {
                status: "exit 0".into(),
                detail: format!("unreadable report from the compiler process: {e}"),
            }
        });
    }
    use std::os::unix::process::ExitStatusExt;
    if output.status.code() == Some(EXIT_REJECTED) {
        return Err(CompileError::Rejected(stderr));
    }
    let out_of_memory = stderr.contains("memory allocation of")
        || stderr.contains("Cannot allocate memory")
        || stderr.contains("out of memory");
    let status = match (output.status.code(), output.status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown status".into(),
    };
    if output.status.signal() == Some(libc::SIGXCPU) {
        return Err(CompileError::TimeLimit {
            seconds: limits.time.as_secs_f64(),
        });
    }
    if out_of_memory || output.status.signal().is_some() {
        let detail = if stderr.is_empty() {
            status
        } else {
            format!("{status}: {stderr}")
        };
        return Err(CompileError::MemoryLimit {
            memory_mb: limits.memory_mb,
            detail,
        });
    }
    Err(CompileError::Crashed {
        status,
        detail: stderr,
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn set_limit(resource: Resource, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The last lines of the child's stderr, one line, at most 600 characters.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let joined = lines[lines.len().saturating_sub(3)..].join(" | ");
    let chars: Vec<char> = joined.chars().collect();
    chars[chars.len().saturating_sub(600)..].iter().collect()
}

/// The child's side: reads the wasm from stdin, checks its digest, compiles it into the cache
/// and prints a [`Compiled`] report. Returns the process exit code.
pub fn child_main(expected_sha256: &str, cache_dir: Option<PathBuf>) -> i32 {
    use std::io::Read;
    let mut wasm = Vec::new();
    let max = super::inspect::MAX_PLUGIN_BYTES as u64;
    if let Err(e) = std::io::stdin().take(max + 1).read_to_end(&mut wasm) {
        eprintln!("cannot read the plugin from stdin: {e}");
        return 1;
    }
    let actual = hex::encode(Sha256::digest(&wasm));
    if actual != expected_sha256 {
        eprintln!("the plugin's sha256 is {actual}, expected {expected_sha256}");
        return EXIT_REJECTED;
    }
    let runtime = match Runtime::new(cache_dir.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e:#}");
            return 1;
        }
    };
    let name = Path::new("plugin.wasm");
    let plugin = match runtime.load_plugin_bytes(name, &wasm) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_REJECTED;
        }
    };
    drop(runtime);
    // Prove the cache entry is there and loads, as the next run will load it.
    let cached = cache_dir.is_some()
        && Runtime::new(cache_dir)
            .ok()
            .and_then(|r| r.load_plugin_bytes(name, &wasm).ok())
            .is_some_and(|p| p.from_cache);
    let report = Compiled {
        wit_version: plugin.wit_version,
        cached,
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    0
}
