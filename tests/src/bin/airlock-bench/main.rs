//! `airlock-bench`: extraction speed and memory against real PostgreSQL and MariaDB catalogs,
//! next to a fixed floor and the peer tool a user would pick instead, all in one run.
//!
//! For each engine and catalog size it starts a throwaway server on 127.0.0.1, loads the
//! benchmark catalog (ten schemas or databases; 20 commented columns per table, a primary key,
//! a foreign key on every third table, an index on every fifth, a view on every tenth), and
//! then measures, interleaved round by round in a rotating order:
//! - **floor**: the checked-in minimal bulk catalog queries (`tests/bench/floor/<engine>.sql`)
//!   run by the engine's own client, output to a file;
//! - **airlock**: the release `airlock run` with the engine's plugin and a local sink;
//! - **peers**: tap-postgres `--discover` for PostgreSQL; PipelineWise's tap-mysql
//!   `--discover` and DataHub's `mysql` source for MariaDB (from `./scripts/setup-bench-peers`
//!   and `./scripts/setup-catalogs`; each left out when not installed).
//!
//! Each measurement is one process: wall time, CPU (user + system), peak RSS (wait4), and the
//! statements and server-side statement time the server itself accounted for the benchmark's
//! login (`pg_stat_statements`; MariaDB's slow log with `long_query_time = 0`). Ratios are
//! computed pairwise within a round and their median is reported. Results go to
//! `<out>/<engine>.json` and `<out>/<engine>.md`.
//!
//! Usage: airlock-bench [postgres|mariadb|all] [--sizes 1000,10000] [--rounds 5]
//!        [--peer-rounds 3] [--peer-seconds 150] [--no-peers] [--airlock PATH] [--plugins DIR] [--peers DIR]
//!        [--out DIR]

mod mariadb;
mod measure;
mod postgres;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use measure::{median, Sample};

/// The benchmark's login on every server: the minimal metadata role.
pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-password-not-secret";

/// What the server accounted for the benchmark's login during one measurement.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerStats {
    pub statements: u64,
    pub seconds: f64,
}

/// The peer tool's command for one engine, and how to count what it found in its output.
pub struct Peer {
    pub name: String,
    pub command: Command,
    /// The file it writes its findings to; `None`: its stdout.
    pub output: Option<PathBuf>,
    pub objects: fn(&Path) -> u64,
}

/// One database server with the benchmark catalog.
pub trait Engine {
    fn name(&self) -> &'static str;
    /// The plugin package (`target/plugins/<plugin>.wasm`).
    fn plugin(&self) -> &'static str;
    fn endpoint(&self) -> String;
    fn load(&mut self, tables: usize);
    fn reset_stats(&self);
    fn stats(&self) -> ServerStats;
    /// The benchmark login's statements since the last reset, by server time, most first:
    /// (statement's start, executions, seconds).
    fn statements(&self) -> Vec<(String, u64, f64)>;
    /// The engine's own client running the floor file as the benchmark's login.
    fn floor(&self, sql: &Path) -> Command;
    /// The `[source]` lines besides plugin and credential.
    fn source(&self) -> String;
    /// The peer tools installed under `peers` (none when nothing is installed).
    fn peers(&self, peers: &Path, work: &Path) -> Vec<Peer>;
}

struct Args {
    engines: Vec<String>,
    sizes: Vec<usize>,
    rounds: usize,
    peer_rounds: usize,
    /// Peer rounds stop at a size once the peer's runs there took this long (one at least).
    peer_seconds: f64,
    peers_on: bool,
    airlock: PathBuf,
    plugins: PathBuf,
    peers: PathBuf,
    out: PathBuf,
}

const USAGE: &str = "usage: airlock-bench [postgres|mariadb|all] [--sizes 1000,10000] [--rounds 5] \
[--peer-rounds 3] [--peer-seconds 150] [--no-peers] [--airlock PATH] [--plugins DIR] [--peers DIR] [--out DIR]";

fn parse_args() -> Result<Args, String> {
    let root = airlock_tests::workspace_root();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    let mut args = Args {
        engines: Vec::new(),
        sizes: vec![1000, 10_000],
        rounds: 5,
        peer_rounds: 3,
        peer_seconds: 150.0,
        peers_on: true,
        airlock: root.join("target/release/airlock"),
        plugins: root.join("target/plugins"),
        peers: cache.join("airlock/peers"),
        out: root.join("target/bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let number = |v: String| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{v}` is not a number"))
        };
        match arg.as_str() {
            "postgres" | "mariadb" => args.engines.push(arg.clone()),
            "all" => args.engines = vec!["postgres".into(), "mariadb".into()],
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| number(s.to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--rounds" => args.rounds = number(value()?)?.max(1),
            "--peer-rounds" => args.peer_rounds = number(value()?)?,
            "--peer-seconds" => args.peer_seconds = number(value()?)? as f64,
            "--no-peers" => args.peers_on = false,
            "--airlock" => args.airlock = PathBuf::from(value()?),
            "--plugins" => args.plugins = PathBuf::from(value()?),
            "--peers" => args.peers = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if args.engines.is_empty() {
        args.engines = vec!["postgres".into(), "mariadb".into()];
    }
    for p in [&mut args.airlock, &mut args.plugins] {
        // Both go into configs in other directories: make them absolute.
        *p = std::fs::canonicalize(&*p)
            .map_err(|e| format!("{}: {e}; ./scripts/bench builds it", p.display()))?;
    }
    Ok(args)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Floor,
    Airlock,
    /// The engine's n-th peer.
    Peer(usize),
}

impl Tool {
    fn label(self) -> String {
        match self {
            Tool::Floor => "floor".to_string(),
            Tool::Airlock => "airlock".to_string(),
            Tool::Peer(i) => format!("peer{}", i + 1),
        }
    }
}

/// One measured process and what the server saw meanwhile.
#[derive(Clone, Copy, Debug)]
struct Measurement {
    sample: Sample,
    server: ServerStats,
}

/// What `airlock run --json` reported about itself.
#[derive(Clone, Copy, Debug, Default)]
struct AirlockReport {
    assets: u64,
    guard_s: f64,
}

/// A statement's first words, for a table cell.
fn abbreviate(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(90).collect();
    if flat.chars().count() > 90 {
        out.push_str(" ...");
    }
    out.replace('|', "\\|")
}

/// A peer as measured at one size: its name and how many tables and views it found.
struct PeerRun {
    name: String,
    objects: u64,
}

/// The measurements of one catalog size, by round.
struct SizeRun {
    tables: usize,
    load_s: f64,
    peers: Vec<PeerRun>,
    airlock: AirlockReport,
    /// Server time by statement in the last measured airlock and floor runs.
    airlock_statements: Vec<(String, u64, f64)>,
    floor_statements: Vec<(String, u64, f64)>,
    rounds: Vec<Vec<(Tool, Measurement)>>,
}

impl SizeRun {
    fn of(&self, tool: Tool) -> Vec<Measurement> {
        self.rounds
            .iter()
            .flat_map(|r| r.iter().filter(|(t, _)| *t == tool).map(|(_, m)| *m))
            .collect()
    }

    /// The median over rounds of `f(a) / f(b)`, from rounds that measured both.
    fn ratio(&self, a: Tool, b: Tool, f: fn(&Measurement) -> f64) -> f64 {
        median(
            self.rounds
                .iter()
                .filter_map(|r| {
                    let x = r.iter().find(|(t, _)| *t == a)?;
                    let y = r.iter().find(|(t, _)| *t == b)?;
                    Some(f(&x.1) / f(&y.1))
                })
                .collect(),
        )
    }

    fn median_of(&self, tool: Tool, f: fn(&Measurement) -> f64) -> f64 {
        median(self.of(tool).iter().map(f).collect())
    }
}

struct Bench<'a> {
    args: &'a Args,
    work: &'a Path,
    home: PathBuf,
}

impl Bench<'_> {
    fn size(&self, engine: &mut dyn Engine, tables: usize, warm_peers: bool) -> SizeRun {
        let name = engine.name();
        eprintln!("[{name}] loading {tables} tables ...");
        let t = Instant::now();
        engine.load(tables);
        let load_s = t.elapsed().as_secs_f64();
        eprintln!("[{name}]   loaded in {load_s:.1} s");

        let dir = self.work.join(format!("{name}-{tables}"));
        std::fs::create_dir_all(&dir).expect("work dir");
        let home = airlock::home::Home::open(&self.home).expect("home");
        let guid = home
            .add_password_credential(USER, PASSWORD, &[&engine.endpoint()])
            .expect("credential");
        drop(home);
        let out = dir.join("out");
        let config = dir.join("airlock.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\nplugin = \"{}\"\ncredential = \"{guid}\"\n{}\n[sink]\nkind = \"local\"\ndir = \"{}\"\n",
                self.args.plugins.join(format!("{}.wasm", engine.plugin())).display(),
                engine.source(),
                out.display()
            ),
        )
        .expect("config");
        let floor_sql =
            airlock_tests::workspace_root().join(format!("tests/bench/floor/{name}.sql"));
        let peers = if self.args.peers_on {
            let p = engine.peers(&self.args.peers, &dir);
            if p.is_empty() {
                eprintln!(
                    "[{name}]   no peer installed under {} (./scripts/setup-bench-peers): left out",
                    self.args.peers.display()
                );
            }
            p
        } else {
            Vec::new()
        };

        let mut report = AirlockReport::default();
        let mut airlock_statements = Vec::new();
        let mut floor_statements = Vec::new();
        let mut run = |tool: Tool, engine: &dyn Engine| {
            let stdout = dir.join(format!("{}.out", tool.label()));
            let stderr = dir.join(format!("{}.err", tool.label()));
            let cmd = match tool {
                Tool::Floor => engine.floor(&floor_sql),
                Tool::Airlock => {
                    let mut cmd = Command::new(&self.args.airlock);
                    cmd.arg("--home")
                        .arg(&self.home)
                        .args(["run", "--json", "--config"])
                        .arg(&config)
                        .env("AIRLOCK_CACHE_DIR", self.work.join("cache"));
                    cmd
                }
                Tool::Peer(i) => {
                    let p = &peers[i].command;
                    let mut cmd = Command::new(p.get_program());
                    cmd.args(p.get_args()).env("HOME", &dir);
                    for (k, v) in p.get_envs() {
                        if let Some(v) = v {
                            cmd.env(k, v);
                        }
                    }
                    cmd
                }
            };
            engine.reset_stats();
            let sample = measure::run(&cmd, &stdout, &stderr)
                .unwrap_or_else(|e| panic!("[{name}] {} at {tables} tables: {e}", tool.label()));
            let server = engine.stats();
            match tool {
                Tool::Airlock => {
                    airlock_statements = engine.statements();
                    let summary: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&stdout).unwrap_or_default())
                            .expect("airlock --json prints its summary");
                    report = AirlockReport {
                        assets: summary["totals"]["emitted"].as_u64().unwrap_or(0),
                        guard_s: summary["sql_guard"]["micros"].as_f64().unwrap_or(f64::NAN) / 1e6,
                    };
                    // Each run publishes a new run directory: keep the disk from filling.
                    let _ = std::fs::remove_dir_all(&out);
                }
                Tool::Floor => {
                    floor_statements = engine.statements();
                    let len = std::fs::metadata(&stdout).map(|m| m.len()).unwrap_or(0);
                    assert!(len > 0, "[{name}] the floor returned nothing");
                }
                Tool::Peer(_) => {}
            }
            eprintln!(
                "[{name}]   {tables:>6} {:<8} wall {:>7.2} s  cpu {:>7.2} s  rss {:>6.1} MiB  statements {:>6}  server {:>6.2} s",
                tool.label(),
                sample.wall_s,
                sample.cpu_s,
                sample.peak_rss_kib as f64 / 1024.0,
                server.statements,
                server.seconds
            );
            Measurement { sample, server }
        };

        // Warm-up, not counted: the plugin's compiled component is cached, the server's and
        // the OS's caches hold the catalog, the peers' modules are in the page cache.
        run(Tool::Floor, engine);
        run(Tool::Airlock, engine);
        if warm_peers {
            for i in 0..peers.len() {
                run(Tool::Peer(i), engine);
            }
        }
        let mut found = vec![0; peers.len()];
        let mut spent = vec![0.0; peers.len()];
        let mut rounds = Vec::new();
        for r in 0..self.args.rounds {
            let mut order = vec![Tool::Floor, Tool::Airlock];
            for (i, spent) in spent.iter().enumerate() {
                if r < self.args.peer_rounds && (r == 0 || *spent < self.args.peer_seconds) {
                    order.push(Tool::Peer(i));
                }
            }
            let n = order.len();
            order.rotate_left(r % n);
            let mut measured = Vec::new();
            for tool in order {
                let m = run(tool, engine);
                if let Tool::Peer(i) = tool {
                    spent[i] += m.sample.wall_s;
                    let file = peers[i]
                        .output
                        .clone()
                        .unwrap_or_else(|| dir.join(format!("{}.out", tool.label())));
                    found[i] = (peers[i].objects)(&file);
                }
                measured.push((tool, m));
            }
            rounds.push(measured);
        }
        SizeRun {
            tables,
            load_s,
            peers: peers
                .into_iter()
                .zip(found)
                .map(|(p, objects)| PeerRun {
                    name: p.name,
                    objects,
                })
                .collect(),
            airlock: report,
            airlock_statements,
            floor_statements,
            rounds,
        }
    }
}

fn commit() -> String {
    let root = airlock_tests::workspace_root();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{head} with uncommitted changes")
    } else {
        head
    }
}

fn statements_json(list: &[(String, u64, f64)]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|(q, n, t)| serde_json::json!({"statement": q, "calls": n, "server_s": t}))
        .collect()
}

fn to_json(engine: &str, runs: &[SizeRun]) -> serde_json::Value {
    let tool_json = |run: &SizeRun, tool: Tool| {
        let ms = run.of(tool);
        serde_json::json!({
            "runs": ms.len(),
            "wall_s": run.median_of(tool, |m| m.sample.wall_s),
            "cpu_s": run.median_of(tool, |m| m.sample.cpu_s),
            "peak_rss_mib": run.median_of(tool, |m| m.sample.peak_rss_kib as f64 / 1024.0),
            "statements": run.median_of(tool, |m| m.server.statements as f64),
            "server_s": run.median_of(tool, |m| m.server.seconds),
            "all_wall_s": ms.iter().map(|m| m.sample.wall_s).collect::<Vec<_>>(),
        })
    };
    serde_json::json!({
        "engine": engine,
        "commit": commit(),
        "sizes": runs.iter().map(|r| serde_json::json!({
            "tables": r.tables,
            "load_s": r.load_s,
            "assets": r.airlock.assets,
            "guard_s": r.airlock.guard_s,
            "floor": tool_json(r, Tool::Floor),
            "airlock": tool_json(r, Tool::Airlock),
            "peers": r.peers.iter().enumerate().map(|(i, p)| serde_json::json!({
                "name": p.name,
                "tables_and_views_found": p.objects,
                "measured": tool_json(r, Tool::Peer(i)),
                "wall_vs_airlock": r.ratio(Tool::Peer(i), Tool::Airlock, |m| m.sample.wall_s),
            })).collect::<Vec<_>>(),
            "airlock_wall_vs_floor": r.ratio(Tool::Airlock, Tool::Floor, |m| m.sample.wall_s),
            "airlock_server_vs_floor": r.ratio(Tool::Airlock, Tool::Floor, |m| m.server.seconds),
            "airlock_cpu_us_per_asset": r.median_of(Tool::Airlock, |m| m.sample.cpu_s)
                / r.airlock.assets.max(1) as f64 * 1e6,
            "airlock_statements": statements_json(&r.airlock_statements),
            "floor_statements": statements_json(&r.floor_statements),
        })).collect::<Vec<_>>(),
    })
}

fn to_markdown(engine: &str, runs: &[SizeRun], args: &Args) -> String {
    let mut md = format!(
        "{engine}, commit {}, {} rounds (peers in the first {} of them, fewer once a peer's runs at a size took {:.0} s), \
         medians; every ratio is the median of the ratios within a round.\n\n\
         | tables | tool | wall (s) | client CPU (s) | peak RSS (MiB) | statements | server time (s) | wall vs floor | server time vs floor |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
        commit(),
        args.rounds,
        args.peer_rounds.min(args.rounds),
        args.peer_seconds
    );
    for r in runs {
        let mut tools = vec![Tool::Floor, Tool::Airlock];
        tools.extend((0..r.peers.len()).map(Tool::Peer));
        for tool in tools {
            if r.of(tool).is_empty() {
                continue;
            }
            let name = match tool {
                Tool::Floor => format!("floor (`tests/bench/floor/{engine}.sql`)"),
                Tool::Airlock => "airlock run".to_string(),
                Tool::Peer(i) => r.peers[i].name.clone(),
            };
            let ratio = |f: fn(&Measurement) -> f64| match tool {
                Tool::Floor => "1.00".to_string(),
                _ => format!("{:.2}", r.ratio(tool, Tool::Floor, f)),
            };
            md.push_str(&format!(
                "| {} | {name} | {:.2} | {:.2} | {:.1} | {:.0} | {:.2} | {} | {} |\n",
                r.tables,
                r.median_of(tool, |m| m.sample.wall_s),
                r.median_of(tool, |m| m.sample.cpu_s),
                r.median_of(tool, |m| m.sample.peak_rss_kib as f64 / 1024.0),
                r.median_of(tool, |m| m.server.statements as f64),
                r.median_of(tool, |m| m.server.seconds),
                ratio(|m| m.sample.wall_s),
                ratio(|m| m.server.seconds),
            ));
        }
    }
    md.push_str("\n| tables | assets airlock published | catalog load (s) | airlock CPU per asset (µs) | peer | peer runs | peer wall vs airlock | tables and views the peer found |\n|---:|---:|---:|---:|---|---:|---:|---:|\n");
    for r in runs {
        let cpu = r.median_of(Tool::Airlock, |m| m.sample.cpu_s);
        let head = format!(
            "| {} | {} | {:.0} | {:.1} ",
            r.tables,
            r.airlock.assets,
            r.load_s,
            cpu / r.airlock.assets.max(1) as f64 * 1e6
        );
        if r.peers.is_empty() {
            md.push_str(&format!("{head}| - | - | - | - |\n"));
        }
        for (i, p) in r.peers.iter().enumerate() {
            md.push_str(&format!(
                "{head}| {} | {} | {:.1}x | {} |\n",
                p.name,
                r.of(Tool::Peer(i)).len(),
                r.ratio(Tool::Peer(i), Tool::Airlock, |m| m.sample.wall_s),
                p.objects
            ));
        }
    }
    for r in runs {
        for (tool, list) in [
            ("floor", &r.floor_statements),
            ("airlock", &r.airlock_statements),
        ] {
            md.push_str(&format!(
                "\nServer time by statement, {tool}, {} tables (last measured run):\n\n| statement | calls | server (s) |\n|---|---:|---:|\n",
                r.tables
            ));
            for (q, n, t) in list.iter().take(10) {
                md.push_str(&format!("| `{}` | {n} | {t:.3} |\n", abbreviate(q)));
            }
        }
    }
    md
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&args.out).expect("output dir");
    let work = tempfile::tempdir().expect("temp dir");
    let bench = Bench {
        args: &args,
        work: work.path(),
        home: work.path().join("home"),
    };
    airlock::home::Home::open(&bench.home).expect("home");
    for engine in &args.engines {
        let mut runs = Vec::new();
        for (i, &tables) in args.sizes.iter().enumerate() {
            // A fresh server per size: each catalog is the only one the tools read.
            let mut server: Box<dyn Engine> = match engine.as_str() {
                "postgres" => Box::new(postgres::Postgres::start()),
                _ => Box::new(mariadb::MariaDb::start()),
            };
            runs.push(bench.size(server.as_mut(), tables, i == 0));
        }
        let md = to_markdown(engine, &runs, &args);
        std::fs::write(
            args.out.join(format!("{engine}.json")),
            serde_json::to_string_pretty(&to_json(engine, &runs)).unwrap_or_default(),
        )
        .expect("write JSON");
        std::fs::write(args.out.join(format!("{engine}.md")), &md).expect("write table");
        println!("{md}");
        println!(
            "written to {}",
            args.out.join(format!("{engine}.md")).display()
        );
    }
}
