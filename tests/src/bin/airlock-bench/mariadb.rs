//! MariaDB: a throwaway server whose slow log (`long_query_time = 0`) times every statement,
//! the benchmark catalog, the floor run by the `mariadb` client, and two peers: PipelineWise's
//! tap-mysql and DataHub's `mysql` source.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_tests::mariadb::{ident, quote, MariaDb as Server};

use crate::postgres::find_peer;
use crate::{Engine, Peer, ServerStats, PASSWORD, USER};

pub struct MariaDb {
    server: Server,
    /// Where the slow log stood at the last reset.
    log_from: std::cell::Cell<u64>,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        MariaDb {
            server: Server::start(),
            log_from: std::cell::Cell::new(0),
        }
    }

    fn slow_log(&self) -> PathBuf {
        self.server.dir().join("slow.log")
    }
}

impl MariaDb {
    /// (statement, Query_time) of the benchmark login's slow-log entries since the reset.
    fn entries(&self) -> Vec<(String, f64)> {
        let text = std::fs::read(self.slow_log()).unwrap_or_default();
        let from = (self.log_from.get() as usize).min(text.len());
        let text = String::from_utf8_lossy(&text[from..]);
        let prefix = format!("# User@Host: {USER}[");
        let mut entries: Vec<(String, f64)> = Vec::new();
        let mut ours = false;
        let mut current: Option<(String, f64)> = None;
        for line in text.lines() {
            if line.starts_with("# User@Host: ") {
                entries.extend(current.take());
                ours = line.starts_with(&prefix);
            } else if let Some(rest) = line.strip_prefix("# Query_time: ") {
                if ours {
                    let secs = rest
                        .split_whitespace()
                        .next()
                        .and_then(|t| t.parse::<f64>().ok())
                        .unwrap_or(0.0);
                    current = Some((String::new(), secs));
                }
            } else if line.starts_with('#')
                || line.starts_with("SET timestamp=")
                || line.starts_with("use ")
            {
                continue;
            } else if let Some((sql, _)) = current.as_mut() {
                if sql.len() < 400 {
                    sql.push_str(line);
                    sql.push(' ');
                }
            }
        }
        entries.extend(current.take());
        entries
    }
}

/// The schema (database) of table `i`: `s01`..`s10`.
fn schema(i: usize) -> String {
    format!("s{:02}", (i - 1) % 10 + 1)
}

impl Engine for MariaDb {
    fn name(&self) -> &'static str {
        "mariadb"
    }

    fn plugin(&self) -> &'static str {
        "mysql"
    }

    fn endpoint(&self) -> String {
        self.server.address()
    }

    /// The same catalog as PostgreSQL's: ten databases `s01`..`s10`, 20 commented columns
    /// per InnoDB table, a primary key, a foreign key on every third table (to the table ten
    /// before it, in the same database), an index on every fifth and a view on every tenth.
    /// Sent 500 statements per client call.
    fn load(&mut self, tables: usize) {
        let mut sql = String::from("SET GLOBAL innodb_flush_log_at_trx_commit = 0;\n");
        for s in 1..=10 {
            sql.push_str(&format!("CREATE DATABASE s{s:02};\n"));
        }
        self.server.sql(&sql);
        let mut batch = String::new();
        for i in 1..=tables {
            let s = ident(&schema(i));
            let mut cols = "id BIGINT NOT NULL PRIMARY KEY COMMENT 'key'".to_string();
            for c in 2..=19 {
                let ty = match c % 4 {
                    0 => "TEXT",
                    1 => "INT",
                    2 => "DECIMAL(12,2)",
                    _ => "DATETIME DEFAULT CURRENT_TIMESTAMP",
                };
                cols.push_str(&format!(
                    ", col_{c} {ty} COMMENT {}",
                    quote(&format!("column {c} of table {i}"))
                ));
            }
            cols.push_str(", parent_id BIGINT COMMENT 'parent'");
            if i % 3 == 0 && i > 10 {
                cols.push_str(&format!(
                    ", CONSTRAINT fk_t_{i} FOREIGN KEY (parent_id) REFERENCES {s}.t_{} (id)",
                    i - 10
                ));
            }
            if i % 5 == 0 {
                cols.push_str(&format!(", KEY t_{i}_col_5 (col_5)"));
            }
            batch.push_str(&format!(
                "CREATE TABLE {s}.t_{i} ({cols}) ENGINE=InnoDB COMMENT={};\n",
                quote(&format!("table number {i}"))
            ));
            if i % 10 == 0 {
                batch.push_str(&format!(
                    "CREATE VIEW {s}.v_{i} AS SELECT id, col_2, col_3 FROM {s}.t_{i};\n"
                ));
            }
            if i % 500 == 0 || i == tables {
                self.server.sql(&batch);
                batch.clear();
            }
        }
        // The metadata role, after the views exist (it may select from each view).
        self.server.create_user(USER, PASSWORD);
        self.server.sql(&format!(
            "SET GLOBAL slow_query_log_file = {};\n\
             SET GLOBAL long_query_time = 0;\n\
             SET GLOBAL slow_query_log = 1;",
            quote(&self.slow_log().display().to_string())
        ));
    }

    fn reset_stats(&self) {
        self.log_from.set(
            std::fs::metadata(self.slow_log())
                .map(|m| m.len())
                .unwrap_or(0),
        );
    }

    /// The benchmark login's entries in the slow log since the last reset: each is one
    /// statement, with the server's `Query_time`.
    fn stats(&self) -> ServerStats {
        let entries = self.entries();
        ServerStats {
            statements: entries.len() as u64,
            seconds: entries.iter().map(|e| e.1).sum(),
        }
    }

    fn statements(&self) -> Vec<(String, u64, f64)> {
        let mut by: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
        for (sql, secs) in self.entries() {
            let e = by.entry(sql.chars().take(200).collect()).or_default();
            e.0 += 1;
            e.1 += secs;
        }
        let mut list: Vec<_> = by.into_iter().map(|(q, (n, t))| (q, n, t)).collect();
        list.sort_by(|a, b| b.2.total_cmp(&a.2));
        list
    }

    fn floor(&self, sql: &Path) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.args(["--no-defaults", "--protocol=tcp", "--host=127.0.0.1"])
            .arg(format!("--port={}", self.server.port()))
            .arg(format!("--user={USER}"))
            .arg(format!("--password={PASSWORD}"))
            .args(["--batch", "--raw", "--default-character-set=utf8mb4", "-e"])
            .arg(format!("source {}", sql.display()));
        cmd
    }

    fn source(&self) -> String {
        format!(
            "endpoint = \"{}\"\ndatabases = [\"*\"]\n\
             tls = {{ mode = \"disable\", allow_cleartext_password = true }}\n",
            self.server.address()
        )
    }

    /// DataHub's `mysql` source (SQLAlchemy's inspector), schema metadata only, to a file
    /// sink: the acryl-datahub that `./scripts/setup-catalogs` installs.
    fn peers(&self, peers: &Path, work: &Path) -> Vec<Peer> {
        let mut found = Vec::new();
        if let Some((version, bin)) = find_peer(peers, "pipelinewise-tap-mysql", "bin/tap-mysql") {
            let config = work.join("tap-mysql.json");
            let json = serde_json::json!({
                "host": "127.0.0.1",
                "port": self.server.port(),
                "user": USER,
                "password": PASSWORD,
            });
            std::fs::write(&config, json.to_string()).expect("tap config");
            let mut cmd = Command::new(bin);
            cmd.arg("--config").arg(&config).arg("--discover");
            found.push(Peer {
                name: format!("tap-mysql {version} (PipelineWise) --discover"),
                command: cmd,
                output: None,
                objects: crate::postgres::count_streams,
            });
        }
        if let Some(datahub) = peers
            .parent()
            .and_then(|cache| find_peer(cache, "datahub", "bin/datahub"))
        {
            found.push(self.datahub(datahub, work));
        }
        found
    }
}

impl MariaDb {
    fn datahub(&self, (version, bin): (String, PathBuf), work: &Path) -> Peer {
        let output = work.join("datahub.json");
        let recipe = work.join("datahub-mysql.yml");
        std::fs::write(
            &recipe,
            format!(
                "source:\n  type: mysql\n  config:\n    host_port: \"{}\"\n    username: {USER}\n    \
                 password: {PASSWORD}\n    include_tables: true\n    include_views: true\n    \
                 profiling:\n      enabled: false\nsink:\n  type: file\n  config:\n    filename: \"{}\"\n",
                self.server.address(),
                output.display()
            ),
        )
        .expect("recipe");
        let mut cmd = Command::new(bin);
        cmd.arg("ingest")
            .arg("-c")
            .arg(&recipe)
            .env("DATAHUB_TELEMETRY_ENABLED", "false")
            .env("DATAHUB_SUPPRESS_LOGGING_MANAGER", "1");
        Peer {
            name: format!("DataHub {version} `mysql` source"),
            command: cmd,
            output: Some(output),
            objects: count_schemas,
        }
    }
}

/// Datasets with a schema (tables and views) in a DataHub file sink's output, counted once
/// each (DataHub writes some schemas both as a snapshot and as an aspect).
fn count_schemas(out: &Path) -> u64 {
    let text = std::fs::read(out).unwrap_or_default();
    let items: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    let Some(items) = items.as_array() else {
        return 0;
    };
    let mut urns = std::collections::BTreeSet::new();
    for item in items {
        if item["aspectName"] == "schemaMetadata" {
            if let Some(urn) = item["entityUrn"].as_str() {
                urns.insert(urn.to_string());
            }
        }
        if let Some(snap) = item["proposedSnapshot"]
            .as_object()
            .and_then(|snap| snap.values().next())
        {
            let has_schema = snap["aspects"].as_array().is_some_and(|aspects| {
                aspects.iter().any(|a| {
                    a.get("com.linkedin.pegasus2avro.schema.SchemaMetadata")
                        .is_some()
                })
            });
            if let (true, Some(urn)) = (has_schema, snap["urn"].as_str()) {
                urns.insert(urn.to_string());
            }
        }
    }
    urns.len() as u64
}
