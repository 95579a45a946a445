//! A throwaway MariaDB server for tests: a fresh data directory in a temp dir, listening on
//! 127.0.0.1 on a free (never the default) port, optionally with TLS, killed on drop.
//!
//! Needs Debian's `mariadb-server` and `mariadb-client` (`mariadb-install-db`, `mariadbd`,
//! `mariadb`). Administration goes through the unix socket as the database's `root`, which
//! authenticates the operating-system user (the tests run as root), so no admin password is
//! ever set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running MariaDB server.
pub struct MariaDb {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl MariaDb {
    /// Starts a server without TLS.
    pub fn start() -> MariaDb {
        Self::launch(None, false)
    }

    /// Like [`MariaDb::start`], with the general query log on (`general_log = 1`, to a file in
    /// the server's directory) and, when installed, the `server_audit` plugin logging every
    /// query: every statement the server receives, so a test can prove a statement never
    /// reached it. See [`MariaDb::general_log`] and [`MariaDb::audit_log`].
    pub fn start_with_general_log() -> MariaDb {
        Self::launch(None, true)
    }

    /// Starts a server whose TLS certificate is `cert_pem` (with `key_pem`), issued by
    /// `ca_pem`.
    pub fn start_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> MariaDb {
        Self::launch(Some((ca_pem, cert_pem, key_pem)), false)
    }

    fn launch(tls: Option<(&str, &str, &str)>, general_log: bool) -> MariaDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // A private tmpdir: concurrent bootstraps sharing /tmp trip over each other's
        // temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("create tmpdir");
        let install = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("mariadb-install-db runs (apt-get install mariadb-server)");
        assert!(
            install.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&install.stdout),
            String::from_utf8_lossy(&install.stderr)
        );
        let port = free_port();
        let mut cmd = Command::new("mariadbd");
        // --no-defaults: the machine's /etc/mysql must not change the test server.
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                // Accounts are matched by IP, and no anonymous ''@localhost shadows them.
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
            ]);
        if general_log {
            cmd.arg("--general-log=1").arg(format!(
                "--general-log-file={}",
                dir.path().join("general.log").display()
            ));
            // The general log leaves out a prepared statement whose prepare fails (a missing
            // privilege, an unknown column); the audit plugin logs every statement with its
            // result code. One file, never rotated, statements not shortened.
            if Path::new("/usr/lib/mysql/plugin/server_audit.so").is_file() {
                cmd.args([
                    "--plugin-load-add=server_audit",
                    "--server-audit-logging=ON",
                    "--server-audit-events=QUERY",
                    "--server-audit-file-rotate-size=1073741824",
                    "--server-audit-query-log-limit=1048576",
                ])
                .arg(format!(
                    "--server-audit-file-path={}",
                    dir.path().join("audit.log").display()
                ));
            }
        }
        if let Some((ca, cert, key)) = tls {
            for (name, pem) in [
                ("ca.pem", ca),
                ("server-cert.pem", cert),
                ("server-key.pem", key),
            ] {
                std::fs::write(dir.path().join(name), pem).expect("write TLS file");
            }
            cmd.arg(format!("--ssl-ca={}", dir.path().join("ca.pem").display()))
                .arg(format!(
                    "--ssl-cert={}",
                    dir.path().join("server-cert.pem").display()
                ))
                .arg(format!(
                    "--ssl-key={}",
                    dir.path().join("server-key.pem").display()
                ));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let mut server = MariaDb { dir, child, port };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mariadbd exited with {status}: {}", self.error_log());
            }
            let probe = self.client().args(["-e", "SELECT 1"]).output();
            if probe.is_ok_and(|o| o.status.success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not ready after 60 s: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's error log (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The general query log so far (empty unless started with
    /// [`MariaDb::start_with_general_log`]): one entry per statement the server received.
    pub fn general_log(&self) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.dir.path().join("general.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    /// The audit plugin's log so far (started by [`MariaDb::start_with_general_log`] when
    /// the `server_audit` plugin is installed): every statement, also those the server refused
    /// while preparing them, which the general log leaves out.
    pub fn audit_log(&self) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.dir.path().join("audit.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's scratch directory (data directory, socket, TLS files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args([
                "--user=root",
                "--default-character-set=utf8mb4",
                "--batch",
                "--raw",
                "--skip-column-names",
            ])
            .stdin(Stdio::piped());
        cmd
    }

    /// Runs SQL (one or more statements) as root over the unix socket; returns stdout.
    /// Panics with the server's message when a statement fails.
    pub fn sql(&self, sql: &str) -> String {
        use std::io::Write;
        // Statements go through stdin, so long scripts do not hit argument limits.
        let mut child = self
            .client()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mariadb client runs (apt-get install mariadb-client)");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes()).expect("write SQL");
        }
        let out = child.wait_with_output().expect("mariadb client finishes");
        assert!(
            out.status.success(),
            "SQL failed: {}\n--- SQL ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            sql.chars().take(2000).collect::<String>()
        );
        String::from_utf8(out.stdout).expect("client output is UTF-8")
    }

    /// Runs a query whose single column is a `JSON_OBJECT(...)` and parses one value per row.
    /// (JSON escapes tabs and newlines, so rows survive the client's line-based output.)
    pub fn json_rows(&self, query: &str) -> Vec<serde_json::Value> {
        self.sql(query)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON row {l}: {e}")))
            .collect()
    }

    /// Creates a password user that may connect over TCP from anywhere with the minimal
    /// metadata role of the README: `REFERENCES` (every table and column visible in
    /// `information_schema`), `SHOW VIEW`, and `SELECT` on the views that exist now and on no
    /// table (MariaDB shows a view's definition only to a user who may also select from it).
    pub fn create_user(&self, name: &str, password: &str) {
        let user = format!("{}@'%'", quote(name));
        let mut sql = format!(
            "CREATE USER {user} IDENTIFIED BY {};\nGRANT SHOW VIEW, REFERENCES ON *.* TO {user};\n",
            quote(password)
        );
        for view in self.json_rows(
            "SELECT JSON_ARRAY(TABLE_SCHEMA, TABLE_NAME) FROM information_schema.VIEWS \
             WHERE TABLE_SCHEMA NOT IN ('sys', 'mysql', 'information_schema', 'performance_schema')",
        ) {
            let (Some(schema), Some(view)) = (view[0].as_str(), view[1].as_str()) else {
                continue;
            };
            sql.push_str(&format!(
                "GRANT SELECT ON {}.{} TO {user};\n",
                ident(schema),
                ident(view)
            ));
        }
        self.sql(&sql);
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // The data directory is thrown away, so there is nothing to shut down cleanly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SQL string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A MySQL identifier in backquotes.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A port that was free a moment ago (the kernel picks it; never MySQL's 3306).
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port != 3306 {
            return port;
        }
    }
}
