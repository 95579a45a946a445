//! Runs one command and measures it: wall time, CPU (user + system, its reaped children
//! included) and peak RSS.
//!
//! CPU and peak RSS come from GNU time (`/usr/bin/time`, Debian's `time`), which forks and
//! execs the command. Not from our own `wait4`: a process started by this (large) benchmark
//! inherits its high-water RSS at `exec` (the kernel keeps the larger of the old and new
//! address space's peak in `ru_maxrss`), so every tool would seem to use at least as much as
//! the benchmark itself. GNU time's own address space is a few MiB.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// What one process cost the client machine.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_kib: i64,
}

/// Runs `cmd` with stdout to `stdout` and stderr to `stderr` (files, so nothing can block on
/// a pipe) and waits for it with `wait4`. An exit other than 0 is an error naming the
/// command and the end of its stderr.
pub fn run(cmd: &Command, stdout: &Path, stderr: &Path) -> Result<Sample, String> {
    let program = cmd.get_program().to_owned();
    let usage_file = stderr.with_extension("usage");
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("--quiet")
        .args(["--format", "%U %S %M", "--output"])
        .arg(&usage_file)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    let cmd = &mut timed;
    let out = File::create(stdout).map_err(|e| format!("{}: {e}", stdout.display()))?;
    let err = File::create(stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("/usr/bin/time does not start (apt-get install time): {e}"))?;
    let mut child = child;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let wall_s = started.elapsed().as_secs_f64();
    if !status.success() {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        let tail: String = text
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!("{:?} failed ({status}):\n{tail}", program));
    }
    let usage = std::fs::read_to_string(&usage_file).unwrap_or_default();
    let fields: Vec<f64> = usage
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [user, system, peak_kib] = fields[..] else {
        return Err(format!("GNU time wrote `{usage}`"));
    };
    Ok(Sample {
        wall_s,
        cpu_s: user + system,
        peak_rss_kib: peak_kib as i64,
    })
}

/// The median (the upper one of an even count); NaN for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
