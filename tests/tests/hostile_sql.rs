//! Hostile SQL: a plugin (`tests/plugins/hostile-suite`, mode `sql-query`) sends one attack
//! statement through the host's `sql` capability to a real PostgreSQL or MariaDB server (and a
//! SQLite file), with an ordinary login, with a privileged login registered as privileged, and
//! with privileged logins that were not. For every refused case the test proves:
//!
//! - (a) the plugin got `denied` with the SQL guard's text naming the refused object,
//! - (b) the refusal is in the audit log (`sql-refused`, outcome = kind, destination = engine,
//!   detail = object),
//! - (c) a marker unique to the statement never reached the server (its statement logs —
//!   PostgreSQL's `log_statement = 'all'`, MariaDB's general log and `server_audit` log, which
//!   also shows statements refused while being prepared — never show it), and
//! - (d) nothing changed: no file written by `COPY ... TO [PROGRAM]`, `lo_export`,
//!   `INTO OUTFILE/DUMPFILE`, `ATTACH` or `VACUUM INTO`; every table an attack drops still
//!   exists; no user or role was created; no business value reached an output file.
//!
//! Positive controls (catalog queries, a granted business table) must pass, and their marker
//! must appear in the server's log, so the suite fails if the guard refuses everything or the
//! statement log does not work.
//!
//! One server per engine for the whole file; the cases of an engine run one after the other
//! (so each case reads only its own part of the server's log), and each records itself for
//! SECURITY.md (`target/hostile-report/`, see `scripts/security-report`). A failing case does
//! not stop the others: the test fails at the end, naming every failed case.

mod hostile_report;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock::runtime::Runtime;
use airlock::state::AuditEntry;
use airlock_tests::mariadb::MariaDb;
use airlock_tests::postgres::{quote_literal, PgCluster};
use airlock_tests::{all_files, plugin, read_jsonl, runtime, verify_run_dir, workspace_root};
use airlock_tests::{with_section, Home, Workspace};
use hostile_report::{run_observed, Case};

/// A business value: no refused case may put it into any output file.
const CANARY: &str = "Canary-Customer-Secret-5b1e9d";
/// Passwords of the test logins (never a secret anywhere else).
const READER_PW: &str = "Hostile-Sql-Reader-Pw-31";
const ADMIN_PW: &str = "Hostile-Sql-Admin-Pw-47";
const FILES_PW: &str = "Hostile-Sql-Files-Pw-59";
/// A refused statement must not take longer than this (an attack like `pg_sleep(30)` must be
/// refused, not run into the timeout).
const REFUSAL_BOUND: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Cases

/// PostgreSQL's `md5` verifier of a login: it logs in like the password.
fn pg_md5_verifier(password: &str, user: &str) -> String {
    use md5::{Digest, Md5};
    format!(
        "md5{}",
        hex::encode(Md5::digest(format!("{password}{user}")))
    )
}

/// MySQL/MariaDB's `mysql_native_password` verifier (cracked offline like the password).
fn mysql_native_verifier(password: &str) -> String {
    use sha1::{Digest, Sha1};
    format!(
        "*{}",
        hex::encode_upper(Sha1::digest(Sha1::digest(password)))
    )
}

/// Which login the workflow's credential holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Login {
    /// An ordinary metadata reader.
    Reader,
    /// A superuser (PostgreSQL) / `ALL PRIVILEGES ... WITH GRANT OPTION` (MariaDB) login,
    /// registered as privileged (`credential add --privileged`).
    AdminFlagged,
    /// The same admin login registered without the flag.
    AdminUnflagged,
    /// A login holding only the server-file privilege (`pg_read_server_files` / `FILE`),
    /// registered without the flag.
    FilesUnflagged,
}

impl Login {
    fn describe(self) -> &'static str {
        match self {
            Login::Reader => "ordinary login",
            Login::AdminFlagged => "superuser login registered --privileged",
            Login::AdminUnflagged => "superuser login registered WITHOUT --privileged",
            Login::FilesUnflagged => "server-file login registered WITHOUT --privileged",
        }
    }
}

/// What the workflow grants.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Workflow {
    /// No `[source.sql]`: only the catalog.
    CatalogOnly,
    /// `allow_relations` grants the customers table, and the plugin declares
    /// `sql_data_access`.
    Granted,
    /// `allow_relations` grants the customers table, but the plugin does not declare
    /// `sql_data_access`.
    GrantedUndeclared,
}

/// What the host must do.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The guard refuses the statement: kind and object.
    Refused(&'static str, &'static str),
    /// The statement passes; the rows hold this text.
    Rows(&'static str),
    /// The login is refused; the message names one of these (case-insensitive).
    LoginRefused(&'static [&'static str]),
    /// The run is refused before the plugin runs; the error holds this text.
    RunRefused(&'static str),
}

/// A check of the server or the file system after the run.
#[derive(Debug, Clone, Copy)]
enum Effect {
    /// No file of this name in the engine's scratch directory.
    NoFile(&'static str),
    /// An admin query (superuser / root, or the SQLite file) returns this text (trimmed);
    /// with what it shows.
    Admin(&'static str, &'static str, &'static str),
}

struct SqlCase {
    name: &'static str,
    login: Login,
    workflow: Workflow,
    /// The statement; `{dir}` is the engine's scratch directory.
    statement: &'static str,
    /// A string of the statement that must never reach the server (for a passing case: that
    /// must reach it).
    marker: &'static str,
    expect: Expect,
    effects: Vec<Effect>,
    /// Strings no output file may hold.
    leaks: Vec<&'static str>,
    /// The plugin emits every transform of the first row's text (`transforms = true`).
    transforms: bool,
}

fn refused(
    name: &'static str,
    statement: &'static str,
    marker: &'static str,
    kind: &'static str,
    object: &'static str,
) -> SqlCase {
    SqlCase {
        name,
        login: Login::Reader,
        workflow: Workflow::CatalogOnly,
        statement,
        marker,
        expect: Expect::Refused(kind, object),
        effects: Vec::new(),
        leaks: vec![CANARY],
        transforms: false,
    }
}

fn passes(
    name: &'static str,
    statement: &'static str,
    marker: &'static str,
    rows: &'static str,
) -> SqlCase {
    SqlCase {
        name,
        login: Login::Reader,
        workflow: Workflow::CatalogOnly,
        statement,
        marker,
        expect: Expect::Rows(rows),
        effects: Vec::new(),
        leaks: Vec::new(),
        transforms: false,
    }
}

impl SqlCase {
    /// The source holds `secret` where the statement reads it: the plugin emits every
    /// transform of what it received, and no output may hold any transform of `secret`.
    fn reflects(mut self, secret: &str) -> Self {
        self.transforms = true;
        self.leaks.extend(
            airlock_tests::secret_transforms(secret)
                .into_iter()
                .map(leak_str),
        );
        self
    }
    fn login(mut self, login: Login) -> Self {
        self.login = login;
        self
    }
    fn workflow(mut self, workflow: Workflow) -> Self {
        self.workflow = workflow;
        self
    }
    fn effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }
    fn no_file(self, name: &'static str) -> Self {
        self.effect(Effect::NoFile(name))
    }
    fn admin(self, what: &'static str, sql: &'static str, expect: &'static str) -> Self {
        self.effect(Effect::Admin(what, sql, expect))
    }
    fn leak(mut self, text: &'static str) -> Self {
        self.leaks.push(text);
        self
    }
    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Engines

/// One engine under attack: its server (if any), scratch directory, logins and admin access.
trait Target {
    /// The engine as the host names it (`postgres`, `mysql`, `sqlite`) in audit entries.
    fn engine(&self) -> &'static str;
    /// The `driver` option of the plugin.
    fn driver(&self) -> &'static str;
    /// A directory the server can write to, for marker files.
    fn files(&self) -> &Path;
    /// The server's statement logs so far (one text per log file); empty for SQLite (no
    /// server).
    fn logs(&self) -> Vec<String>;
    /// Runs an admin query; returns its trimmed output.
    fn admin(&self, sql: &str) -> String;
    /// The `[source]` lines (endpoint, database, credential, tls) for `login`.
    fn source(&self, home: &Home, login: Login) -> String;
    /// The `allow_relations` entry granting the customers table.
    fn grant(&self) -> &'static str;
}

struct Pg {
    server: PgCluster,
}

impl Pg {
    fn start() -> Pg {
        let server = PgCluster::start_logging_statements();
        server.create_database("shop");
        server.create_user("reader", READER_PW);
        let port = server.port();
        server.psql(
            "postgres",
            &format!(
                "CREATE ROLE hm_super SUPERUSER LOGIN PASSWORD {};\n\
                 CREATE ROLE hm_files LOGIN PASSWORD {};\n\
                 GRANT pg_read_server_files TO hm_files;\n\
                 CREATE ROLE hm_pg_15_role NOLOGIN;\n\
                 GRANT hm_pg_15_role TO reader;",
                quote_literal(ADMIN_PW),
                quote_literal(FILES_PW)
            ),
        );
        // The contrib extensions, where installed (the attacks are refused either way).
        let available = |name: &str| {
            server
                .psql(
                    "shop",
                    &format!(
                        "SELECT count(*) FROM pg_available_extensions WHERE name = {}",
                        quote_literal(name)
                    ),
                )
                .trim()
                == "1"
        };
        if available("dblink") {
            server.psql("shop", "CREATE EXTENSION dblink;");
        }
        server.psql(
            "shop",
            &format!(
                "CREATE TABLE public.customers (id int PRIMARY KEY, name text, secret text);\n\
                 INSERT INTO public.customers SELECT g, 'customer ' || g, {canary} \
                   FROM generate_series(1, 50) g;\n\
                 ANALYZE public.customers;\n\
                 GRANT SELECT ON public.customers TO reader;\n\
                 CREATE TABLE public.orders (id int);\n\
                 GRANT SELECT ON public.orders TO reader;\n\
                 CREATE TABLE public.hm_pg_victim (x int);\n\
                 INSERT INTO public.hm_pg_victim VALUES (1);\n\
                 ALTER TABLE public.hm_pg_victim OWNER TO reader;\n\
                 CREATE TABLE public.hm_pg_28_victim (x int);\n\
                 ALTER TABLE public.hm_pg_28_victim OWNER TO reader;\n\
                 CREATE TABLE public.hm_pg_29_victim (x int);\n\
                 ALTER TABLE public.hm_pg_29_victim OWNER TO reader;\n\
                 CREATE TABLE public.hm_pg_s5_victim (x int);\n\
                 CREATE TABLE public.hm_pg_30_log (x int);\n\
                 GRANT INSERT ON public.hm_pg_30_log TO reader;\n\
                 CREATE PROCEDURE public.hm_pg_30_proc() LANGUAGE sql \
                   AS $$ INSERT INTO public.hm_pg_30_log VALUES (1) $$;\n\
                 SELECT lo_from_bytea(424242, 'hm-lo-content-3e7c'::bytea);\n\
                 CREATE TABLE public.hm_reflect_pw (x int);\n\
                 COMMENT ON TABLE public.hm_reflect_pw IS {reader_pw};\n\
                 CREATE TABLE public.hm_reflect_md5 (x int);\n\
                 COMMENT ON TABLE public.hm_reflect_md5 IS {md5};",
                canary = quote_literal(CANARY),
                reader_pw = quote_literal(READER_PW),
                md5 = quote_literal(&pg_md5_verifier(READER_PW, "reader")),
            ),
        );
        if available("postgres_fdw") {
            // A foreign table through which the reader would read customers as the
            // superuser.
            server.psql(
                "shop",
                &format!(
                    "CREATE EXTENSION postgres_fdw;\n\
                     CREATE SERVER hm_loop FOREIGN DATA WRAPPER postgres_fdw \
                       OPTIONS (host '127.0.0.1', port '{port}', dbname 'shop');\n\
                     CREATE USER MAPPING FOR reader SERVER hm_loop \
                       OPTIONS (user 'hm_super', password {admin_pw});\n\
                     CREATE FOREIGN TABLE public.remote_customers (id int, secret text) \
                       SERVER hm_loop OPTIONS (schema_name 'public', table_name 'customers');\n\
                     GRANT SELECT ON public.remote_customers TO reader;",
                    admin_pw = quote_literal(ADMIN_PW),
                ),
            );
        }
        Pg { server }
    }
}

impl Target for Pg {
    fn engine(&self) -> &'static str {
        "postgres"
    }
    fn driver(&self) -> &'static str {
        "postgres"
    }
    fn files(&self) -> &Path {
        // Owned by the server's OS user, so a command the server ran could write here.
        self.server.dir()
    }
    fn logs(&self) -> Vec<String> {
        vec![self.server.log_text()]
    }
    fn admin(&self, sql: &str) -> String {
        self.server.psql("shop", sql).trim().to_string()
    }
    fn source(&self, home: &Home, login: Login) -> String {
        let dest = self.server.endpoint();
        let guid = match login {
            Login::Reader => home.add_password("reader", READER_PW, &[&dest]),
            Login::AdminFlagged => home.add_privileged_password("hm_super", ADMIN_PW, &[&dest]),
            Login::AdminUnflagged => home.add_password("hm_super", ADMIN_PW, &[&dest]),
            Login::FilesUnflagged => home.add_password("hm_files", FILES_PW, &[&dest]),
        };
        format!(
            "endpoint = \"{dest}\"\ndatabase = \"shop\"\ncredential = \"{guid}\"\n\
             tls = {{ mode = \"disable\", allow_cleartext_password = true }}"
        )
    }
    fn grant(&self) -> &'static str {
        "shop.public.customers"
    }
}

struct My {
    server: MariaDb,
    files: tempfile::TempDir,
}

impl My {
    fn start() -> My {
        let server = MariaDb::start_with_general_log();
        server.create_user("reader", READER_PW);
        server.sql(&format!(
            "CREATE DATABASE shop;\n\
             CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), secret VARCHAR(64));\n\
             INSERT INTO shop.customers SELECT seq, CONCAT('customer ', seq), {canary} FROM shop.seq_1_to_50;\n\
             ANALYZE TABLE shop.customers PERSISTENT FOR ALL;\n\
             GRANT SELECT ON shop.* TO reader@'%';\n\
             CREATE TABLE shop.orders (id INT);\n\
             CREATE TABLE shop.hm_my_04_victim (x INT);\n\
             CREATE TABLE shop.hm_my_07_victim (x INT);\n\
             CREATE TABLE shop.hm_my_08_victim (x INT);\n\
             CREATE TABLE shop.hm_my_13_victim (x INT);\n\
             CREATE TABLE shop.hm_my_19_t (line TEXT);\n\
             CREATE TABLE shop.hm_my_s5_victim (x INT);\n\
             CREATE TABLE shop.hm_my_s6_victim (x INT);\n\
             CREATE USER hm_admin@'%' IDENTIFIED BY {admin_pw};\n\
             GRANT ALL PRIVILEGES ON *.* TO hm_admin@'%' WITH GRANT OPTION;\n\
             CREATE USER hm_filer@'%' IDENTIFIED BY {files_pw};\n\
             GRANT SELECT, FILE ON *.* TO hm_filer@'%';\n\
             CREATE TABLE shop.hm_reflect_pw (x INT) COMMENT {reader_pw};\n\
             CREATE TABLE shop.hm_reflect_native (x INT) COMMENT {native};",
            canary = airlock_tests::mariadb::quote(CANARY),
            reader_pw = airlock_tests::mariadb::quote(READER_PW),
            native = airlock_tests::mariadb::quote(&mysql_native_verifier(READER_PW)),
            admin_pw = airlock_tests::mariadb::quote(ADMIN_PW),
            files_pw = airlock_tests::mariadb::quote(FILES_PW),
        ));
        if Path::new("/usr/lib/mysql/plugin/server_audit.so").is_file() {
            assert!(
                server.audit_log().contains("shop.customers"),
                "the audit plugin logs statements: {}",
                server.error_log()
            );
        }
        My {
            server,
            files: tempfile::tempdir().expect("temp dir"),
        }
    }
}

impl Target for My {
    fn engine(&self) -> &'static str {
        "mysql"
    }
    fn driver(&self) -> &'static str {
        "mysql"
    }
    fn files(&self) -> &Path {
        self.files.path()
    }
    fn logs(&self) -> Vec<String> {
        vec![self.server.general_log(), self.server.audit_log()]
    }
    fn admin(&self, sql: &str) -> String {
        self.server.sql(sql).trim().to_string()
    }
    fn source(&self, home: &Home, login: Login) -> String {
        let dest = self.server.address();
        let guid = match login {
            Login::Reader => home.add_password("reader", READER_PW, &[&dest]),
            Login::AdminFlagged => home.add_privileged_password("hm_admin", ADMIN_PW, &[&dest]),
            Login::AdminUnflagged => home.add_password("hm_admin", ADMIN_PW, &[&dest]),
            Login::FilesUnflagged => home.add_password("hm_filer", FILES_PW, &[&dest]),
        };
        format!(
            "endpoint = \"{dest}\"\ndatabase = \"shop\"\ncredential = \"{guid}\"\n\
             tls = {{ mode = \"disable\", allow_cleartext_password = true }}"
        )
    }
    fn grant(&self) -> &'static str {
        "shop.shop.customers"
    }
}

struct Lite {
    dir: tempfile::TempDir,
}

impl Lite {
    fn start() -> Lite {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = rusqlite::Connection::open(dir.path().join("shop.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, secret TEXT);\n\
             CREATE TABLE orders (id INTEGER);\n\
             CREATE VIEW v_customers AS SELECT name, secret FROM customers;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO customers (name, secret) VALUES ('customer 1', ?1)",
            [CANARY],
        )
        .unwrap();
        Lite { dir }
    }
    fn db(&self) -> PathBuf {
        self.dir.path().join("shop.db")
    }
}

impl Target for Lite {
    fn engine(&self) -> &'static str {
        "sqlite"
    }
    fn driver(&self) -> &'static str {
        "sqlite"
    }
    fn files(&self) -> &Path {
        self.dir.path()
    }
    fn logs(&self) -> Vec<String> {
        Vec::new()
    }
    fn admin(&self, sql: &str) -> String {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap_or_else(|e| format!("error: {e}"))
    }
    fn source(&self, _home: &Home, _login: Login) -> String {
        format!(
            "database = \"{}\"\nallowed_dirs = [\"{}\"]",
            self.db().display(),
            self.dir.path().display()
        )
    }
    fn grant(&self) -> &'static str {
        "shop.main.customers"
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case

/// The hostile-suite plugin with a second `airlock-capabilities` section declaring
/// `sql_data_access` (the SDK's section declares only destinations; the host merges both).
/// Written once, with the same bytes every time, so its compiled form is cached.
fn data_access_plugin() -> PathBuf {
    let wasm = with_section(
        &std::fs::read(plugin("hostile-suite")).expect("read hostile-suite"),
        "airlock-capabilities",
        br#"{"format":1,"sql_data_access":true}"#,
    );
    let dir = workspace_root().join("target").join("hostile-sql");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hostile-suite-data.wasm");
    if std::fs::read(&path).ok().as_deref() != Some(wasm.as_slice()) {
        // Several tests may write it at once: write aside, then rename over.
        let tmp = dir.join(format!("hostile-suite-data.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &wasm).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

fn statement_of(target: &dyn Target, case: &SqlCase) -> String {
    case.statement
        .replace("{dir}", &target.files().display().to_string())
}

/// What a run produced, gathered without asserting anything (the assertions run afterwards,
/// inside the case's record).
struct Observation {
    /// The published run directory, or the run's error as `kind: message`.
    run: Result<PathBuf, String>,
    /// `sql-refused` audit entries of the run.
    refusals: Vec<AuditEntry>,
    /// What the server logged during the run (`None`: no server).
    log: Option<String>,
    /// Leak strings found in output files, with the file.
    leaked: Vec<String>,
    elapsed: Duration,
    _ws: Workspace,
}

async fn observe(rt: &Runtime, target: &dyn Target, case: &SqlCase) -> Observation {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let source = target.source(&home, case.login);
    let statement = statement_of(target, case);
    let plugin_path = match case.workflow {
        Workflow::Granted => data_access_plugin(),
        _ => plugin("hostile-suite"),
    };
    let grant = match case.workflow {
        Workflow::CatalogOnly => String::new(),
        _ => format!("[source.sql]\nallow_relations = [\"{}\"]\n", target.grant()),
    };
    let cfg = ws.config(&format!(
        "[source]\nplugin = \"{}\"\n{source}\n\n[source.options]\nmode = \"sql-query\"\n\
         driver = \"{}\"\nstatement = {}\ntransforms = {}\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n\
         [limits]\ndeadline_s = 30\nquery_timeout_s = 5\n\n{grant}",
        plugin_path.display(),
        target.driver(),
        // A JSON string is a valid TOML basic string.
        serde_json::to_string(&statement).unwrap(),
        case.transforms,
    ));
    let before: Vec<usize> = target.logs().iter().map(String::len).collect();
    let started = Instant::now();
    let (result, _) = run_observed(rt, &cfg, Some(&home)).await;
    let elapsed = started.elapsed();
    let logs = target.logs();
    let log = (!logs.is_empty()).then(|| {
        logs.iter()
            .zip(before.iter().chain(std::iter::repeat(&0)))
            .map(|(l, &from)| l.get(from..).unwrap_or(l.as_str()))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let refusals = home
        .inner()
        .state()
        .audit_entries(None, None)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.action == "sql-refused")
        .collect();
    let mut leaked = Vec::new();
    let mut files = all_files(&ws.out());
    files.extend(all_files(&ws.path().join("airlock-home")));
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for leak in &case.leaks {
            if bytes.windows(leak.len()).any(|w| w == leak.as_bytes()) {
                leaked.push(format!("{leak} in {}", f.display()));
            }
        }
    }
    Observation {
        run: result
            .map(|r| r.output_dir)
            .map_err(|e| format!("{}: {e}", e.kind())),
        refusals,
        log,
        leaked,
        elapsed,
        _ws: ws,
    }
}

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Inline code for the report's table (double backticks when the text holds one).
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn effect_text(effect: &Effect) -> String {
    match effect {
        Effect::NoFile(name) => format!("no file <dir>/{name}"),
        Effect::Admin(what, _, _) => what.to_string(),
    }
}

fn expected_text(target: &dyn Target, case: &SqlCase) -> String {
    let mut parts = vec![match case.expect {
        Expect::Refused(kind, object) => format!(
            "denied by the SQL guard ({kind}: {}); audited as sql-refused",
            code(object)
        ),
        Expect::Rows(rows) => format!("passes; the rows hold {}", code(rows)),
        Expect::LoginRefused(names) => {
            format!("the login is refused, naming {}", names.join(" / "))
        }
        Expect::RunRefused(text) => format!("the run is refused: {text}"),
    }];
    if !target.logs().is_empty() {
        parts.push(match case.expect {
            Expect::Rows(_) => format!("{} reaches the server's log", code(case.marker)),
            _ => format!("{} never reaches the server", code(case.marker)),
        });
    }
    parts.extend(case.effects.iter().map(effect_text));
    if !case.leaks.is_empty() {
        parts.push("no business value or file content in any output".into());
    }
    parts.join("; ")
}

/// Asserts everything about one observed case, recording it; panics on the first failure.
fn assess(target: &dyn Target, case: &SqlCase, obs: &Observation) {
    let shown = statement_of(target, case).replace(&target.files().display().to_string(), "<dir>");
    let mut record = Case::new(
        case.name,
        file!(),
        leak_str(format!(
            "{} ({}): {}",
            target.engine(),
            case.login.describe(),
            code(&shown)
        )),
        leak_str(expected_text(target, case)),
    );
    // The probe's attributes when the run published, else the run's error.
    let probe = match &obs.run {
        Ok(dir) => {
            verify_run_dir(dir);
            let assets = read_jsonl(dir, "database");
            assert_eq!(assets.len(), 1, "one probe asset: {assets:?}");
            let mut a = assets[0]["attributes"]["extra"].clone();
            // The probe writes its rows as JSON text (see the plugin's `rows_text`).
            if let Some(rows) = a["rows"].as_str().map(str::to_string) {
                a["rows"] = serde_json::from_str(&rows).expect("rows are JSON");
            }
            Ok(a)
        }
        Err(e) => Err(e.clone()),
    };
    let (stage, outcome, message) = match &probe {
        Ok(a) => (
            a["stage"].as_str().unwrap_or_default().to_string(),
            a["outcome"].as_str().unwrap_or_default().to_string(),
            a["message"].as_str().unwrap_or_default().to_string(),
        ),
        Err(e) => ("run".to_string(), "run-error".to_string(), e.clone()),
    };
    let mut actual = match &probe {
        Ok(a) if outcome == "granted" => format!("granted: rows {}", a["rows"]),
        _ => format!("{stage} {outcome}: {message}"),
    };
    record.actual(actual.clone());

    match case.expect {
        Expect::Refused(kind, object) => {
            assert_eq!(
                (stage.as_str(), outcome.as_str()),
                ("query", "denied"),
                "the statement must be refused by the guard: {actual}"
            );
            let head = format!("statement refused by the host's SQL guard ({kind}: `{object}`)");
            assert!(
                message.starts_with(&head),
                "the refusal must start with {head:?}: {message}"
            );
            let audited: Vec<_> = obs
                .refusals
                .iter()
                .map(|e| {
                    (
                        e.outcome.as_str(),
                        e.destination.as_deref().unwrap_or_default(),
                        e.detail.as_deref().unwrap_or_default(),
                    )
                })
                .collect();
            assert_eq!(
                audited,
                vec![(kind, target.engine(), object)],
                "exactly one sql-refused audit entry for the statement"
            );
            assert!(obs.elapsed < REFUSAL_BOUND, "took {:?}", obs.elapsed);
            actual = format!("{actual}; audited sql-refused");
        }
        Expect::Rows(rows) => {
            let a = probe
                .as_ref()
                .unwrap_or_else(|e| panic!("the run must publish: {e}"));
            assert_eq!(
                outcome,
                "granted",
                "the statement must pass: {actual}\nserver log:\n{}",
                obs.log.as_deref().unwrap_or("(none)")
            );
            assert!(
                a["rows"].to_string().contains(rows),
                "the rows must hold {rows:?}: {a}"
            );
            assert!(obs.refusals.is_empty(), "no refusal: {:?}", obs.refusals);
        }
        Expect::LoginRefused(names) => {
            assert!(
                (stage == "open" && outcome == "denied") || stage == "run",
                "the login must be refused: {actual}"
            );
            let lower = message.to_lowercase();
            assert!(
                names.iter().any(|n| lower.contains(&n.to_lowercase())),
                "the refusal must name one of {names:?}: {message}"
            );
            assert!(obs.refusals.is_empty(), "no statement was sent");
        }
        Expect::RunRefused(text) => {
            assert_eq!(stage, "run", "the run must be refused: {actual}");
            assert!(message.contains(text), "{message}");
        }
    }

    if let Some(log) = &obs.log {
        match case.expect {
            Expect::Rows(_) => {
                assert!(
                    log.contains(case.marker),
                    "a passing statement reaches the server, so its marker {:?} must be in \
                     the statement log (is logging on?):\n{log}",
                    case.marker
                );
                actual = format!("{actual}; in the server log");
            }
            _ => {
                assert!(
                    !log.contains(case.marker),
                    "the marker {:?} reached the server:\n{log}",
                    case.marker
                );
                actual = format!("{actual}; never reached the server");
            }
        }
    }
    for effect in &case.effects {
        match effect {
            Effect::NoFile(name) => {
                let path = target.files().join(name);
                assert!(!path.exists(), "{} was created", path.display());
            }
            Effect::Admin(what, sql, expect) => {
                let got = target.admin(sql);
                assert_eq!(&got, expect, "{what}: {sql}");
            }
        }
        actual = format!("{actual}; {}", effect_text(effect));
    }
    assert!(obs.leaked.is_empty(), "leaked: {:?}", obs.leaked);
    record.actual(actual);
}

/// Runs every case against `target` one after the other; panics at the end naming each case
/// that failed (and why).
async fn run_all(target: &dyn Target, cases: Vec<SqlCase>) {
    let rt = runtime();
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        let obs = observe(&rt, target, case).await;
        if let Err(panic) =
            std::panic::catch_unwind(AssertUnwindSafe(|| assess(target, case, &obs)))
        {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let why: String = why.chars().take(1500).collect();
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        target.engine(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

fn pg_cases() -> Vec<SqlCase> {
    use Login::*;
    vec![
        // --- the server's files, programs and large objects ----------------------------------
        refused(
            "sql_pg_copy_to_program",
            "COPY (SELECT 'hm_pg_01') TO PROGRAM 'touch {dir}/hm_pg_01_program'",
            "hm_pg_01",
            "not-a-read",
            "CopyStmt",
        )
        .no_file("hm_pg_01_program"),
        refused(
            "sql_pg_copy_from_program",
            "COPY public.hm_pg_30_log FROM PROGRAM 'touch {dir}/hm_pg_02_program'",
            "hm_pg_02",
            "not-a-read",
            "CopyStmt",
        )
        .no_file("hm_pg_02_program")
        .admin(
            "hm_pg_30_log is still empty",
            "SELECT count(*) FROM public.hm_pg_30_log",
            "0",
        ),
        refused(
            "sql_pg_copy_to_file",
            "COPY public.customers TO '{dir}/hm_pg_03_copy'",
            "hm_pg_03",
            "not-a-read",
            "CopyStmt",
        )
        .no_file("hm_pg_03_copy"),
        refused(
            "sql_pg_read_file",
            "SELECT pg_read_file('/etc/passwd') AS hm_pg_04",
            "hm_pg_04",
            "function",
            "pg_read_file",
        )
        .leak("root:x:0:0"),
        refused(
            "sql_pg_ls_dir",
            "SELECT * FROM pg_ls_dir('.') AS hm_pg_05",
            "hm_pg_05",
            "function",
            "pg_ls_dir",
        )
        .leak("postgresql.auto.conf"),
        refused(
            "sql_pg_lo_import",
            "SELECT lo_import('/etc/passwd', 4343) AS hm_pg_06",
            "hm_pg_06",
            "function",
            "lo_import",
        )
        .admin(
            "no large object 4343 was created",
            "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 4343",
            "0",
        ),
        refused(
            "sql_pg_lo_export",
            "SELECT lo_export(424242, '{dir}/hm_pg_07_lo')",
            "hm_pg_07",
            "function",
            "lo_export",
        )
        .no_file("hm_pg_07_lo"),
        refused(
            "sql_pg_lo_get",
            "SELECT lo_get(424242) AS hm_pg_08",
            "hm_pg_08",
            "function",
            "lo_get",
        )
        .leak("hm-lo-content-3e7c"),
        // --- other sessions and servers ------------------------------------------------------
        refused(
            "sql_pg_dblink_exec",
            "SELECT dblink_exec('dbname=shop', 'CREATE TABLE public.hm_pg_09_t (x int)')",
            "hm_pg_09",
            "function",
            "dblink_exec",
        )
        .admin(
            "no table hm_pg_09_t",
            "SELECT to_regclass('public.hm_pg_09_t') IS NULL",
            "t",
        ),
        refused(
            "sql_pg_dblink_query",
            "SELECT dblink('dbname=shop', 'SELECT secret FROM public.customers') AS hm_pg_10",
            "hm_pg_10",
            "function",
            "dblink",
        ),
        refused(
            "sql_pg_postgres_fdw_foreign_table",
            "SELECT secret, 'hm_pg_11' FROM public.remote_customers",
            "hm_pg_11",
            "relation",
            "public.remote_customers",
        ),
        refused(
            "sql_pg_postgres_fdw_create_server",
            "CREATE SERVER hm_pg_12 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1')",
            "hm_pg_12",
            "not-a-read",
            "CreateForeignServerStmt",
        )
        .admin(
            "no foreign server hm_pg_12",
            "SELECT count(*) FROM pg_foreign_server WHERE srvname = 'hm_pg_12'",
            "0",
        ),
        // --- business data --------------------------------------------------------------------
        refused(
            "sql_pg_business_table",
            "SELECT secret, 'hm_pg_13' FROM public.customers",
            "hm_pg_13",
            "relation",
            "public.customers",
        ),
        refused(
            "sql_pg_business_table_unqualified",
            "SELECT secret AS hm_pg_14 FROM customers",
            "hm_pg_14",
            "relation",
            "customers",
        ),
        refused(
            "sql_pg_catalog_query_smuggling_a_subquery",
            "SELECT relname, (SELECT string_agg(secret, ',') FROM customers) AS hm_pg_31 FROM pg_class",
            "hm_pg_31",
            "relation",
            "customers",
        ),
        refused(
            "sql_pg_catalog_query_with_a_blind_exists",
            "SELECT relname AS hm_pg_32 FROM pg_class WHERE EXISTS (SELECT 1 FROM public.customers WHERE secret LIKE 'C%')",
            "hm_pg_32",
            "relation",
            "public.customers",
        ),
        refused(
            "sql_pg_query_to_xml",
            "SELECT query_to_xml('SELECT secret FROM public.customers', true, true, 'hm_pg_33')",
            "hm_pg_33",
            "function",
            "query_to_xml",
        ),
        refused(
            "sql_pg_stats",
            "SELECT most_common_vals::text AS hm_pg_34 FROM pg_stats WHERE tablename = 'customers'",
            "hm_pg_34",
            "relation",
            "pg_catalog.pg_stats",
        ),
        refused(
            "sql_pg_statistic",
            "SELECT stavalues1::text AS hm_pg_35 FROM pg_catalog.pg_statistic",
            "hm_pg_35",
            "relation",
            "pg_catalog.pg_statistic",
        ),
        refused(
            "sql_pg_authid_password_hashes",
            "SELECT rolpassword AS hm_pg_36 FROM pg_authid",
            "hm_pg_36",
            "relation",
            "pg_catalog.pg_authid",
        )
        .leak("SCRAM-SHA-256$"),
        // --- the session ----------------------------------------------------------------------
        refused(
            "sql_pg_set_role",
            "SET ROLE hm_pg_15_role",
            "hm_pg_15_role",
            "not-a-read",
            "VariableSetStmt",
        ),
        refused(
            "sql_pg_set_config_role",
            "SELECT set_config('role', 'hm_pg_15_role', false) AS hm_pg_16",
            "hm_pg_16",
            "function",
            "set_config",
        ),
        refused(
            "sql_pg_set_transaction_read_write",
            "SET TRANSACTION READ WRITE",
            "READ WRITE",
            "not-a-read",
            "VariableSetStmt",
        ),
        refused(
            "sql_pg_sleep",
            "SELECT pg_sleep(30) AS hm_pg_18",
            "hm_pg_18",
            "function",
            "pg_sleep",
        ),
        refused(
            "sql_pg_advisory_lock",
            "SELECT pg_advisory_lock(1819) AS hm_pg_19",
            "hm_pg_19",
            "function",
            "pg_advisory_lock",
        )
        .admin(
            "no advisory lock is held",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            "0",
        ),
        refused(
            "sql_pg_terminate_backend",
            "SELECT pg_terminate_backend(pid) AS hm_pg_20 FROM pg_stat_activity",
            "hm_pg_20",
            "function",
            "pg_terminate_backend",
        ),
        // --- spellings ------------------------------------------------------------------------
        refused(
            "sql_pg_read_file_quoted",
            "SELECT \"pg_read_file\"('/etc/passwd') AS hm_pg_21",
            "hm_pg_21",
            "function",
            "pg_read_file",
        )
        .leak("root:x:0:0"),
        refused(
            "sql_pg_read_file_unicode_escape",
            "SELECT U&\"pg_\\0072ead_file\"('/etc/passwd') AS hm_pg_22",
            "hm_pg_22",
            "function",
            "pg_read_file",
        )
        .leak("root:x:0:0"),
        refused(
            "sql_pg_read_file_qualified",
            "SELECT pg_catalog.pg_read_file('/etc/passwd') AS hm_pg_23",
            "hm_pg_23",
            "function",
            "pg_read_file",
        )
        .leak("root:x:0:0"),
        // --- constructs and statements --------------------------------------------------------
        refused(
            "sql_pg_data_modifying_cte",
            "WITH d AS (DELETE FROM public.hm_pg_victim RETURNING *) SELECT 'hm_pg_24' FROM d",
            "hm_pg_24",
            "construct",
            "WITH DeleteStmt",
        )
        .admin(
            "hm_pg_victim still has its row",
            "SELECT count(*) FROM public.hm_pg_victim",
            "1",
        ),
        refused(
            "sql_pg_select_into",
            "SELECT relname INTO public.hm_pg_25 FROM pg_class",
            "hm_pg_25",
            "construct",
            "SELECT INTO",
        )
        .admin(
            "no table hm_pg_25",
            "SELECT to_regclass('public.hm_pg_25') IS NULL",
            "t",
        ),
        refused(
            "sql_pg_for_update",
            "SELECT relname AS hm_pg_26 FROM pg_class FOR UPDATE",
            "hm_pg_26",
            "construct",
            "FOR UPDATE",
        ),
        refused(
            "sql_pg_unparsable",
            "SELEKT hm_pg_27 FROM pg_class",
            "hm_pg_27",
            "unparsable",
            "statement",
        ),
        refused(
            "sql_pg_two_statements",
            "SELECT 1; DROP TABLE public.hm_pg_28_victim",
            "hm_pg_28_victim",
            "multiple-statements",
            "2 statements",
        )
        .admin(
            "hm_pg_28_victim still exists",
            "SELECT to_regclass('public.hm_pg_28_victim') IS NOT NULL",
            "t",
        ),
        refused(
            "sql_pg_do_block",
            "DO $$ BEGIN EXECUTE 'DROP TABLE public.hm_pg_29_victim'; END $$",
            "hm_pg_29_victim",
            "not-a-read",
            "DoStmt",
        )
        .admin(
            "hm_pg_29_victim still exists",
            "SELECT to_regclass('public.hm_pg_29_victim') IS NOT NULL",
            "t",
        ),
        refused(
            "sql_pg_call",
            "CALL public.hm_pg_30_proc()",
            "hm_pg_30_proc",
            "not-a-read",
            "CallStmt",
        )
        .admin(
            "the procedure did not run",
            "SELECT count(*) FROM public.hm_pg_30_log",
            "0",
        ),
        refused(
            "sql_pg_create_role",
            "CREATE ROLE hm_pg_37 SUPERUSER LOGIN",
            "hm_pg_37",
            "not-a-read",
            "CreateRoleStmt",
        )
        .admin(
            "no role hm_pg_37",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'hm_pg_37'",
            "0",
        ),
        refused(
            "sql_pg_table_statement",
            "TABLE public.customers",
            "TABLE public.customers",
            "relation",
            "public.customers",
        ),
        refused(
            "sql_pg_cte_named_like_a_catalog",
            "WITH pg_class AS (SELECT secret AS relname FROM public.customers) SELECT relname, 'hm_pg_40' FROM pg_class",
            "hm_pg_40",
            "relation",
            "public.customers",
        ),
        refused(
            "sql_pg_authid_unicode_escape",
            "SELECT rolpassword AS hm_pg_41 FROM U&\"pg_\\0061uthid\"",
            "hm_pg_41",
            "relation",
            "pg_catalog.pg_authid",
        )
        .leak("SCRAM-SHA-256$"),
        refused(
            "sql_pg_explain_analyze_delete",
            "EXPLAIN ANALYZE DELETE FROM public.hm_pg_victim WHERE 'hm_pg_42' <> ''",
            "hm_pg_42",
            "not-a-read",
            "ExplainStmt",
        )
        .admin(
            "hm_pg_victim still has its row",
            "SELECT count(*) FROM public.hm_pg_victim",
            "1",
        ),
        refused(
            "sql_pg_current_setting_data_directory",
            "SELECT current_setting('data_directory') AS hm_pg_43",
            "hm_pg_43",
            "function",
            "current_setting",
        ),
        refused(
            "sql_pg_lateral_business_subquery",
            "SELECT c.relname, s.secret AS hm_pg_44 FROM pg_class c, LATERAL (SELECT secret FROM public.customers LIMIT 1) s",
            "hm_pg_44",
            "relation",
            "public.customers",
        ),
        // --- positive controls ----------------------------------------------------------------
        passes(
            "sql_pg_catalog_query_passes",
            "SELECT c.relname, 'hm_pg_ok_1' AS marker FROM pg_catalog.pg_class c WHERE c.relname = 'customers'",
            "hm_pg_ok_1",
            "customers",
        ),
        passes(
            "sql_pg_information_schema_query_passes",
            "SELECT table_name, 'hm_pg_ok_2' AS marker FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
            "hm_pg_ok_2",
            "customers",
        ),
        passes(
            "sql_pg_granted_business_table_passes",
            "SELECT secret, 'hm_pg_ok_3' AS marker FROM public.customers WHERE id = 1",
            "hm_pg_ok_3",
            CANARY,
        )
        .workflow(Workflow::Granted),
        refused(
            "sql_pg_grant_does_not_open_other_tables",
            "SELECT id, 'hm_pg_38' FROM public.orders",
            "hm_pg_38",
            "relation",
            "public.orders",
        )
        .workflow(Workflow::Granted),
        refused(
            "sql_pg_grant_needs_a_plugin_declaring_data_access",
            "SELECT secret, 'hm_pg_39' FROM public.customers",
            "hm_pg_39",
            "",
            "",
        )
        .workflow(Workflow::GrantedUndeclared)
        .expect(Expect::RunRefused("does not declare `sql_data_access`")),
        // --- privileged logins ----------------------------------------------------------------
        refused(
            "sql_pg_superuser_login_without_privileged_flag_is_refused",
            "SELECT relname, 'hm_pg_s1' FROM pg_class",
            "hm_pg_s1",
            "",
            "",
        )
        .login(AdminUnflagged)
        .expect(Expect::LoginRefused(&["rolsuper", "superuser"])),
        refused(
            "sql_pg_server_files_login_without_privileged_flag_is_refused",
            "SELECT relname, 'hm_pg_s2' FROM pg_class",
            "hm_pg_s2",
            "",
            "",
        )
        .login(FilesUnflagged)
        .expect(Expect::LoginRefused(&["pg_read_server_files"])),
        passes(
            "sql_pg_privileged_superuser_runs_catalog_queries",
            "SELECT c.relname, 'hm_pg_ok_s' AS marker FROM pg_catalog.pg_class c WHERE c.relname = 'customers'",
            "hm_pg_ok_s",
            "customers",
        )
        .login(AdminFlagged),
        refused(
            "sql_pg_privileged_superuser_copy_to_program",
            "COPY (SELECT 'hm_pg_s3') TO PROGRAM 'touch {dir}/hm_pg_s3_program'",
            "hm_pg_s3",
            "not-a-read",
            "CopyStmt",
        )
        .login(AdminFlagged)
        .no_file("hm_pg_s3_program"),
        refused(
            "sql_pg_privileged_superuser_read_file",
            "SELECT pg_read_file('/etc/passwd') AS hm_pg_s4",
            "hm_pg_s4",
            "function",
            "pg_read_file",
        )
        .login(AdminFlagged)
        .leak("root:x:0:0"),
        refused(
            "sql_pg_privileged_superuser_lo_export",
            "SELECT lo_export(424242, '{dir}/hm_pg_s5_lo')",
            "hm_pg_s5",
            "function",
            "lo_export",
        )
        .login(AdminFlagged)
        .no_file("hm_pg_s5_lo"),
        refused(
            "sql_pg_privileged_superuser_dblink_exec",
            "SELECT dblink_exec('dbname=shop', 'DROP TABLE public.hm_pg_s5_victim')",
            "hm_pg_s5_victim",
            "function",
            "dblink_exec",
        )
        .login(AdminFlagged)
        .admin(
            "hm_pg_s5_victim still exists",
            "SELECT to_regclass('public.hm_pg_s5_victim') IS NOT NULL",
            "t",
        ),
        refused(
            "sql_pg_privileged_superuser_authid",
            "SELECT rolname, rolpassword AS hm_pg_s6 FROM pg_authid",
            "hm_pg_s6",
            "relation",
            "pg_catalog.pg_authid",
        )
        .login(AdminFlagged)
        .leak("SCRAM-SHA-256$"),
        // --- secrets the server hands back ----------------------------------------------------
        passes(
            "sql_pg_reflected_password_is_withheld",
            "SELECT obj_description(c.oid, 'pg_class') AS hm_pg_r1 FROM pg_catalog.pg_class c WHERE c.relname = 'hm_reflect_pw'",
            "hm_pg_r1",
            "[airlock:secret-withheld]",
        )
        .reflects(READER_PW),
        passes(
            "sql_pg_reflected_md5_verifier_is_withheld",
            "SELECT obj_description(c.oid, 'pg_class') AS hm_pg_r2 FROM pg_catalog.pg_class c WHERE c.relname = 'hm_reflect_md5'",
            "hm_pg_r2",
            "[airlock:secret-withheld]",
        )
        .reflects(&pg_md5_verifier(READER_PW, "reader")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_attacks_never_reach_the_server() {
    let target = Pg::start();
    run_all(&target, pg_cases()).await;
}

// ---------------------------------------------------------------------------------------------
// MariaDB

fn my_cases() -> Vec<SqlCase> {
    use Login::*;
    vec![
        // --- the server's files ---------------------------------------------------------------
        refused(
            "sql_mysql_load_file",
            "SELECT LOAD_FILE('/etc/passwd') AS hm_my_01",
            "hm_my_01",
            "function",
            "LOAD_FILE",
        )
        .leak("root:x:0:0"),
        refused(
            "sql_mysql_into_outfile",
            "SELECT 'hm_my_02' INTO OUTFILE '{dir}/hm_my_02_out'",
            "hm_my_02",
            "construct",
            "INTO",
        )
        .no_file("hm_my_02_out"),
        refused(
            "sql_mysql_into_dumpfile",
            "SELECT 'hm_my_03' INTO DUMPFILE '{dir}/hm_my_03_dump'",
            "hm_my_03",
            "construct",
            "INTO",
        )
        .no_file("hm_my_03_dump"),
        refused(
            "sql_mysql_load_data",
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE shop.hm_my_19_t",
            "hm_my_19_t",
            "not-a-read",
            "LOAD",
        )
        .admin(
            "hm_my_19_t is still empty",
            "SELECT COUNT(*) FROM shop.hm_my_19_t",
            "0",
        ),
        refused(
            "sql_mysql_install_soname",
            "INSTALL SONAME 'hm_my_17'",
            "hm_my_17",
            "not-a-read",
            "INSTALL",
        ),
        // --- DDL and DCL ----------------------------------------------------------------------
        refused(
            "sql_mysql_drop_table",
            "DROP TABLE shop.hm_my_04_victim",
            "hm_my_04_victim",
            "not-a-read",
            "DROP",
        )
        .admin(
            "hm_my_04_victim still exists",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'hm_my_04_victim'",
            "1",
        ),
        refused(
            "sql_mysql_grant_all",
            "GRANT ALL PRIVILEGES ON *.* TO hm_my_05 IDENTIFIED BY 'pw'",
            "hm_my_05",
            "not-a-read",
            "GRANT",
        )
        .admin(
            "no user hm_my_05",
            "SELECT COUNT(*) FROM mysql.user WHERE User = 'hm_my_05'",
            "0",
        ),
        refused(
            "sql_mysql_create_user",
            "CREATE USER hm_my_06 IDENTIFIED BY 'pw'",
            "hm_my_06",
            "not-a-read",
            "CREATE",
        )
        .admin(
            "no user hm_my_06",
            "SELECT COUNT(*) FROM mysql.user WHERE User = 'hm_my_06'",
            "0",
        ),
        refused(
            "sql_mysql_executable_comment",
            "/*!50000 DROP TABLE shop.hm_my_07_victim*/",
            "hm_my_07_victim",
            "comment",
            "/*!",
        )
        .admin(
            "hm_my_07_victim still exists",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'hm_my_07_victim'",
            "1",
        ),
        refused(
            "sql_mysql_mariadb_executable_comment",
            "/*M!100100 DROP TABLE shop.hm_my_08_victim */",
            "hm_my_08_victim",
            "comment",
            "/*M!",
        )
        .admin(
            "hm_my_08_victim still exists",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'hm_my_08_victim'",
            "1",
        ),
        refused(
            "sql_mysql_executable_comment_inside_a_select",
            "SELECT 1 /*! , LOAD_FILE('/etc/passwd') AS hm_my_25 */",
            "hm_my_25",
            "comment",
            "/*!",
        )
        .leak("root:x:0:0"),
        refused(
            "sql_mysql_two_statements",
            "SELECT 1; DROP TABLE shop.hm_my_13_victim",
            "hm_my_13_victim",
            "multiple-statements",
            ";",
        )
        .admin(
            "hm_my_13_victim still exists",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'hm_my_13_victim'",
            "1",
        ),
        // --- the session ----------------------------------------------------------------------
        refused(
            "sql_mysql_sleep",
            "SELECT SLEEP(30) AS hm_my_09",
            "hm_my_09",
            "function",
            "SLEEP",
        ),
        refused(
            "sql_mysql_benchmark",
            "SELECT BENCHMARK(100000000, MD5('hm_my_22'))",
            "hm_my_22",
            "function",
            "BENCHMARK",
        ),
        refused(
            "sql_mysql_get_lock",
            "SELECT GET_LOCK('hm_my_10', 0)",
            "hm_my_10",
            "function",
            "GET_LOCK",
        ),
        refused(
            "sql_mysql_user_variable_assignment",
            "SELECT @hm_my_11 := 1",
            "hm_my_11",
            "construct",
            "variable",
        ),
        refused(
            "sql_mysql_set_user_variable",
            "SET @hm_my_12 = 1",
            "hm_my_12",
            "not-a-read",
            "SET",
        ),
        refused(
            "sql_mysql_set_transaction_read_write",
            "SET SESSION TRANSACTION READ WRITE",
            "READ WRITE",
            "not-a-read",
            "SET",
        ),
        refused(
            "sql_mysql_handler",
            "HANDLER shop.customers OPEN AS hm_my_18",
            "hm_my_18",
            "not-a-read",
            "HANDLER",
        ),
        // --- business data and system tables --------------------------------------------------
        refused(
            "sql_mysql_business_table",
            "SELECT secret, 'hm_my_14' FROM shop.customers",
            "hm_my_14",
            "relation",
            "shop.customers",
        ),
        refused(
            "sql_mysql_business_table_in_a_union",
            "SELECT 'hm_my_24' UNION SELECT secret FROM shop.customers",
            "hm_my_24",
            "relation",
            "shop.customers",
        ),
        refused(
            "sql_mysql_catalog_query_with_a_blind_exists",
            "SELECT TABLE_NAME, 'hm_my_21' FROM information_schema.TABLES WHERE EXISTS (SELECT 1 FROM shop.customers WHERE secret LIKE 'C%')",
            "hm_my_21",
            "relation",
            "shop.customers",
        ),
        refused(
            "sql_mysql_user_table",
            "SELECT User, authentication_string, 'hm_my_15' FROM mysql.user",
            "hm_my_15",
            "relation",
            "mysql.user",
        ),
        refused(
            "sql_mysql_column_stats",
            "SELECT min_value, max_value, 'hm_my_16' FROM mysql.column_stats",
            "hm_my_16",
            "relation",
            "mysql.column_stats",
        ),
        refused(
            "sql_mysql_processlist",
            "SELECT INFO, 'hm_my_20' FROM information_schema.PROCESSLIST",
            "hm_my_20",
            "relation",
            "information_schema.PROCESSLIST",
        ),
        refused(
            "sql_mysql_user_table_backquoted",
            "SELECT `authentication_string`, 'hm_my_27' FROM `mysql`.`user`",
            "hm_my_27",
            "relation",
            "mysql.user",
        ),
        refused(
            "sql_mysql_load_file_hex_path",
            "SELECT LOAD_FILE(0x2f6574632f706173737764) AS hm_my_28",
            "hm_my_28",
            "construct",
            "hex literal",
        )
        .leak("root:x:0:0"),
        refused(
            "sql_mysql_user_privileges",
            "SELECT GRANTEE, PRIVILEGE_TYPE, 'hm_my_29' FROM information_schema.USER_PRIVILEGES",
            "hm_my_29",
            "relation",
            "information_schema.USER_PRIVILEGES",
        ),
        refused(
            "sql_mysql_for_update",
            "SELECT TABLE_NAME, 'hm_my_30' FROM information_schema.TABLES FOR UPDATE",
            "hm_my_30",
            "construct",
            "FOR UPDATE",
        ),
        refused(
            "sql_mysql_kill",
            "KILL CONNECTION 1",
            "KILL CONNECTION",
            "not-a-read",
            "KILL",
        ),
        refused(
            "sql_mysql_scalar_subquery_of_business_data",
            "SELECT (SELECT secret FROM shop.customers LIMIT 1) AS hm_my_31",
            "hm_my_31",
            "relation",
            "shop.customers",
        ),
        refused(
            "sql_mysql_lowercase_load_file",
            "select load_file('/etc/passwd') as hm_my_32",
            "hm_my_32",
            "function",
            "load_file",
        )
        .leak("root:x:0:0"),
        // --- positive controls ----------------------------------------------------------------
        passes(
            "sql_mysql_information_schema_query_passes",
            "SELECT TABLE_NAME, 'hm_my_ok_1' FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' ORDER BY TABLE_NAME",
            "hm_my_ok_1",
            "customers",
        ),
        passes(
            "sql_mysql_granted_business_table_passes",
            "SELECT secret, 'hm_my_ok_2' FROM shop.customers WHERE id = 1",
            "hm_my_ok_2",
            CANARY,
        )
        .workflow(Workflow::Granted),
        refused(
            "sql_mysql_grant_does_not_open_other_tables",
            "SELECT id, 'hm_my_26' FROM shop.orders",
            "hm_my_26",
            "relation",
            "shop.orders",
        )
        .workflow(Workflow::Granted),
        // --- privileged logins ----------------------------------------------------------------
        refused(
            "sql_mysql_all_privileges_login_without_privileged_flag_is_refused",
            "SELECT TABLE_NAME, 'hm_my_s1' FROM information_schema.TABLES",
            "hm_my_s1",
            "",
            "",
        )
        .login(AdminUnflagged)
        .expect(Expect::LoginRefused(&["ALL PRIVILEGES", "SUPER", "GRANT OPTION"])),
        refused(
            "sql_mysql_file_login_without_privileged_flag_is_refused",
            "SELECT TABLE_NAME, 'hm_my_s2' FROM information_schema.TABLES",
            "hm_my_s2",
            "",
            "",
        )
        .login(FilesUnflagged)
        .expect(Expect::LoginRefused(&["FILE"])),
        passes(
            "sql_mysql_privileged_login_runs_catalog_queries",
            "SELECT TABLE_NAME, 'hm_my_ok_s' FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'",
            "hm_my_ok_s",
            "customers",
        )
        .login(AdminFlagged),
        refused(
            "sql_mysql_privileged_into_outfile",
            "SELECT 'hm_my_s3' INTO OUTFILE '{dir}/hm_my_s3_out'",
            "hm_my_s3",
            "construct",
            "INTO",
        )
        .login(AdminFlagged)
        .no_file("hm_my_s3_out"),
        refused(
            "sql_mysql_privileged_load_file",
            "SELECT LOAD_FILE('/etc/passwd') AS hm_my_s4",
            "hm_my_s4",
            "function",
            "LOAD_FILE",
        )
        .login(AdminFlagged)
        .leak("root:x:0:0"),
        refused(
            "sql_mysql_privileged_drop_table",
            "DROP TABLE shop.hm_my_s5_victim",
            "hm_my_s5_victim",
            "not-a-read",
            "DROP",
        )
        .login(AdminFlagged)
        .admin(
            "hm_my_s5_victim still exists",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'hm_my_s5_victim'",
            "1",
        ),
        refused(
            "sql_mysql_privileged_executable_comment",
            "/*M!100100 DROP TABLE shop.hm_my_s6_victim */",
            "hm_my_s6_victim",
            "comment",
            "/*M!",
        )
        .login(AdminFlagged)
        .admin(
            "hm_my_s6_victim still exists",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'hm_my_s6_victim'",
            "1",
        ),
        refused(
            "sql_mysql_privileged_create_user",
            "CREATE USER hm_my_s7 IDENTIFIED BY 'pw'",
            "hm_my_s7",
            "not-a-read",
            "CREATE",
        )
        .login(AdminFlagged)
        .admin(
            "no user hm_my_s7",
            "SELECT COUNT(*) FROM mysql.user WHERE User = 'hm_my_s7'",
            "0",
        ),
        // --- secrets the server hands back ----------------------------------------------------
        passes(
            "sql_mysql_reflected_password_is_withheld",
            "SELECT TABLE_COMMENT AS hm_my_r1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'hm_reflect_pw'",
            "hm_my_r1",
            "[airlock:secret-withheld]",
        )
        .reflects(READER_PW),
        passes(
            "sql_mysql_reflected_native_verifier_is_withheld",
            "SELECT TABLE_COMMENT AS hm_my_r2 FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'hm_reflect_native'",
            "hm_my_r2",
            "[airlock:secret-withheld]",
        )
        .reflects(&mysql_native_verifier(READER_PW)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_attacks_never_reach_the_server() {
    let target = My::start();
    run_all(&target, my_cases()).await;
}

// ---------------------------------------------------------------------------------------------
// SQLite (the authorizer; no server, so no log)

fn sqlite_cases() -> Vec<SqlCase> {
    vec![
        refused(
            "sql_sqlite_attach",
            "ATTACH DATABASE '{dir}/hm_sq_01.db' AS hm",
            "hm_sq_01",
            "not-a-read",
            "Attach",
        )
        .no_file("hm_sq_01.db"),
        refused(
            "sql_sqlite_vacuum_into",
            "VACUUM INTO '{dir}/hm_sq_02.db'",
            "hm_sq_02",
            "not-a-read",
            "VACUUM",
        )
        .no_file("hm_sq_02.db"),
        refused(
            "sql_sqlite_load_extension",
            "SELECT load_extension('{dir}/hm_sq_03.so')",
            "hm_sq_03",
            "function",
            "load_extension",
        ),
        refused(
            "sql_sqlite_business_table",
            "SELECT secret FROM customers",
            "hm_sq_04",
            "relation",
            "main.customers",
        ),
        refused(
            "sql_sqlite_drop_table",
            "DROP TABLE customers",
            "hm_sq_05",
            // SQLite asks its authorizer about deleting the table's schema row first.
            "not-a-read",
            "Delete",
        )
        .admin(
            "customers still exists",
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'customers'",
            "1",
        ),
        refused(
            "sql_sqlite_view_over_a_business_table",
            "SELECT secret FROM v_customers",
            "hm_sq_08",
            "relation",
            "main.customers",
        ),
        refused(
            "sql_sqlite_cte_over_a_business_table",
            "WITH c AS (SELECT secret FROM customers) SELECT secret FROM c",
            "hm_sq_11",
            "relation",
            "main.customers",
        ),
        refused(
            "sql_sqlite_recursive_cte_over_a_business_table",
            "WITH RECURSIVE c(x, n) AS (SELECT secret, 1 FROM customers UNION ALL SELECT x, n + 1 FROM c WHERE n < 2) SELECT x FROM c",
            "hm_sq_12",
            "relation",
            "main.customers",
        ),
        refused(
            "sql_sqlite_dbstat",
            "SELECT name, pgsize FROM dbstat",
            "hm_sq_13",
            "relation",
            "main.dbstat",
        ),
        refused(
            "sql_sqlite_insert",
            "INSERT INTO orders VALUES (1)",
            "hm_sq_09",
            "not-a-read",
            "Insert",
        )
        .admin("orders is still empty", "SELECT COUNT(*) FROM orders", "0"),
        refused(
            "sql_sqlite_query_only_off",
            "PRAGMA query_only = 0",
            "hm_sq_10",
            "not-a-read",
            "PRAGMA query_only",
        ),
        refused(
            "sql_sqlite_writable_schema",
            "PRAGMA writable_schema = 1",
            "hm_sq_06",
            "not-a-read",
            "PRAGMA writable_schema",
        ),
        passes(
            "sql_sqlite_catalog_query_passes",
            "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
            "hm_sq_ok_1",
            "customers",
        ),
        passes(
            "sql_sqlite_pragma_table_info_passes",
            "SELECT name FROM pragma_table_info('customers') ORDER BY cid",
            "hm_sq_ok_3",
            "secret",
        ),
        passes(
            "sql_sqlite_granted_business_table_passes",
            "SELECT secret FROM customers",
            "hm_sq_ok_2",
            CANARY,
        )
        .workflow(Workflow::Granted),
        refused(
            "sql_sqlite_grant_does_not_open_other_tables",
            "SELECT id FROM orders",
            "hm_sq_07",
            "relation",
            "main.orders",
        )
        .workflow(Workflow::Granted),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_attacks_are_refused_by_the_authorizer() {
    let target = Lite::start();
    run_all(&target, sqlite_cases()).await;
}
