//! The catalog formats against the catalogs' own tools (see `scripts/setup-catalogs`), on
//! SQLite, PostgreSQL and MariaDB databases with views, foreign keys, comments and non-ASCII
//! names:
//! - `airlock export --format datahub` writes a file that the real `datahub ingest` reads
//!   without error into a `file` sink and into its embedded `datahub-lite` store, and DataHub's
//!   own source, run on the same database, produces the same dataset and container URNs and
//!   the same field paths;
//! - `airlock export --format openmetadata` writes create requests that OpenMetadata's own
//!   models (openmetadata-ingestion) accept, whose FQN references all resolve.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use airlock_tests::catalogs::{openmetadata_validate, Datahub, Entities};
use airlock_tests::mariadb::MariaDb;
use airlock_tests::postgres::PgCluster;
use airlock_tests::{airlock_command, plugin, run_in, runtime, verify_run_dir, Home, Workspace};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ran(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Exports the run to `<ws>/airlock-datahub.json` with `extra` arguments; returns the path.
fn export(ws: &Workspace, run_dir: &Path, extra: &[&str]) -> PathBuf {
    let out = ws.path().join("airlock-datahub.json");
    let mut cmd = airlock_command(ws);
    cmd.args(["export", "--format", "datahub"])
        .arg(run_dir)
        .arg(&out)
        .args(extra);
    assert_ran(&cmd.output().unwrap(), "airlock export");
    out
}

/// Exports the run as OpenMetadata requests of service `svc.local` (a dotted service name,
/// quoted in every FQN), validates them with OpenMetadata's models, and returns them.
fn openmetadata(ws: &Workspace, run_dir: &Path) -> serde_json::Value {
    let out = ws.path().join("airlock-openmetadata.json");
    let mut cmd = airlock_command(ws);
    cmd.args([
        "export",
        "--format",
        "openmetadata",
        "--service",
        "svc.local",
    ])
    .arg(run_dir)
    .arg(&out);
    assert_ran(
        &cmd.output().unwrap(),
        "airlock export --format openmetadata",
    );
    let (ok, report) = openmetadata_validate(&out);
    assert!(ok, "OpenMetadata's models refuse the requests:\n{report}");
    assert!(report.contains(" 0 failed"), "{report}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// The table request named `name` in `requests`.
fn om_table<'a>(requests: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    requests["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {requests}"))
}

/// Ingests `file` into a file sink and into datahub-lite; checks both hold what it holds.
fn ingest_everywhere(dh: &Datahub, ws: &Workspace, file: &Path) -> Entities {
    let ours = Entities::read(file);
    let home = ws.path().join("datahub-home");
    let copy = ws.path().join("ingested.json");
    let out = dh.ingest(
        &format!(
            "source:\n  type: file\n  config:\n    path: \"{}\"\nsink:\n  type: file\n  config:\n    filename: \"{}\"\n",
            file.display(),
            copy.display()
        ),
        &home,
    );
    assert_ran(&out, "datahub ingest (file -> file)");
    let ingested = Entities::read(&copy);
    assert_eq!(ingested, ours, "the file sink holds what airlock wrote");

    let lite = ws.path().join("lite.sqlite");
    let out = dh.ingest(
        &format!(
            "source:\n  type: file\n  config:\n    path: \"{}\"\nsink:\n  type: datahub-lite\n  config:\n    type: sqlite\n    config:\n      file: \"{}\"\n",
            file.display(),
            lite.display()
        ),
        &home,
    );
    assert_ran(&out, "datahub ingest (file -> datahub-lite)");
    let conn = rusqlite::Connection::open(&lite).unwrap();
    let mut stmt = conn
        .prepare("SELECT DISTINCT urn FROM metadata_aspect_v2")
        .unwrap();
    let stored: BTreeSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for entity in ["dataset", "container"] {
        let missing: Vec<_> = ours.of(entity).difference(&stored).cloned().collect();
        assert!(missing.is_empty(), "datahub-lite lacks {missing:?}");
    }
    // Field paths as datahub-lite stores them.
    let mut stmt = conn
        .prepare("SELECT urn, metadata FROM metadata_aspect_v2 WHERE aspect_name = 'schemaMetadata' AND version = 0")
        .unwrap();
    let stored_fields: std::collections::BTreeMap<String, Vec<String>> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(urn, meta)| {
            let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
            let paths = meta["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["fieldPath"].as_str().unwrap().to_string())
                .collect();
            (urn, paths)
        })
        .collect();
    assert_eq!(stored_fields, ours.fields, "datahub-lite's field paths");
    ours
}

/// Runs DataHub's own source (`source` YAML) into a file; returns what it wrote.
fn datahubs_own(dh: &Datahub, ws: &Workspace, source: &str) -> Entities {
    let file = ws.path().join("datahub-own.json");
    let out = dh.ingest(
        &format!(
            "{source}sink:\n  type: file\n  config:\n    filename: \"{}\"\n",
            file.display()
        ),
        &ws.path().join("datahub-home"),
    );
    assert_ran(&out, "DataHub's own source");
    Entities::read(&file)
}

/// A workflow reading a server at `endpoint` with `plugin` as the credential `guid`, in
/// plain TCP (the test servers), `sink_extra` appended to its `[sink]`.
fn server_config(
    ws: &Workspace,
    plugin_name: &str,
    endpoint: &str,
    databases: &str,
    guid: &str,
    sink_extra: &str,
) -> airlock::config::LoadedConfig {
    ws.config(&format!(
        "[source]\nplugin = \"{}\"\nendpoint = \"{endpoint}\"\n{databases}\ncredential = \"{guid}\"\n\
         tls = {{ mode = \"disable\", allow_cleartext_password = true }}\n\n\
         [sink]\nkind = \"local\"\ndir = \"out\"\n{sink_extra}",
        plugin(plugin_name).display(),
    ))
}

/// Runs `cfg`, exports the run for DataHub (`export_args`), ingests it into a file and
/// datahub-lite, runs DataHub's own `source` on the same database and compares the two;
/// returns the run and what airlock's file holds.
async fn run_and_compare_with_datahub(
    dh: &Datahub,
    ws: &Workspace,
    home: &Home,
    cfg: &airlock::config::LoadedConfig,
    export_args: &[&str],
    source: &str,
) -> (airlock::run::RunReport, Entities) {
    let report = run_in(&runtime(), cfg, home).await.expect("run succeeds");
    verify_run_dir(&report.output_dir);
    let file = export(ws, &report.output_dir, export_args);
    let ours = ingest_everywhere(dh, ws, &file);
    let theirs = datahubs_own(dh, ws, source);
    assert_same_entities(&ours, &theirs);
    (report, ours)
}

/// The comparison the issue asks for: the same dataset and container URNs, the same fields.
fn assert_same_entities(ours: &Entities, theirs: &Entities) {
    assert!(
        !theirs.of("dataset").is_empty(),
        "DataHub's source found nothing"
    );
    assert_eq!(ours.of("dataset"), theirs.of("dataset"), "dataset URNs");
    assert_eq!(
        ours.of("container"),
        theirs.of("container"),
        "container URNs"
    );
    assert_eq!(ours.fields, theirs.fields, "field paths per dataset");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_output_is_what_datahubs_sqlalchemy_source_sees() {
    let dh = Datahub::find();
    let ws = Workspace::new();
    let db = ws.path().join("shop.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            r#"
            CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, "Full Name" TEXT);
            CREATE TABLE "café_é" (id INTEGER PRIMARY KEY, "naïve" BOOLEAN, customer_id INTEGER,
              CONSTRAINT fk_cafe_customer FOREIGN KEY (customer_id) REFERENCES customers(id));
            CREATE TABLE order_lines (order_id INTEGER, line INTEGER, qty NUMERIC(10, 2),
              PRIMARY KEY (order_id, line));
            CREATE INDEX ix_lines_qty ON order_lines (qty);
            CREATE VIEW big_lines AS SELECT order_id, qty FROM order_lines WHERE qty > 10;
            "#,
        )
        .unwrap();
    let home = Home::new(ws.path());
    let cfg = ws.config_for(&plugin("sqlite"), "shop.db", "");
    // DataHub keys a SQLite database by the path in its connection URI.
    let path = db.canonicalize().unwrap().display().to_string();
    let (report, ours) = run_and_compare_with_datahub(
        &dh,
        &ws,
        &home,
        &cfg,
        &["--sqlite-database", &path],
        &format!(
            "source:\n  type: sqlalchemy\n  config:\n    platform: sqlite\n    connect_uri: \"sqlite:///{path}\"\n    include_view_lineage: false\n"
        ),
    )
    .await;
    assert!(ours
        .of("dataset")
        .contains("urn:li:dataset:(urn:li:dataPlatform:sqlite,main.café_é,PROD)"));

    // The sink option writes the same file into the run itself, listed in its manifest.
    let cfg = ws.config_for(
        &plugin("sqlite"),
        "shop.db",
        &format!("format = \"datahub\"\n\n[sink.catalog]\nsqlite_database = \"{path}\"\n"),
    );
    let again = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    let manifest = verify_run_dir(&again.output_dir);
    assert_eq!(manifest["exports"][0]["path"], "datahub.json", "{manifest}");
    let inside = again.output_dir.join("datahub.json");
    assert_eq!(Entities::read(&inside), ours, "the run's own datahub.json");
    ingest_everywhere(&dh, &ws, &inside);

    let om = openmetadata(&ws, &report.output_dir);
    let cafe = om_table(&om, "café_é");
    assert_eq!(cafe["databaseSchema"], "\"svc.local\".shop.main");
    assert_eq!(
        cafe["tableConstraints"][0]["referredColumns"],
        serde_json::json!(["\"svc.local\".shop.main.customers.id"])
    );
    assert_eq!(om_table(&om, "big_lines")["tableType"], "View");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_output_is_what_datahubs_postgres_source_sees() {
    let dh = Datahub::find();
    let pg = PgCluster::start();
    pg.create_database("shop");
    pg.psql(
        "shop",
        r#"
        CREATE SCHEMA sales;
        CREATE SCHEMA "Inventar_ü";
        COMMENT ON SCHEMA sales IS 'Orders';
        CREATE TABLE sales.customers (id bigint PRIMARY KEY, email text NOT NULL, "Full Name" varchar(200), tags text[], created timestamptz DEFAULT now());
        COMMENT ON TABLE sales.customers IS 'People who buy';
        COMMENT ON COLUMN sales.customers.email IS 'Login e-mail';
        CREATE TABLE "Inventar_ü"."café_é" (sku char(12) PRIMARY KEY, "naïve" boolean, payload jsonb, customer_id bigint REFERENCES sales.customers(id));
        CREATE TABLE sales.order_lines (order_id bigint, line int, qty numeric(10,2), PRIMARY KEY (order_id, line));
        CREATE VIEW sales.big_lines AS SELECT order_id, qty FROM sales.order_lines WHERE qty > 10;
        CREATE MATERIALIZED VIEW sales.line_counts AS SELECT order_id, count(*) AS n FROM sales.order_lines GROUP BY order_id;
        CREATE TABLE public."MixedCase" ("ID" int);
        "#,
    );
    pg.create_user("reader", "reader-pw");
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", "reader-pw", &[&pg.endpoint()]);
    let cfg = server_config(
        &ws,
        "postgres",
        &pg.endpoint(),
        "database = \"shop\"",
        &guid,
        "",
    );
    let (report, ours) = run_and_compare_with_datahub(
        &dh,
        &ws,
        &home,
        &cfg,
        &[],
        &format!(
            "source:\n  type: postgres\n  config:\n    host_port: \"{}\"\n    database: shop\n    username: reader\n    password: reader-pw\n    include_view_lineage: false\n",
            pg.endpoint()
        ),
    )
    .await;
    assert!(ours
        .of("dataset")
        .contains("urn:li:dataset:(urn:li:dataPlatform:postgres,shop.Inventar_ü.café_é,PROD)"));
    // The container GUIDs are DataHub's: shop's is the one DataHub's own code computes.
    assert!(ours
        .of("container")
        .contains("urn:li:container:ea3682d9b15a15aab92e076074c2394c"));

    let om = openmetadata(&ws, &report.output_dir);
    let customers = om_table(&om, "customers");
    assert_eq!(customers["description"], "People who buy");
    let email = &customers["columns"][1];
    assert_eq!(
        (&email["name"], &email["dataType"], &email["constraint"]),
        (
            &serde_json::json!("email"),
            &serde_json::json!("TEXT"),
            &serde_json::json!("NOT_NULL")
        )
    );
    assert_eq!(customers["columns"][0]["constraint"], "PRIMARY_KEY");
    let name = &customers["columns"][2];
    assert_eq!(
        (&name["dataType"], &name["dataLength"]),
        (&serde_json::json!("VARCHAR"), &serde_json::json!(200))
    );
    assert_eq!(customers["columns"][3]["arrayDataType"], "TEXT");
    let lines = om_table(&om, "order_lines");
    assert_eq!(
        lines["tableConstraints"][0]["constraintType"],
        "PRIMARY_KEY"
    );
    assert_eq!(
        om_table(&om, "line_counts")["tableType"],
        "MaterializedView"
    );
    assert!(om_table(&om, "big_lines")["schemaDefinition"]
        .as_str()
        .unwrap()
        .contains("order_lines"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_output_is_what_datahubs_mysql_source_sees() {
    let dh = Datahub::find();
    let server = MariaDb::start();
    server.sql(
        "CREATE DATABASE shop; CREATE DATABASE `Lager_ü`;\n\
         CREATE TABLE shop.customers (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(200) NOT NULL COMMENT 'Login e-mail', \
           created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP) COMMENT 'People who buy';\n\
         CREATE TABLE `Lager_ü`.`café_é` (sku CHAR(12) PRIMARY KEY, `naïve` TINYINT(1), customer_id INT, \
           kind ENUM('a','b'), CONSTRAINT `café_kunde` FOREIGN KEY (customer_id) REFERENCES shop.customers(id));\n\
         CREATE TABLE shop.order_lines (order_id INT, line INT, qty DECIMAL(10,2), doubled INT AS (line * 2) VIRTUAL, PRIMARY KEY (order_id, line));\n\
         CREATE VIEW shop.big_lines AS SELECT order_id, qty FROM shop.order_lines WHERE qty > 10;\n\
         CREATE USER dh@'%' IDENTIFIED BY 'dh-pw'; GRANT ALL ON *.* TO dh@'%';\n",
    );
    server.create_user("reader", "reader-pw");
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", "reader-pw", &[&server.address()]);
    let every = "databases = [\"*\"]";
    let cfg = server_config(&ws, "mysql", &server.address(), every, &guid, "");
    let (report, ours) = run_and_compare_with_datahub(
        &dh,
        &ws,
        &home,
        &cfg,
        &[],
        &format!(
            "source:\n  type: mysql\n  config:\n    host_port: \"{}\"\n    username: dh\n    password: dh-pw\n    include_view_lineage: false\n    database_pattern:\n      deny: [\"information_schema\", \"mysql\", \"performance_schema\", \"sys\"]\n",
            server.address()
        ),
    )
    .await;
    assert!(ours
        .of("dataset")
        .contains("urn:li:dataset:(urn:li:dataPlatform:mysql,Lager_ü.café_é,PROD)"));

    // OpenMetadata reads MySQL's databases as schemas of the database `default`.
    let om = openmetadata(&ws, &report.output_dir);
    // The sink option writes the same requests into the run itself.
    let cfg = server_config(
        &ws,
        "mysql",
        &server.address(),
        every,
        &guid,
        "format = \"openmetadata\"\n\n[sink.catalog]\nservice = \"svc.local\"\n",
    );
    let again = run_in(&runtime(), &cfg, &home).await.expect("run succeeds");
    verify_run_dir(&again.output_dir);
    let inside = again.output_dir.join("openmetadata.json");
    let (ok, report) = openmetadata_validate(&inside);
    assert!(ok, "{report}");
    let inside: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&inside).unwrap()).unwrap();
    assert_eq!(inside["tables"], om["tables"]);
    let cafe = om_table(&om, "café_é");
    assert_eq!(cafe["databaseSchema"], "\"svc.local\".default.Lager_ü");
    assert_eq!(cafe["columns"][3]["dataType"], "ENUM");
}

#[test]
fn export_refuses_a_run_that_does_not_validate() {
    let ws = Workspace::new();
    let run = ws.path().join("not-a-run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("manifest.json"), "{}").unwrap();
    let out = ws.path().join("x.json");
    let result = airlock_command(&ws)
        .args(["export", "--format", "datahub"])
        .arg(&run)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    assert!(
        text(&result.stderr).contains("does not validate"),
        "{}",
        text(&result.stderr)
    );
    assert!(!out.exists(), "nothing written");
}

// ---------------------------------------------------------------------------------------
// Removals that are never wrong

/// The manifest's `changes` of a published run (which must verify).
fn changes(run_dir: &Path) -> serde_json::Value {
    verify_run_dir(run_dir)["changes"].clone()
}

fn tables_db(path: &Path, n: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for i in 0..n {
        conn.execute_batch(&format!("CREATE TABLE t{i} (id INTEGER PRIMARY KEY);"))
            .unwrap();
    }
}

fn drop_tables(path: &Path, names: &[&str]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for n in names {
        conn.execute_batch(&format!("DROP TABLE {n};")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_table_is_removed_in_the_manifest_and_in_both_catalogs() {
    let dh = Datahub::find();
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let db = ws.path().join("lib.db");
    tables_db(&db, 10);
    let cfg = ws.config_for(&plugin("sqlite"), "lib.db", "");
    let rt = runtime();
    let first = run_in(&rt, &cfg, &home).await.expect("first run");
    let c = changes(&first.output_dir);
    assert!(c["compared_with"].is_null(), "{c}");
    assert!(
        c["removals_suppressed"]
            .as_str()
            .unwrap()
            .contains("baseline"),
        "{c}"
    );
    assert_eq!(
        c["added_count"], 12,
        "a database, a schema and ten tables: {c}"
    );

    drop_tables(&db, &["t3"]);
    let second = run_in(&rt, &cfg, &home).await.expect("second run");
    let c = changes(&second.output_dir);
    assert_eq!(c["compared_with"], first.manifest.run_id.as_str(), "{c}");
    assert_eq!(
        c["removed"],
        serde_json::json!([{"kind": "table", "name": "lib.main.t3"}]),
        "{c}"
    );
    assert!(c.get("removals_suppressed").is_none(), "{c}");

    // DataHub marks it removed; DataHub ingests the file.
    let path = db.canonicalize().unwrap().display().to_string();
    let file = export(&ws, &second.output_dir, &["--sqlite-database", &path]);
    let ours = ingest_everywhere(&dh, &ws, &file);
    assert_eq!(
        ours.removed.iter().collect::<Vec<_>>(),
        ["urn:li:dataset:(urn:li:dataPlatform:sqlite,main.t3,PROD)"]
    );
    // OpenMetadata gets a deletion by FQN.
    let om = openmetadata(&ws, &second.output_dir);
    assert_eq!(
        om["deletions"],
        serde_json::json!([{"entity": "table", "fullyQualifiedName": "\"svc.local\".lib.main.t3"}])
    );

    // A failed run in between is not compared with: the next compares with the last
    // complete run.
    let away = ws.path().join("lib.db.away");
    std::fs::rename(&db, &away).unwrap();
    run_in(&rt, &cfg, &home)
        .await
        .expect_err("the database file is missing");
    std::fs::rename(&away, &db).unwrap();
    drop_tables(&db, &["t5"]);
    let fourth = run_in(&rt, &cfg, &home).await.expect("fourth run");
    let c = changes(&fourth.output_dir);
    assert_eq!(c["compared_with"], second.manifest.run_id.as_str(), "{c}");
    assert_eq!(
        c["removed"],
        serde_json::json!([{"kind": "table", "name": "lib.main.t5"}]),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_half_the_tables_suppresses_removals_until_the_share_allows_them() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let db = ws.path().join("lib.db");
    tables_db(&db, 10);
    let cfg = ws.config_for(&plugin("sqlite"), "lib.db", "");
    let rt = runtime();
    let first = run_in(&rt, &cfg, &home).await.expect("first run");
    drop_tables(&db, &["t0", "t1", "t2", "t3", "t4"]);
    for _ in 0..2 {
        let run = run_in(&rt, &cfg, &home).await.expect("a run");
        let c = changes(&run.output_dir);
        // Compared with the first run each time: a held-back removal is not forgotten.
        assert_eq!(c["compared_with"], first.manifest.run_id.as_str(), "{c}");
        assert_eq!(c["removed_count"], 0, "{c}");
        assert!(
            c["removals_suppressed"]
                .as_str()
                .unwrap()
                .contains("changes.max_removed_share = 0.2"),
            "{c}"
        );
    }
    // The operator confirms: a share that allows 5 of 12.
    let cfg = ws.config_for(
        &plugin("sqlite"),
        "lib.db",
        "[changes]\nmax_removed_share = 0.5\n",
    );
    let run = run_in(&rt, &cfg, &home).await.expect("confirmed run");
    let c = changes(&run.output_dir);
    assert_eq!(c["removed_count"], 5, "{c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_under_a_schema_the_plugin_could_not_read_is_removed() {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let suite = |options: &str| {
        ws.config_for(
            &plugin("hostile-suite"),
            "none",
            &format!("[source.options]\nmode = \"partly-unreadable\"\n{options}"),
        )
    };
    let rt = runtime();
    run_in(&rt, &suite(""), &home).await.expect("first run");
    // Schema b could not be read (its tables are missing), and a.t0 is gone.
    let second = run_in(&rt, &suite("unreadable_b = true\ndrop_a = 1\n"), &home)
        .await
        .expect("second run");
    let c = changes(&second.output_dir);
    assert_eq!(
        c["removed"],
        serde_json::json!([{"kind": "table", "name": "db.a.t0"}]),
        "{c}"
    );
    assert_eq!(c["kept_under_unreadable"], 5, "{c}");
    let schemas = airlock_tests::read_jsonl(&second.output_dir, "schema");
    let b = schemas
        .iter()
        .find(|s| s["qualified_name"] == "db.b")
        .unwrap();
    assert_eq!(
        b["attributes"]["unreadable"],
        "permission denied for schema b"
    );
    // Read again: b's tables were kept for comparison, so nothing is added or removed.
    let third = run_in(&rt, &suite("drop_a = 1\n"), &home)
        .await
        .expect("third run");
    let c = changes(&third.output_dir);
    assert_eq!(c["compared_with"], second.manifest.run_id.as_str(), "{c}");
    assert_eq!(
        (c["added_count"].clone(), c["removed_count"].clone()),
        (0.into(), 0.into()),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn airlock_validate_passes_a_published_run_and_lists_what_is_wrong_with_a_tampered_one() {
    let ws = Workspace::new();
    let db = ws.path().join("lib.db");
    tables_db(&db, 3);
    let cfg = ws.config_for(&plugin("sqlite"), "lib.db", "");
    let report = run_in(&runtime(), &cfg, &Home::new(ws.path()))
        .await
        .expect("run succeeds");
    let validate = |dir: &Path| {
        airlock_command(&ws)
            .arg("validate")
            .arg(dir)
            .output()
            .unwrap()
    };
    let ok = validate(&report.output_dir);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(
        text(&ok.stdout).contains("assets checked against asset contract 1.0"),
        "{}",
        text(&ok.stdout)
    );
    // A line given an attribute outside the contract, and a file nobody listed.
    let tables = report.output_dir.join("table.jsonl");
    let edited = std::fs::read_to_string(&tables).unwrap().replacen(
        "\"attributes\":{",
        "\"attributes\":{\"smuggled\":1,",
        1,
    );
    std::fs::write(&tables, edited).unwrap();
    std::fs::write(report.output_dir.join("extra.txt"), "x").unwrap();
    let bad = validate(&report.output_dir);
    assert_eq!(bad.status.code(), Some(1));
    let problems = text(&bad.stderr);
    for says in [
        "table.jsonl: SHA-256",
        "table.jsonl:1: table lib.main.t0: an attribute key the contract does not name",
        "`extra.txt` is in the run directory but not in the manifest",
    ] {
        assert!(problems.contains(says), "{says}:\n{problems}");
    }
}
