//! A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir, listening on
//! 127.0.0.1 on a free (never the default) port, optionally TLS-only, stopped on drop.
//!
//! Needs Debian's `postgresql` package (the binaries live in `/usr/lib/postgresql/<version>/bin`;
//! `$AIRLOCK_PG_BIN` overrides the directory). `initdb` and `postgres` refuse to run as root,
//! so when the tests run as root the server runs as the `postgres` user on a directory that
//! user owns. Administration goes through the unix socket as the superuser `postgres` with
//! `trust`; TCP logins need SCRAM-SHA-256 passwords.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Child,
    port: u16,
}

impl PgCluster {
    /// Starts a cluster that accepts password (SCRAM-SHA-256) logins over plain TCP and TLS
    /// is off.
    pub fn start() -> PgCluster {
        Self::launch(None, "")
    }

    /// Like [`PgCluster::start`], and the server logs every statement it receives
    /// (`log_statement = 'all'`, to the stderr log of [`PgCluster::log_path`]; no logging
    /// collector), so a test can prove a statement never reached it: see
    /// [`PgCluster::log_text`].
    pub fn start_logging_statements() -> PgCluster {
        Self::launch(None, "log_statement = 'all'\nlogging_collector = off\n")
    }

    /// Like [`PgCluster::start`], with `settings` (lines of `postgresql.conf`) added, e.g.
    /// `shared_preload_libraries` for the benchmark's `pg_stat_statements`.
    pub fn start_with_settings(settings: &str) -> PgCluster {
        Self::launch(None, settings)
    }

    /// Starts a cluster with TLS on (`cert_pem` / `key_pem`) that refuses every TCP login
    /// without TLS.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgCluster {
        Self::launch(Some((cert_pem, key_pem)), "")
    }

    fn launch(tls: Option<(&str, &str)>, extra_conf: &str) -> PgCluster {
        let bin = bin_dir();
        let owner = server_owner();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null());
        as_owner(&mut initdb, owner);
        let out = initdb
            .output()
            .expect("initdb runs (apt-get install -y postgresql)");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut hba = String::from("local all all trust\n");
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\n\
             password_encryption = 'scram-sha-256'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             autovacuum = off\n\
             max_connections = 50\n\
             shared_buffers = '16MB'\n\
             log_min_messages = warning\n",
        );
        conf.push_str(extra_conf);
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            dir.path().display()
        ));
        match tls {
            Some((cert, key)) => {
                write_owned(&data.join("server.crt"), cert, owner);
                write_owned(&data.join("server.key"), key, owner);
                conf.push_str(
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                );
                hba.push_str(
                    "hostssl all all 127.0.0.1/32 scram-sha-256\n\
                     hostnossl all all 127.0.0.1/32 reject\n",
                );
            }
            None => hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n"),
        }
        write_owned(&data.join("pg_hba.conf"), &hba, owner);
        let mut auto =
            std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap_or_default();
        auto.push_str(&conf);

        // A free port can be taken between probing and binding; try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut settings = auto.clone();
            settings.push_str(&format!("port = {port}\n"));
            write_owned(&data.join("postgresql.auto.conf"), &settings, owner);
            let log = dir.path().join("server.log");
            let log_file = std::fs::File::create(&log).expect("server log");
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&log, Some(uid), Some(gid)).expect("chown log");
            }
            let mut cmd = Command::new(bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log handle"))
                .stderr(log_file);
            as_owner(&mut cmd, owner);
            let mut child = cmd.spawn().expect("postgres starts");
            if wait_ready(&bin, dir.path(), port, &mut child) {
                return PgCluster {
                    dir,
                    bin,
                    child,
                    port,
                };
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            stop(&mut child);
        }
        panic!("PostgreSQL did not start:\n{last_log}");
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding the cluster (and its unix socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `sql` in `db` as the superuser over the unix socket; returns psql's unaligned,
    /// tuples-only output. Panics with psql's message when a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db])
            .env("PGCLIENTENCODING", "UTF8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .expect("write SQL to psql");
        let out = child.wait_with_output().expect("psql finishes");
        assert!(
            out.status.success(),
            "psql failed in {db}: {}\nSQL: {}",
            String::from_utf8_lossy(&out.stderr),
            sql.chars().take(2000).collect::<String>()
        );
        String::from_utf8(out.stdout).expect("psql output is UTF-8")
    }

    /// A `psql` command for `db` as the superuser over the unix socket, without arguments
    /// beyond the connection (for callers that time or redirect it).
    pub fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.arg("-X")
            .arg("-h")
            .arg(self.dir.path())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db])
            .env("PGCLIENTENCODING", "UTF8");
        cmd
    }

    /// A program of the server's installation (`psql`, `pg_dump`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The server's log file (stderr of the postmaster).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far (with [`PgCluster::start_logging_statements`], every statement
    /// it received, as `LOG:  statement: ...` lines).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Runs a query whose single result is a JSON value (e.g. `SELECT json_agg(...)`).
    pub fn query_json(&self, db: &str, sql: &str) -> serde_json::Value {
        let text = self.psql(db, sql);
        let text = text.trim();
        if text.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Creates a login role with a SCRAM-SHA-256 password and nothing else: the minimal
    /// metadata role of the README (every role reads `pg_catalog`).
    pub fn create_user(&self, name: &str, password: &str) {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_ident(name),
                quote_literal(password)
            ),
        );
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Waits until the server accepts connections on its socket; false when it exited.
fn wait_ready(bin: &Path, dir: &Path, port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let ready = Command::new(bin.join("pg_isready"))
            .arg("-q")
            .arg("-h")
            .arg(dir)
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Immediate shutdown (SIGQUIT to the postmaster, which ends its backends), then SIGKILL if
/// the server is still there.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-QUIT", &child.id().to_string()])
        .stdin(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `"name"` with `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with `'` doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, or `$AIRLOCK_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIRLOCK_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let version: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").is_file().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: apt-get install -y postgresql (or set AIRLOCK_PG_BIN)")
    })
}

/// The `postgres` user's uid and gid when running as root (the server refuses root).
fn server_owner() -> Option<(u32, u32)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("the postgres user exists (apt-get install -y postgresql creates it)");
    let fields: Vec<&str> = line.split(':').collect();
    Some((
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    ))
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

fn write_owned(path: &Path, text: &str, owner: Option<(u32, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write server file");
    // The server refuses a key readable by others.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown server file");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
