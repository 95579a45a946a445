//! PostgreSQL: a throwaway cluster with `pg_stat_statements`, the benchmark catalog, the
//! floor run by `psql`, and tap-postgres as the peer.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_tests::postgres::PgCluster;

use crate::{Engine, Peer, ServerStats, PASSWORD, USER};

pub struct Postgres {
    pg: PgCluster,
    db: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        // Server-side statement time from the server's own accounting: execution and
        // planning of every top-level statement, utility statements (BEGIN, SET) included.
        let pg = PgCluster::start_with_settings(
            "shared_preload_libraries = 'pg_stat_statements'\n\
             pg_stat_statements.track = top\n\
             pg_stat_statements.track_utility = on\n\
             pg_stat_statements.track_planning = on\n\
             pg_stat_statements.max = 10000\n\
             shared_buffers = '256MB'\n\
             max_locks_per_transaction = 1024\n",
        );
        pg.psql("postgres", "CREATE EXTENSION pg_stat_statements");
        pg.create_user(USER, PASSWORD);
        Postgres {
            pg,
            db: "bench".to_string(),
        }
    }
}

impl Engine for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn plugin(&self) -> &'static str {
        "postgres"
    }

    fn endpoint(&self) -> String {
        self.pg.endpoint()
    }

    /// `tables` tables in ten schemas `s01`..`s10` (beside an empty `public`), 20 columns
    /// each, every table and column commented, a primary key, a foreign key on every third
    /// table (to the table ten before it, in the same schema), an index on every fifth and a
    /// view on every tenth. Committed every 250 tables so the lock table never overflows.
    fn load(&mut self, tables: usize) {
        self.pg.create_database(&self.db);
        let schemas: String = (1..=10)
            .map(|s| format!("CREATE SCHEMA s{s:02}; GRANT USAGE ON SCHEMA s{s:02} TO {USER};\n"))
            .collect();
        self.pg.psql(&self.db, &schemas);
        let mut start = 1;
        while start <= tables {
            let end = (start + 249).min(tables);
            self.pg.psql(
                &self.db,
                &format!(
                    r#"DO $$
DECLARE cols text; i int; c int; s text;
BEGIN
  FOR i IN {start}..{end} LOOP
    s := format('s%s', lpad(((i - 1) % 10 + 1)::text, 2, '0'));
    cols := 'id bigint PRIMARY KEY';
    FOR c IN 2..19 LOOP
      cols := cols || format(', col_%s %s', c, CASE c % 4 WHEN 0 THEN 'text' WHEN 1 THEN 'integer' WHEN 2 THEN 'numeric(12,2)' ELSE 'timestamptz DEFAULT now()' END);
    END LOOP;
    IF i % 3 = 0 AND i > 10 THEN
      cols := cols || format(', parent_id bigint REFERENCES %I.t_%s(id)', s, i - 10);
    ELSE
      cols := cols || ', parent_id bigint';
    END IF;
    EXECUTE format('CREATE TABLE %I.t_%s (%s)', s, i, cols);
    EXECUTE format('COMMENT ON TABLE %I.t_%s IS %L', s, i, 'table number ' || i);
    FOR c IN 2..19 LOOP
      EXECUTE format('COMMENT ON COLUMN %I.t_%s.col_%s IS %L', s, i, c, 'column ' || c || ' of table ' || i);
    END LOOP;
    EXECUTE format('COMMENT ON COLUMN %I.t_%s.id IS %L', s, i, 'key');
    EXECUTE format('COMMENT ON COLUMN %I.t_%s.parent_id IS %L', s, i, 'parent');
    IF i % 5 = 0 THEN
      EXECUTE format('CREATE INDEX t_%s_col_5 ON %I.t_%s (col_5)', i, s, i);
    END IF;
    IF i % 10 = 0 THEN
      EXECUTE format('CREATE VIEW %I.v_%s AS SELECT id, col_2, col_3 FROM %I.t_%s', s, i, s, i);
    END IF;
  END LOOP;
END $$;"#
                ),
            );
            start = end + 1;
        }
        self.pg.psql(&self.db, "ANALYZE");
    }

    fn reset_stats(&self) {
        self.pg
            .psql("postgres", "SELECT pg_stat_statements_reset()");
    }

    fn stats(&self) -> ServerStats {
        let out = self.pg.psql(
            "postgres",
            &format!(
                "SELECT coalesce(sum(s.calls), 0)::int8, \
                 coalesce(sum(s.total_exec_time + s.total_plan_time), 0)::float8 \
                 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
                 WHERE r.rolname = '{USER}'"
            ),
        );
        let mut parts = out.trim().split('|');
        ServerStats {
            statements: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            seconds: parts
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
                / 1e3,
        }
    }

    fn statements(&self) -> Vec<(String, u64, f64)> {
        let out = self.pg.psql(
            "postgres",
            &format!(
                "SELECT json_agg(json_build_array(left(s.query, 200), s.calls, \
                 (s.total_exec_time + s.total_plan_time) / 1e3) \
                 ORDER BY s.total_exec_time + s.total_plan_time DESC) \
                 FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
                 WHERE r.rolname = '{USER}'"
            ),
        );
        let rows: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        rows.as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or_default().to_string(),
                    r[1].as_u64().unwrap_or(0),
                    r[2].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    }

    fn floor(&self, sql: &Path) -> Command {
        let mut cmd = Command::new(self.pg.program("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.pg.port().to_string())
            .args(["-U", USER, "-d", &self.db, "-f"])
            .arg(sql)
            .env("PGPASSWORD", PASSWORD)
            .env("PGCLIENTENCODING", "UTF8");
        cmd
    }

    fn source(&self) -> String {
        format!(
            "endpoint = \"{}\"\ndatabase = \"{}\"\n\
             tls = {{ mode = \"disable\", allow_cleartext_password = true }}\n",
            self.pg.endpoint(),
            self.db
        )
    }

    /// tap-postgres (the Meltano SDK tap), `--discover`: the catalog a Singer pipeline reads
    /// before it extracts anything.
    fn peers(&self, peers: &Path, work: &Path) -> Vec<Peer> {
        let Some((version, bin)) = find_peer(peers, "tap-postgres", "bin/tap-postgres") else {
            return Vec::new();
        };
        let config = work.join("tap-postgres.json");
        let json = serde_json::json!({
            "host": "127.0.0.1",
            "port": self.pg.port(),
            "user": USER,
            "password": PASSWORD,
            "database": self.db,
            // The schemas airlock reads (without it the tap adds information_schema).
            "filter_schemas": std::iter::once("public".to_string())
                .chain((1..=10).map(|s| format!("s{s:02}")))
                .collect::<Vec<_>>(),
        });
        std::fs::write(&config, json.to_string()).expect("tap config");
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&config).arg("--discover");
        vec![Peer {
            name: format!("tap-postgres {version} (MeltanoLabs) --discover"),
            command: cmd,
            output: None,
            objects: count_streams,
        }]
    }
}

/// Streams in a Singer catalog (one per table or view the tap discovered).
pub fn count_streams(out: &Path) -> u64 {
    let text = std::fs::read(out).unwrap_or_default();
    let catalog: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    catalog["streams"].as_array().map_or(0, |s| s.len() as u64)
}

/// The newest `<peers>/<prefix>-<version>/<program>`: (version, path).
pub fn find_peer(peers: &Path, prefix: &str, program: &str) -> Option<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(peers)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix(prefix)?.strip_prefix('-')?.to_string();
            let bin = e.path().join(program);
            (e.path().join(".installed").is_file() && bin.is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop()
}
