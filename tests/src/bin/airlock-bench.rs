//! `airlock-bench postgres`: extraction speed and memory against a real PostgreSQL catalog.
//!
//! For each catalog size (1,000 and 10,000 tables by default; 20 columns each with comments,
//! a primary key, a foreign key to the previous table, and one view per ten tables) it runs the
//! release `airlock` binary end to end (plugin -> filters -> local sink) and reports wall time,
//! assets per second, peak RSS of the airlock process, and the number of SQL statements the
//! server saw (from its own statement log), and what the host's SQL statement guard cost inside
//! each run (its own measurement, from `airlock run --json`). As the floor it then runs the same catalog
//! statements with `psql`, output to a file. Every measurement is the median of three runs.
//! Results go to `<out>/postgres.json` and `<out>/postgres.md`.
//!
//! Usage: airlock-bench postgres [--airlock PATH] [--plugin PATH] [--out DIR] [--sizes 1000,10000]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use airlock_tests::postgres::PgCluster;

const RUNS: usize = 3;

struct Args {
    airlock: PathBuf,
    plugin: PathBuf,
    out: PathBuf,
    sizes: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let root = airlock_tests::workspace_root();
    let mut args = Args {
        airlock: root.join("target/release/airlock"),
        plugin: root.join("target/plugins/postgres.wasm"),
        out: root.join("target/bench"),
        sizes: vec![1000, 10_000],
    };
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("postgres") => {}
        other => {
            return Err(format!(
                "usage: airlock-bench postgres [--airlock PATH] [--plugin PATH] [--out DIR] [--sizes N,N] (got {other:?})"
            ))
        }
    }
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--airlock" => args.airlock = PathBuf::from(value),
            "--plugin" => args.plugin = PathBuf::from(value),
            "--out" => args.out = PathBuf::from(value),
            "--sizes" => {
                args.sizes = value
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad size `{s}`")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    for p in [&mut args.airlock, &mut args.plugin] {
        // The plugin path goes into a config in another directory: make it absolute.
        *p = std::fs::canonicalize(&*p)
            .map_err(|e| format!("{}: {e}; ./scripts/bench builds it", p.display()))?;
    }
    Ok(args)
}

/// Creates `schema bench` with `tables` tables in `db`, committing every 200 tables so the
/// lock table never overflows.
fn create_catalog(pg: &PgCluster, db: &str, tables: usize) {
    pg.create_database(db);
    pg.psql(db, "CREATE SCHEMA bench");
    let mut start = 1;
    while start <= tables {
        let end = (start + 199).min(tables);
        pg.psql(
            db,
            &format!(
                r#"DO $$
DECLARE cols text; i int; c int;
BEGIN
  FOR i IN {start}..{end} LOOP
    cols := 'id bigint PRIMARY KEY';
    FOR c IN 2..19 LOOP
      cols := cols || format(', col_%s %s', c, CASE c % 4 WHEN 0 THEN 'text' WHEN 1 THEN 'integer' WHEN 2 THEN 'numeric(12,2)' ELSE 'timestamptz DEFAULT now()' END);
    END LOOP;
    IF i > 1 THEN
      cols := cols || format(', parent_id bigint REFERENCES bench.t_%s(id)', i - 1);
    ELSE
      cols := cols || ', parent_id bigint';
    END IF;
    EXECUTE format('CREATE TABLE bench.t_%s (%s)', i, cols);
    EXECUTE format('COMMENT ON TABLE bench.t_%s IS %L', i, 'table number ' || i);
    FOR c IN 2..19 LOOP
      EXECUTE format('COMMENT ON COLUMN bench.t_%s.col_%s IS %L', i, c, 'column ' || c || ' of table ' || i);
    END LOOP;
    EXECUTE format('COMMENT ON COLUMN bench.t_%s.id IS %L', i, 'key');
    EXECUTE format('COMMENT ON COLUMN bench.t_%s.parent_id IS %L', i, 'parent');
    IF i % 10 = 0 THEN
      EXECUTE format('CREATE VIEW bench.v_%s AS SELECT id, col_2, col_3 FROM bench.t_%s', i, i);
    END IF;
  END LOOP;
END $$;"#
            ),
        );
        start = end + 1;
    }
    pg.psql(db, "ANALYZE");
}

struct Measured {
    wall_s: f64,
    peak_rss_kib: i64,
    assets: u64,
    /// Time the host's SQL statement guard took in the run (parse, check, re-render).
    guard_s: f64,
    guard_statements: u64,
}

/// Runs the airlock binary and waits for it with wait4, which reports its peak RSS.
fn run_airlock(args: &Args, home: &Path, config: &Path) -> Measured {
    let started = Instant::now();
    let child = Command::new(&args.airlock)
        .arg("--home")
        .arg(home)
        .args(["run", "--json", "--config"])
        .arg(config)
        .env(
            "AIRLOCK_CACHE_DIR",
            airlock_tests::workspace_root().join("target/bench/cache"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("airlock starts");
    let pid = child.id() as libc::pid_t;
    let output = {
        use std::io::Read;
        let mut child = child;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut s) = child.stdout.take() {
            s.read_to_end(&mut stdout).expect("read stdout");
        }
        if let Some(mut s) = child.stderr.take() {
            s.read_to_end(&mut stderr).expect("read stderr");
        }
        let mut status = 0;
        // SAFETY: plain FFI call on our own child; `usage` is written by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(rc, pid, "wait4");
        std::mem::forget(child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "airlock failed: {}",
            String::from_utf8_lossy(&stderr)
        );
        (stdout, usage.ru_maxrss)
    };
    let wall_s = started.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_slice(&output.0).expect("JSON summary");
    Measured {
        wall_s,
        peak_rss_kib: output.1,
        assets: summary["totals"]["emitted"].as_u64().unwrap_or(0),
        guard_s: summary["sql_guard"]["micros"].as_f64().unwrap_or(f64::NAN) / 1e6,
        guard_statements: summary["sql_guard"]["statements"].as_u64().unwrap_or(0),
    }
}

/// The statements the server logged after byte `from` of its log, with `$n` parameters
/// substituted by the logged values: (all statements, catalog SELECTs).
fn logged_statements(log: &Path, from: u64) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read(log).expect("server log");
    let text = String::from_utf8_lossy(&text[from as usize..]).into_owned();
    let mut entries: Vec<(String, Option<String>)> = Vec::new();
    let mut current: Option<String> = None;
    let mut in_detail = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            if let Some(c) = current.as_mut() {
                if !in_detail {
                    c.push('\n');
                    c.push_str(rest);
                }
            }
            continue;
        }
        in_detail = false;
        if let Some(pos) = line.find("LOG:  statement: ") {
            if let Some(c) = current.take() {
                entries.push((c, None));
            }
            current = Some(line[pos + 17..].to_string());
        } else if let Some(pos) = line.find("LOG:  execute ") {
            if let Some(c) = current.take() {
                entries.push((c, None));
            }
            let rest = &line[pos + 14..];
            let sql = rest.split_once(": ").map(|(_, s)| s).unwrap_or(rest);
            current = Some(sql.to_string());
        } else if let Some(pos) = line.find("DETAIL:  parameters: ") {
            in_detail = true;
            if let Some(c) = current.take() {
                entries.push((c, Some(line[pos + 21..].to_string())));
            }
        } else if let Some(c) = current.take() {
            entries.push((c, None));
        }
    }
    if let Some(c) = current.take() {
        entries.push((c, None));
    }
    let all: Vec<String> = entries.iter().map(|(s, _)| s.clone()).collect();
    let selects = entries
        .into_iter()
        .filter(|(s, _)| {
            let head = s.trim_start().to_ascii_uppercase();
            head.starts_with("SELECT") || head.starts_with("WITH")
        })
        .map(|(s, params)| substitute(&s, params.as_deref()))
        .collect();
    (all, selects)
}

/// Replaces `$n` with the logged literal (`$1 = '...', $2 = '...'`), from the highest n down.
fn substitute(sql: &str, params: Option<&str>) -> String {
    let Some(params) = params else {
        return sql.to_string();
    };
    let mut values: Vec<(usize, String)> = Vec::new();
    let mut rest = params;
    while let Some(start) = rest.find('$') {
        rest = &rest[start + 1..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = digits.parse::<usize>() else {
            break;
        };
        let Some(eq) = rest.find(" = ") else { break };
        let value_start = &rest[eq + 3..];
        let (value, tail) = if let Some(q) = value_start.strip_prefix('\'') {
            let mut end = 0;
            let bytes = q.as_bytes();
            while end < bytes.len() {
                if bytes[end] == b'\'' {
                    if bytes.get(end + 1) == Some(&b'\'') {
                        end += 2;
                        continue;
                    }
                    break;
                }
                end += 1;
            }
            (format!("'{}'", &q[..end]), &q[(end + 1).min(q.len())..])
        } else {
            let end = value_start.find(',').unwrap_or(value_start.len());
            (value_start[..end].to_string(), &value_start[end..])
        };
        values.push((n, value));
        rest = tail;
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.0));
    let mut out = sql.to_string();
    for (n, v) in values {
        out = out.replace(&format!("${n}"), &v);
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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
    let pg = PgCluster::start();
    pg.create_user("bench", "bench-password-not-secret");
    let work = tempfile::tempdir().expect("temp dir");
    let home_dir = work.path().join("home");
    let home = airlock::home::Home::open(&home_dir).expect("home");
    let guid = home
        .add_password_credential("bench", "bench-password-not-secret", &[&pg.endpoint()])
        .expect("credential");
    drop(home);

    let mut results = Vec::new();
    for &tables in &args.sizes {
        let db = format!("bench_{tables}");
        eprintln!("creating {tables} tables in {db} ...");
        let t = Instant::now();
        create_catalog(&pg, &db, tables);
        pg.psql(&db, "GRANT USAGE ON SCHEMA bench TO bench");
        eprintln!("  created in {:.1} s", t.elapsed().as_secs_f64());
        let config = work.path().join(format!("{db}.toml"));
        std::fs::write(
            &config,
            format!(
                "[source]\nplugin = \"{}\"\nendpoint = \"{}\"\ndatabase = \"{db}\"\ncredential = \"{guid}\"\ntls = {{ mode = \"disable\", allow_cleartext_password = true }}\n\n[sink]\nkind = \"local\"\ndir = \"{}\"\n",
                args.plugin.display(),
                pg.endpoint(),
                work.path().join("out").display()
            ),
        )
        .expect("config");

        // Warm the component cache once so every measured run loads the compiled plugin.
        run_airlock(&args, &home_dir, &config);

        pg.psql(
            "postgres",
            "ALTER SYSTEM SET log_statement = 'all'; SELECT pg_reload_conf();",
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let log_start = std::fs::metadata(pg.log_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let first = run_airlock(&args, &home_dir, &config);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (statements, selects) = logged_statements(&pg.log_path(), log_start);
        pg.psql(
            "postgres",
            "ALTER SYSTEM RESET log_statement; SELECT pg_reload_conf();",
        );

        let mut walls = vec![first.wall_s];
        let mut rss = vec![first.peak_rss_kib as f64];
        // The guard's share of each run, measured inside that run.
        let mut guard_shares = vec![first.guard_s / first.wall_s];
        let mut guards = vec![first.guard_s];
        for _ in 1..RUNS {
            let m = run_airlock(&args, &home_dir, &config);
            walls.push(m.wall_s);
            rss.push(m.peak_rss_kib as f64);
            guard_shares.push(m.guard_s / m.wall_s);
            guards.push(m.guard_s);
        }

        let floor_sql = work.path().join(format!("{db}-floor.sql"));
        std::fs::write(
            &floor_sql,
            selects
                .iter()
                .map(|s| format!("{s};\n"))
                .collect::<String>(),
        )
        .expect("floor SQL");
        let floor_out = work.path().join(format!("{db}-floor.out"));
        let mut floors = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let status = pg
                .psql_command(&db)
                .args(["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
                .arg(&floor_sql)
                .arg("-o")
                .arg(&floor_out)
                .status()
                .expect("psql runs");
            assert!(status.success(), "the floor queries run");
            floors.push(t.elapsed().as_secs_f64());
        }
        let wall = median(walls);
        let floor = median(floors);
        let result = serde_json::json!({
            "tables": tables,
            "columns_per_table": 20,
            "views": tables / 10,
            "assets": first.assets,
            "wall_s": wall,
            "assets_per_s": first.assets as f64 / wall,
            "peak_rss_mib": median(rss) / 1024.0,
            "sql_statements": statements.len(),
            "catalog_selects": selects.len(),
            "psql_floor_s": floor,
            "ratio_to_floor": wall / floor,
            "guard_statements": first.guard_statements,
            "guard_ms": median(guards) * 1e3,
            "guard_share_of_wall": median(guard_shares),
        });
        eprintln!("  {result}");
        results.push(result);
    }

    let mut md = String::from(
        "| tables | assets | airlock wall (s) | assets/s | peak RSS (MiB) | SQL statements | psql floor (s) | ratio | guarded statements | guard (ms) | guard share of wall |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &results {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {:.1} | {} | {:.2} | {:.2} | {} | {:.2} | {:.3} % |\n",
            r["tables"],
            r["assets"],
            r["wall_s"].as_f64().unwrap_or(0.0),
            r["assets_per_s"].as_f64().unwrap_or(0.0),
            r["peak_rss_mib"].as_f64().unwrap_or(0.0),
            r["sql_statements"],
            r["psql_floor_s"].as_f64().unwrap_or(0.0),
            r["ratio_to_floor"].as_f64().unwrap_or(0.0),
            r["guard_statements"],
            r["guard_ms"].as_f64().unwrap_or(0.0),
            r["guard_share_of_wall"].as_f64().unwrap_or(0.0) * 100.0,
        ));
    }
    std::fs::write(
        args.out.join("postgres.json"),
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    )
    .expect("write JSON");
    std::fs::write(args.out.join("postgres.md"), &md).expect("write table");
    println!("{md}");
    println!("written to {}", args.out.join("postgres.md").display());
}
