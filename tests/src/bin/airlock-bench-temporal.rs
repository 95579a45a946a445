//! `airlock-bench-temporal`: what running through Temporal costs.
//!
//! Against a Temporal dev server on 127.0.0.1 and the demo SQLite catalog (25 tables), with the
//! release binary:
//! - per-run overhead: `airlock trigger --wait` with one worker polling, against `airlock run
//!   --workflow` of the same stored workflow in the same home, both as whole CLI invocations,
//!   interleaved, medians of 7 (the floor is the direct run, measured in the same run);
//! - throughput: 50 small workflows triggered while no worker polls, then 1 worker or 2 workers
//!   (each `--max-concurrent 2`) started, until all 50 are published, as runs per minute from
//!   the workers' start and from the first run published to the last.
//!
//! Results go to `<out>/temporal.json` and `<out>/temporal.md`.
//!
//! Usage: airlock-bench-temporal [--airlock PATH] [--out DIR]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::temporal::TemporalDev;

const SAMPLES: usize = 7;
const TRIGGERS: usize = 50;

struct Bench {
    airlock: PathBuf,
    home: PathBuf,
    out: PathBuf,
    address: String,
}

impl Bench {
    fn cmd(&self, queue: &str) -> Command {
        let mut c = Command::new(&self.airlock);
        c.arg("--home")
            .arg(&self.home)
            .env(
                "AIRLOCK_CACHE_DIR",
                airlock_tests::workspace_root().join("target/bench/cache"),
            )
            .env("AIRLOCK_PLUGIN_DIR", airlock_tests::plugin_dir())
            .env("AIRLOCK_TEMPORAL_ADDRESS", &self.address)
            .env("AIRLOCK_TEMPORAL_TASK_QUEUE", queue)
            .stdin(Stdio::null());
        c
    }

    fn ok(&self, queue: &str, args: &[&str]) -> String {
        let out = self.cmd(queue).args(args).output().expect("airlock runs");
        assert!(
            out.status.success(),
            "airlock {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a worker on `queue`; [`ready`] waits until it serves its endpoints.
    fn spawn_worker(&self, queue: &str) -> Child {
        self.cmd(queue)
            .args(["worker", "--listen", "127.0.0.1:0", "--max-concurrent", "2"])
            .env("AIRLOCK_LOG", "airlock=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker starts")
    }

    /// A worker on `queue`, polling.
    fn worker(&self, queue: &str) -> Child {
        let mut child = self.spawn_worker(queue);
        ready(&mut child);
        // The worker polls once Temporal accepted it; give it a moment to register its pollers.
        std::thread::sleep(Duration::from_millis(500));
        child
    }

    fn store(&self, n: usize) -> String {
        let config = self.home.parent().unwrap().join(format!("wf-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                "[source]\nplugin = \"sqlite\"\ndatabase = \"{}\"\n\n[source.options]\nname = \"shop\"\n\n\
                 [sink]\nkind = \"local\"\ndir = \"{}\"\n",
                self.home.parent().unwrap().join("shop.db").display(),
                self.out.display()
            ),
        )
        .unwrap();
        self.ok(
            "-",
            &["workflow", "create", "--config", config.to_str().unwrap()],
        )
        .split_whitespace()
        .last()
        .unwrap()
        .to_string()
    }

    fn published(&self) -> usize {
        std::fs::read_dir(&self.out)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("manifest.json").is_file())
                    .count()
            })
            .unwrap_or(0)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

/// Waits until `child` (a worker) logs where it serves health and metrics, then drains its
/// stderr in the background.
fn ready(child: &mut Child) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line
            .map(|l| l.contains("health and metrics on"))
            .unwrap_or(false)
        {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
}

/// How fast `workers` workers drain `ids`, triggered before any worker polls (so the rate is
/// the workers', not that of the trigger commands): runs per minute from the workers' start
/// to the last run published, and from the first run published to the last.
fn throughput(bench: &Bench, workers: usize, ids: &[String]) -> (f64, f64) {
    let queue = format!("bench-{workers}w-{}", std::process::id());
    let before = bench.published();
    for id in ids {
        bench.ok(&queue, &["trigger", "--workflow", id]);
    }
    let started = Instant::now();
    let mut children: Vec<Child> = (0..workers).map(|_| bench.spawn_worker(&queue)).collect();
    let mut first = None;
    loop {
        let done = bench.published() - before;
        if done > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if done >= ids.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "throughput run stalled at {done} of {}",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let all = started.elapsed();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let steady = all - first.unwrap();
    (
        ids.len() as f64 / all.as_secs_f64() * 60.0,
        (ids.len() - 1) as f64 / steady.as_secs_f64() * 60.0,
    )
}

fn main() {
    let root = airlock_tests::workspace_root();
    let mut airlock = root.join("target/release/airlock");
    let mut out_dir = root.join("target/bench");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--airlock" => airlock = PathBuf::from(value),
            "--out" => out_dir = PathBuf::from(value),
            other => {
                eprintln!(
                    "usage: airlock-bench-temporal [--airlock PATH] [--out DIR] (got {other})"
                );
                std::process::exit(2);
            }
        }
    }
    std::fs::create_dir_all(&out_dir).unwrap();
    let server = TemporalDev::start();
    let work = tempfile::tempdir().unwrap();
    airlock::demo::create_sample_database(&work.path().join("shop.db")).unwrap();
    let bench = Bench {
        airlock: std::fs::canonicalize(&airlock)
            .expect("the release airlock (./scripts/bench builds it)"),
        home: work.path().join("home"),
        out: work.path().join("out"),
        address: server.address(),
    };
    let id = bench.store(0);

    // Per-run overhead, interleaved.
    let queue = format!("bench-overhead-{}", std::process::id());
    let mut worker = bench.worker(&queue);
    bench.ok(&queue, &["run", "--workflow", &id]); // warm the component cache
    bench.ok(&queue, &["trigger", "--workflow", &id, "--wait"]);
    let (mut direct, mut triggered) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        direct.push(timed(|| {
            bench.ok(&queue, &["run", "--workflow", &id]);
        }));
        triggered.push(timed(|| {
            bench.ok(&queue, &["trigger", "--workflow", &id, "--wait"]);
        }));
    }
    let _ = worker.kill();
    let _ = worker.wait();
    let (direct, triggered) = (median(direct), median(triggered));

    // Throughput.
    let ids: Vec<String> = (1..=TRIGGERS).map(|n| bench.store(n)).collect();
    let (one, one_steady) = throughput(&bench, 1, &ids);
    let (two, two_steady) = throughput(&bench, 2, &ids);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    let json = serde_json::json!({
        "catalog": "demo SQLite database (25 tables)",
        "samples": SAMPLES,
        "direct_run_ms": direct,
        "triggered_run_ms": triggered,
        "overhead_ms": triggered - direct,
        "triggers": TRIGGERS,
        "cores": cores,
        "runs_per_minute_1_worker": one,
        "runs_per_minute_2_workers": two,
        "runs_per_minute_1_worker_first_to_last": one_steady,
        "runs_per_minute_2_workers_first_to_last": two_steady,
    });
    std::fs::write(
        out_dir.join("temporal.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    let md = format!(
        "| measure | value |\n|---|---|\n\
         | `airlock run --workflow` (the floor), median of {SAMPLES} | {direct:.0} ms |\n\
         | `airlock trigger --wait`, one worker polling, median of {SAMPLES} | {triggered:.0} ms |\n\
         | overhead of going through Temporal | {:.0} ms |\n\
         | {TRIGGERS} queued triggers, 1 worker (`--max-concurrent 2`), from its start | {one:.0} runs/min |\n\
         | the same, first run published to last | {one_steady:.0} runs/min |\n\
         | {TRIGGERS} queued triggers, 2 workers, from their start | {two:.0} runs/min |\n\
         | the same, first run published to last | {two_steady:.0} runs/min |\n\
         | cores on this machine | {cores} |\n",
        triggered - direct
    );
    std::fs::write(out_dir.join("temporal.md"), &md).unwrap();
    print!("{md}");
    drop(server);
}
