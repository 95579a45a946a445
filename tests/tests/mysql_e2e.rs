//! The MySQL driver and plugin against a real MariaDB server the test starts on 127.0.0.1.
//!
//! - The host driver directly: TLS modes against certificates generated here, authentication
//!   errors that never show the password, the read-only session, timeouts, streaming.
//! - The plugin end to end through the host: a schema of 60+ tables with quoted, mixed-case
//!   and non-ASCII names, reserved words, cross-database foreign keys, comments and views,
//!   compared exactly with what the server's own `information_schema` reports (queried
//!   independently through the `mariadb` client), with and without pushed-down filters; and
//!   no trace of the password anywhere in the workspace afterwards.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use airlock::capabilities::sql::mysql::MysqlDb;
use airlock::capabilities::sql::{ConnectParams, DbValue, SqlError, TlsMode, TlsSettings};
use airlock::config::FilterConfig;
use airlock::pipeline::asset::AssetKind;
use airlock::pipeline::filter::FilterPolicy;
use airlock::secrets::SecretString;
use airlock_tests::mariadb::{ident, quote, MariaDb};
use airlock_tests::{
    all_files, plugin, read_jsonl, run_in, runtime, verify_run_dir, Home, Workspace,
};
use serde_json::{json, Value};

/// The reader's password; the canary searched for after every end-to-end run. It has
/// characters that base64, hex and URL encoding all change.
const PASSWORD: &str = "Canary+pw/7f3a 9c2e?&ü'\"";

// ---------------------------------------------------------------------------------------
// Certificates

/// A CA and a server certificate (for `names`) it issued, as PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mariadb test server");
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------
// The driver, directly

fn params(server: &MariaDb, user: &str, password: &str, tls: TlsSettings) -> ConnectParams {
    ConnectParams {
        host: "127.0.0.1".into(),
        addr: None,
        port: server.port(),
        database: None,
        user: user.into(),
        password: SecretString::new(password.to_string()),
        tls,
        connect_timeout: Duration::from_secs(10),
    }
}

fn tls(mode: TlsMode, ca_file: Option<&Path>) -> TlsSettings {
    TlsSettings {
        mode,
        ca_file: ca_file.map(Path::to_path_buf),
        allow_cleartext_password: false,
    }
}

async fn all_rows(db: &MysqlDb, sql: &str, params: Vec<DbValue>) -> Vec<Vec<DbValue>> {
    let mut rows = db
        .query(sql.to_string(), params, Duration::from_secs(30), &budget())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    while let Some(batch) = rows.next_batch(1000, 1 << 20).await.unwrap() {
        out.extend(batch);
    }
    out
}

async fn connect_err(p: &ConnectParams) -> SqlError {
    match MysqlDb::connect(p).await {
        Ok(_) => panic!("connection should fail"),
        Err(e) => e,
    }
}

fn assert_no_password(message: &str) {
    assert!(
        !message.contains(PASSWORD) && !message.contains("Canary"),
        "message leaks the password: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_verify_full_reads_over_tls_in_a_read_only_session() {
    let pki = pki(&["localhost", "127.0.0.1"]);
    let server = MariaDb::start_tls(&pki.ca, &pki.cert, &pki.key);
    server.create_user("reader", PASSWORD);
    server.sql(
        "CREATE DATABASE shop;\nCREATE SEQUENCE shop.order_seq;\n\
         CREATE TABLE shop.t (id INT PRIMARY KEY, d DATE, ts DATETIME(3), b VARBINARY(4), \
         n DECIMAL(20,4), u BIGINT UNSIGNED, f DOUBLE, tm TIME);\n\
         INSERT INTO shop.t VALUES (1, '2024-02-29', '2024-02-29 13:05:09.120', x'ff00', \
         12345678901234.5678, 18446744073709551615, 1.5, '-26:03:04');\n\
         GRANT ALL ON shop.* TO 'reader'@'%';",
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let db = MysqlDb::connect(&params(
        &server,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyFull, Some(&ca)),
    ))
    .await
    .expect("verify-full with the right CA connects");

    // TLS really is in use, and the session is read-only.
    let cipher = all_rows(&db, "SHOW SESSION STATUS LIKE 'Ssl_cipher'", vec![]).await;
    assert!(
        matches!(&cipher[0][1], DbValue::Text(c) if !c.is_empty()),
        "no TLS cipher: {cipher:?}"
    );
    let ro = all_rows(&db, "SELECT @@session.tx_read_only", vec![]).await;
    assert_eq!(ro, vec![vec![DbValue::Int(1)]]);

    // Parameters bind, and every value type converts.
    let rows = all_rows(
        &db,
        "SELECT id, d, ts, b, n, u, f, tm, NULL AS z, ? AS p FROM shop.t WHERE id = ?",
        vec![DbValue::Text("ü".into()), DbValue::Int(1)],
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            DbValue::Int(1),
            DbValue::Text("2024-02-29".into()),
            DbValue::Text("2024-02-29 13:05:09.120000".into()),
            DbValue::Bytes(vec![0xff, 0x00]),
            DbValue::Text("12345678901234.5678".into()),
            DbValue::Text("18446744073709551615".into()),
            DbValue::Float(1.5),
            DbValue::Text("-26:03:04".into()),
            DbValue::Null,
            DbValue::Text("ü".into()),
        ]]
    );

    // Writes are refused: by the statement check, and by the server for a reading statement
    // that writes (NEXTVAL advances a sequence) even though the user may write.
    for write in [
        "INSERT INTO shop.t (id) VALUES (2)",
        "SET SESSION TRANSACTION READ WRITE",
        "/*!50000 DROP TABLE shop.t */",
    ] {
        match db
            .query(write.into(), vec![], Duration::from_secs(5), &budget())
            .await
        {
            Err(SqlError::Denied(_)) => {}
            Err(other) => panic!("{write}: {other:?}"),
            Ok(_) => panic!("{write} was allowed"),
        }
    }
    match db
        .query(
            "SELECT NEXTVAL(shop.order_seq)".into(),
            vec![],
            Duration::from_secs(5),
            &budget(),
        )
        .await
    {
        Err(SqlError::Denied(m)) => assert!(m.contains("READ ONLY"), "{m}"),
        Err(other) => panic!("NEXTVAL: {other:?}"),
        Ok(_) => panic!("NEXTVAL ran in a read-only session"),
    }

    // A statement that runs past its timeout is stopped by the server.
    let started = std::time::Instant::now();
    let result = db
        .query(
            "SELECT SUM(seq % 7) FROM shop.seq_1_to_100000000000".into(),
            vec![],
            Duration::from_secs(1),
            &budget(),
        )
        .await;
    let err = match result {
        Err(e) => e,
        Ok(mut rows) => rows
            .next_batch(10, 1 << 20)
            .await
            .expect_err("timeout while streaming"),
    };
    assert!(matches!(err, SqlError::Limit(_)), "{err:?}");
    // Bounded, not timed: the 1 s timeout must not turn into a hang.
    assert!(started.elapsed() < Duration::from_secs(30));

    // Large results stream, and the session is usable after rows are dropped half-read.
    let mut rows = db
        .query(
            "SELECT seq, REPEAT('x', 50) AS pad FROM shop.seq_1_to_100000".into(),
            vec![],
            Duration::from_secs(30),
            &budget(),
        )
        .await
        .unwrap();
    let first = rows.next_batch(10, 1 << 20).await.unwrap().unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0][0], DbValue::Int(1));
    drop(rows);
    let count = all_rows(&db, "SELECT seq FROM shop.seq_1_to_100000", vec![]).await;
    assert_eq!(count.len(), 100_000);
    assert_eq!(count[99_999], vec![DbValue::Int(100_000)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_wrong_password_is_an_authentication_error_without_the_password() {
    let server = MariaDb::start();
    server.create_user("reader", "the-right-password");
    let mut p = params(
        &server,
        "reader",
        PASSWORD,
        TlsSettings {
            mode: TlsMode::Disable,
            ca_file: None,
            allow_cleartext_password: true,
        },
    );
    match connect_err(&p).await {
        SqlError::Denied(m) => {
            assert!(m.contains("authentication failed for user reader"), "{m}");
            assert_no_password(&m);
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    // The right password works on the same (TLS-less) server when cleartext is allowed.
    p.password = SecretString::new("the-right-password".into());
    let db = MysqlDb::connect(&p).await.expect("right password logs in");
    assert_eq!(
        all_rows(&db, "SELECT CURRENT_USER()", vec![]).await,
        vec![vec![DbValue::Text("reader@%".into())]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_refuses_cleartext_login_unless_allowed() {
    let server = MariaDb::start();
    server.create_user("reader", PASSWORD);
    let p = params(&server, "reader", PASSWORD, tls(TlsMode::Disable, None));
    match connect_err(&p).await {
        SqlError::Denied(m) => {
            assert!(m.contains("allow_cleartext_password"), "{m}");
            assert_no_password(&m);
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    // Asking for TLS from a server without TLS fails rather than falling back.
    let p = params(&server, "reader", PASSWORD, tls(TlsMode::Require, None));
    match connect_err(&p).await {
        SqlError::Unavailable(m) => {
            assert!(m.contains("does not support TLS"), "{m}");
            assert_no_password(&m);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_checks_the_certificate_as_the_mode_says() {
    // The server's certificate names another host, issued by `right`.
    let right = pki(&["db.internal.example"]);
    let wrong = pki(&["localhost", "127.0.0.1"]);
    let server = MariaDb::start_tls(&right.ca, &right.cert, &right.key);
    server.create_user("reader", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let right_ca = write(dir.path(), "right.pem", &right.ca);
    let wrong_ca = write(dir.path(), "wrong.pem", &wrong.ca);
    let not_pem = write(dir.path(), "not.pem", "hello");

    // verify-full: a certificate from another CA fails ...
    let p = params(
        &server,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyFull, Some(&wrong_ca)),
    );
    match connect_err(&p).await {
        SqlError::Unavailable(m) => {
            assert!(m.contains("certificate"), "{m}");
            assert!(m.contains("TLS"), "{m}");
            assert_no_password(&m);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // ... and so does the right CA when the name does not match.
    let p = params(
        &server,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyFull, Some(&right_ca)),
    );
    match connect_err(&p).await {
        SqlError::Unavailable(m) => assert!(m.contains("not valid for name"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // verify-ca: the chain must be right, the name is not checked.
    let p = params(
        &server,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyCa, Some(&wrong_ca)),
    );
    assert!(matches!(connect_err(&p).await, SqlError::Unavailable(_)));
    let p = params(
        &server,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyCa, Some(&right_ca)),
    );
    MysqlDb::connect(&p)
        .await
        .expect("verify-ca accepts a CA-signed certificate for another name");
    // require: encrypted, not verified.
    let p = params(&server, "reader", PASSWORD, tls(TlsMode::Require, None));
    let db = MysqlDb::connect(&p).await.expect("require connects");
    let cipher = all_rows(&db, "SHOW SESSION STATUS LIKE 'Ssl_cipher'", vec![]).await;
    assert!(matches!(&cipher[0][1], DbValue::Text(c) if !c.is_empty()));
    // A CA file without certificates is a configuration error.
    let p = params(
        &server,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyFull, Some(&not_pem)),
    );
    assert!(matches!(connect_err(&p).await, SqlError::InvalidConfig(_)));
}

// ---------------------------------------------------------------------------------------
// The catalog

/// Databases of the test schema (besides `other_db`, read only with `databases = ["*"]`).
const SHOP: &str = "shop";
const WAREHOUSE: &str = "Warehouse";
const UBER: &str = "Überdb";
const RESERVED_DB: &str = "select";

/// Builds the schema: 66 tables and 5 views over 5 databases.
fn build_schema(server: &MariaDb) {
    let mut sql = String::new();
    for db in [SHOP, WAREHOUSE, UBER, RESERVED_DB, "other_db"] {
        sql += &format!("CREATE DATABASE {};\n", ident(db));
    }
    let s = ident(SHOP);
    for i in 0..40 {
        let fk = if i > 0 {
            format!(
                ",\n CONSTRAINT `fk_t_{i:02}_parent` FOREIGN KEY (parent_id) REFERENCES {s}.`t_{:02}` (id) ON DELETE SET NULL",
                i - 1
            )
        } else {
            String::new()
        };
        sql += &format!(
            "CREATE TABLE {s}.`t_{i:02}` (\n id INT UNSIGNED NOT NULL AUTO_INCREMENT COMMENT 'row id {i}',\n \
             code VARCHAR(32) NOT NULL DEFAULT 'c{i}',\n amount DECIMAL(12,{scale}) NULL,\n \
             created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,\n parent_id INT UNSIGNED NULL,\n \
             kind ENUM('a','b''c') NOT NULL DEFAULT 'a',\n \
             PRIMARY KEY (id),\n UNIQUE KEY uq_code (code),\n KEY ix_amount_created (amount, created){fk}\n\
             ) ENGINE=InnoDB COMMENT='table number {i}';\n",
            scale = i % 4
        );
    }
    sql += &format!(
        "CREATE TABLE {s}.`Order Items` (`Order ID` INT NOT NULL, `Line#` INT NOT NULL, \
         `Qty` SMALLINT DEFAULT 1 COMMENT 'it''s \"quoted\"', \
         PRIMARY KEY (`Order ID`, `Line#`)) COMMENT 'spaces and #';\n\
         CREATE TABLE {s}.`Order Item Notes` (order_id INT NOT NULL, line INT NOT NULL, \
         note TEXT COLLATE utf8mb4_bin, total DECIMAL(10,2) AS (order_id * 2) VIRTUAL, \
         note_len INT AS (CHAR_LENGTH(note)) STORED, \
         updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
         CONSTRAINT `fk notes→items` FOREIGN KEY (order_id, line) \
         REFERENCES {s}.`Order Items` (`Order ID`, `Line#`) ON UPDATE CASCADE ON DELETE CASCADE);\n\
         CREATE TABLE {s}.`select` (`from` INT PRIMARY KEY, `where` VARCHAR(10) UNIQUE, \
         `group` TEXT) COMMENT 'reserved words';\n\
         CREATE TABLE {s}.`ключи` (`ид` BIGINT PRIMARY KEY, `имя` VARCHAR(50) COMMENT 'имя клиента') \
         COMMENT 'Кириллица';\n\
         CREATE TABLE {s}.`表格` (`列` INT PRIMARY KEY, `値` SET('x','y') DEFAULT 'x,y') COMMENT '中文注释';\n\
         CREATE TABLE {s}.`a.b` (`c.d` INT, `quo\"te` INT, `back``tick` INT, \
         UNIQUE KEY `uq.dot` (`c.d`, `quo\"te`));\n\
         CREATE TABLE {s}.`MixedCase` (`CamelCol` INT PRIMARY KEY);\n\
         CREATE TABLE {s}.`mixedcase` (lower_col INT);\n\
         CREATE TABLE {s}.legacy_log (id INT AUTO_INCREMENT PRIMARY KEY, msg TEXT, \
         FULLTEXT KEY ft_msg (msg), KEY ix_prefix (msg(10))) ENGINE=MyISAM COMMENT 'MyISAM';\n\
         CREATE SEQUENCE {s}.order_seq;\n\
         INSERT INTO {s}.legacy_log (msg) VALUES ('a'), ('b'), ('c');\n\
         INSERT INTO {s}.`t_00` (code, amount) VALUES ('x', 1.5), ('y', 20), ('z', NULL);\n\
         ANALYZE TABLE {s}.`t_00`, {s}.legacy_log;\n\
         CREATE VIEW {s}.v_expensive AS SELECT id, amount FROM {s}.`t_01` WHERE amount > 10;\n\
         CREATE VIEW {s}.`Vüe \"odd\"` AS SELECT `Order ID` AS `ID`, COUNT(*) AS n \
         FROM {s}.`Order Items` GROUP BY `Order ID`;\n"
    );
    let w = ident(WAREHOUSE);
    for i in 0..8 {
        sql += &format!(
            "CREATE TABLE {w}.`Stock_{i}` (sku INT UNSIGNED NOT NULL, bin VARCHAR(8) NOT NULL, \
             qty INT NOT NULL DEFAULT 0, PRIMARY KEY (sku, bin), \
             CONSTRAINT `stock_{i}_item` FOREIGN KEY (sku) REFERENCES {s}.`t_{i:02}` (id) \
             ON UPDATE RESTRICT) COMMENT 'Lager {i}';\n"
        );
    }
    sql += &format!(
        "CREATE VIEW {w}.`Stock View` AS SELECT st.sku, t.code FROM {w}.`Stock_0` st \
         JOIN {s}.`t_00` t ON t.id = st.sku;\n"
    );
    let u = ident(UBER);
    for i in 0..4 {
        sql += &format!(
            "CREATE TABLE {u}.`Größe_{i}` (`Schlüssel` INT UNSIGNED NOT NULL, `Fach` VARCHAR(8) NOT NULL, \
             `Bemerkung` VARCHAR(100) DEFAULT NULL COMMENT 'Anmerkung zur Größe', \
             KEY `ix_größe` (`Schlüssel`, `Fach`), \
             CONSTRAINT `größe_{i}_fk` FOREIGN KEY (`Schlüssel`, `Fach`) \
             REFERENCES {w}.`Stock_{i}` (sku, bin)) COMMENT 'Größen';\n"
        );
    }
    sql += &format!(
        "CREATE VIEW {u}.sicht AS SELECT `Schlüssel` FROM {u}.`Größe_0`;\n\
         CREATE TABLE {r}.`table` (`column` INT PRIMARY KEY, `key` INT, KEY `index` (`key`));\n\
         CREATE VIEW {r}.`view` AS SELECT `column` FROM {r}.`table`;\n\
         CREATE TABLE other_db.unrelated (id INT PRIMARY KEY);\n",
        r = ident(RESERVED_DB)
    );
    server.sql(&sql);
}

fn p(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

/// An empty comment is "no comment".
fn comment(v: &Value) -> Value {
    match v.as_str() {
        Some("") | None => Value::Null,
        Some(c) => json!(c),
    }
}

/// Everything the catalog says, per asset kind, keyed by path, in the plugin's attributes.
type Catalog = BTreeMap<&'static str, BTreeMap<Vec<String>, Value>>;

/// Reads the catalog of `databases` (None: every non-system database) through the `mariadb`
/// client, independently of the plugin.
fn expected_catalog(server: &MariaDb, databases: Option<&[&str]>) -> Catalog {
    let cond = |col: &str| match databases {
        Some(list) => format!(
            "BINARY {col} IN ({})",
            list.iter().map(|d| quote(d)).collect::<Vec<_>>().join(", ")
        ),
        None => {
            format!("{col} NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys')")
        }
    };
    let mut catalog: Catalog = BTreeMap::new();
    let mut put = |kind: &'static str, path: Vec<String>, attrs: Value| {
        let previous = catalog.entry(kind).or_default().insert(path.clone(), attrs);
        assert!(previous.is_none(), "duplicate {kind} {path:?}");
    };
    for r in server.json_rows(&format!(
        "SELECT JSON_OBJECT('db', SCHEMA_NAME, 'cs', DEFAULT_CHARACTER_SET_NAME, \
         'co', DEFAULT_COLLATION_NAME) FROM information_schema.SCHEMATA WHERE {}",
        cond("SCHEMA_NAME")
    )) {
        let db = s(&r, "db");
        put(
            "database",
            p(&[&db]),
            json!({ "character_set": r["cs"], "collation": r["co"] }),
        );
        put("schema", p(&[&db, &db]), json!({}));
    }
    for r in server.json_rows(&format!(
        "SELECT JSON_OBJECT('db', TABLE_SCHEMA, 'name', TABLE_NAME, 'type', TABLE_TYPE, \
         'engine', ENGINE, 'rows', TABLE_ROWS, 'comment', TABLE_COMMENT, \
         'collation', TABLE_COLLATION, 'ai', AUTO_INCREMENT) \
         FROM information_schema.TABLES WHERE {}",
        cond("TABLE_SCHEMA")
    )) {
        let db = s(&r, "db");
        let path = p(&[&db, &db, &s(&r, "name")]);
        match s(&r, "type").as_str() {
            "VIEW" => continue,
            t => put(
                "table",
                path,
                json!({
                    "table_type": match t {
                        "BASE TABLE" => "table",
                        "SEQUENCE" => "sequence",
                        other => panic!("unexpected table type {other}"),
                    },
                    "engine": r["engine"],
                    "comment": comment(&r["comment"]),
                    "row_count_estimate": r["rows"],
                    "collation": r["collation"],
                    "auto_increment": r["ai"],
                }),
            ),
        }
    }
    for r in server.json_rows(&format!(
        "SELECT JSON_OBJECT('db', TABLE_SCHEMA, 'name', TABLE_NAME, 'def', VIEW_DEFINITION) \
         FROM information_schema.VIEWS WHERE {}",
        cond("TABLE_SCHEMA")
    )) {
        let db = s(&r, "db");
        put(
            "view",
            p(&[&db, &db, &s(&r, "name")]),
            json!({ "view_definition": r["def"], "comment": null }),
        );
    }
    // Key columns: (db, table, constraint) -> rows in ordinal order.
    let kcu = server.json_rows(&format!(
        "SELECT JSON_OBJECT('db', TABLE_SCHEMA, 'tbl', TABLE_NAME, 'name', CONSTRAINT_NAME, \
         'col', COLUMN_NAME, 'pos', ORDINAL_POSITION, 'rs', REFERENCED_TABLE_SCHEMA, \
         'rt', REFERENCED_TABLE_NAME, 'rc', REFERENCED_COLUMN_NAME) \
         FROM information_schema.KEY_COLUMN_USAGE WHERE {} ORDER BY ORDINAL_POSITION",
        cond("TABLE_SCHEMA")
    ));
    let rules: HashMap<(String, String, String), Value> = server
        .json_rows(&format!(
            "SELECT JSON_OBJECT('db', CONSTRAINT_SCHEMA, 'tbl', TABLE_NAME, 'name', CONSTRAINT_NAME, \
             'u', UPDATE_RULE, 'd', DELETE_RULE) FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE {}",
            cond("CONSTRAINT_SCHEMA")
        ))
        .into_iter()
        .map(|r| ((s(&r, "db"), s(&r, "tbl"), s(&r, "name")), r))
        .collect();
    let mut pk_position: HashMap<(String, String, String), Value> = HashMap::new();
    let mut keys: BTreeMap<Vec<String>, (&'static str, Value)> = BTreeMap::new();
    for r in &kcu {
        let (db, tbl, name) = (s(r, "db"), s(r, "tbl"), s(r, "name"));
        let path = p(&[&db, &db, &tbl, &name]);
        let entry = keys.entry(path).or_insert_with(|| {
            if name == "PRIMARY" {
                ("primary_key", json!({ "columns": [] }))
            } else if r["rt"].is_string() {
                let rule = &rules[&(db.clone(), tbl.clone(), name.clone())];
                (
                    "foreign_key",
                    json!({ "columns": [], "referenced_schema": r["rs"],
                            "referenced_table": r["rt"], "referenced_columns": [],
                            "on_update": rule["u"], "on_delete": rule["d"] }),
                )
            } else {
                ("unique_key", json!({ "columns": [] }))
            }
        });
        entry.1["columns"]
            .as_array_mut()
            .unwrap()
            .push(r["col"].clone());
        if entry.0 == "foreign_key" {
            entry.1["referenced_columns"]
                .as_array_mut()
                .unwrap()
                .push(r["rc"].clone());
        }
        if name == "PRIMARY" {
            pk_position.insert((db, tbl, s(r, "col")), r["pos"].clone());
        }
    }
    for (path, (kind, attrs)) in keys {
        put(kind, path, attrs);
    }
    for r in server.json_rows(&format!(
        "SELECT JSON_OBJECT('db', TABLE_SCHEMA, 'tbl', TABLE_NAME, 'name', COLUMN_NAME, \
         'pos', ORDINAL_POSITION, 'type', COLUMN_TYPE, 'null', IS_NULLABLE, \
         'dflt', COLUMN_DEFAULT, 'comment', COLUMN_COMMENT, 'extra', EXTRA, \
         'is_generated', IS_GENERATED, 'expr', GENERATION_EXPRESSION, \
         'collation', COLLATION_NAME, 'charset', CHARACTER_SET_NAME) \
         FROM information_schema.COLUMNS WHERE {}",
        cond("TABLE_SCHEMA")
    )) {
        let (db, tbl, name) = (s(&r, "db"), s(&r, "tbl"), s(&r, "name"));
        let pk = pk_position
            .get(&(db.clone(), tbl.clone(), name.clone()))
            .cloned()
            .unwrap_or(Value::Null);
        let extra = s(&r, "extra");
        let generated = (s(&r, "is_generated") == "ALWAYS").then(|| {
            json!({
                "kind": if extra.contains("STORED") || extra.contains("PERSISTENT") {
                    "stored"
                } else {
                    "virtual"
                },
                "expression": r["expr"],
            })
        });
        let on_update = extra
            .to_ascii_lowercase()
            .split_once("on update ")
            .map(|(before, _)| extra[before.len() + "on update ".len()..].to_string());
        put(
            "column",
            p(&[&db, &db, &tbl, &name]),
            json!({
                "ordinal": r["pos"],
                "data_type": r["type"],
                "nullable": s(&r, "null") == "YES",
                "default": if generated.is_some() { Value::Null } else { r["dflt"].clone() },
                "generated": generated,
                "auto_increment": extra.contains("auto_increment"),
                "on_update": on_update,
                "collation": r["collation"],
                "character_set": r["charset"],
                "comment": comment(&r["comment"]),
                "primary_key_position": pk,
            }),
        );
    }
    let mut indexes: BTreeMap<Vec<String>, Value> = BTreeMap::new();
    for r in server.json_rows(&format!(
        "SELECT JSON_OBJECT('db', TABLE_SCHEMA, 'tbl', TABLE_NAME, 'name', INDEX_NAME, \
         'nu', NON_UNIQUE, 'col', COLUMN_NAME, 'type', INDEX_TYPE) \
         FROM information_schema.STATISTICS WHERE {} ORDER BY SEQ_IN_INDEX",
        cond("TABLE_SCHEMA")
    )) {
        let (db, tbl, name) = (s(&r, "db"), s(&r, "tbl"), s(&r, "name"));
        let entry = indexes
            .entry(p(&[&db, &db, &tbl, &name]))
            .or_insert_with(|| {
                json!({ "unique": r["nu"] == json!(0), "primary": name == "PRIMARY",
                        "columns": [], "method": r["type"] })
            });
        entry["columns"]
            .as_array_mut()
            .unwrap()
            .push(r["col"].clone());
    }
    for (path, attrs) in indexes {
        put("index", path, attrs);
    }
    catalog
}

/// The catalog restricted to what the host's own filter keeps.
fn filtered(catalog: &Catalog, filters: &FilterConfig) -> Catalog {
    let policy = FilterPolicy::compile(filters).unwrap();
    catalog
        .iter()
        .map(|(kind, assets)| {
            let k = AssetKind::from_str(kind).unwrap();
            let kept = assets
                .iter()
                .filter(|(path, _)| policy.decide(k, path).keeps())
                .map(|(p, a)| (p.clone(), a.clone()))
                .collect();
            (*kind, kept)
        })
        .collect()
}

const KINDS: &[&str] = &[
    "database",
    "schema",
    "table",
    "view",
    "column",
    "primary_key",
    "unique_key",
    "foreign_key",
    "index",
];

/// What a run published, in the same shape as [`Catalog`].
fn published(run_dir: &Path) -> Catalog {
    let mut out: Catalog = BTreeMap::new();
    for kind in KINDS {
        let mut assets = BTreeMap::new();
        for record in read_jsonl(run_dir, kind) {
            assert_eq!(record["kind"], json!(kind));
            let path: Vec<String> = serde_json::from_value(record["path"].clone()).unwrap();
            let previous = assets.insert(path.clone(), record["attributes"].clone());
            assert!(previous.is_none(), "{kind} {path:?} published twice");
        }
        out.insert(*kind, assets);
    }
    out
}

fn assert_same(actual: &Catalog, expected: &Catalog) {
    for kind in KINDS {
        let empty = BTreeMap::new();
        let a = actual.get(kind).unwrap_or(&empty);
        let e = expected.get(kind).unwrap_or(&empty);
        for (path, attrs) in e {
            match a.get(path) {
                None => panic!("{kind} {path:?} missing from the output"),
                Some(got) => assert_eq!(got, attrs, "{kind} {path:?}"),
            }
        }
        for path in a.keys() {
            assert!(e.contains_key(path), "{kind} {path:?} not in the catalog");
        }
    }
}

/// Fails when the password, or its base64, hex or URL encoding, is in any file under `dir`.
fn assert_no_canary(dir: &Path) {
    use base64::Engine;
    let raw = PASSWORD.as_bytes();
    let mut needles: Vec<Vec<u8>> = vec![raw.to_vec()];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        needles.push(engine.encode(raw).into_bytes());
    }
    needles.push(hex::encode(raw).into_bytes());
    needles.push(hex::encode_upper(raw).into_bytes());
    let mut url = String::new();
    let mut url_plus = String::new();
    for b in raw {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(b) {
            url.push(*b as char);
            url_plus.push(*b as char);
        } else {
            url += &format!("%{b:02X}");
            url_plus += &if *b == b' ' {
                "+".to_string()
            } else {
                format!("%{b:02x}")
            };
        }
    }
    needles.push(url.into_bytes());
    needles.push(url_plus.into_bytes());
    let files = all_files(dir);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{} holds the password (as {})",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(!files.is_empty(), "nothing to scan under {}", dir.display());
}

/// A TLS server with the schema and a reader, and a workspace whose home holds the reader's
/// password, bound to the server.
struct Setup {
    server: MariaDb,
    ws: Workspace,
    home: Home,
    guid: String,
    ca_file: PathBuf,
}

fn setup(password: &str) -> Setup {
    let pki = pki(&["localhost", "127.0.0.1"]);
    let server = MariaDb::start_tls(&pki.ca, &pki.cert, &pki.key);
    build_schema(&server);
    server.create_user("reader", PASSWORD);
    let ws = Workspace::new();
    let ca_file = write(ws.path(), "ca.pem", &pki.ca);
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", password, &[&server.address()]);
    Setup {
        server,
        ws,
        home,
        guid,
        ca_file,
    }
}

impl Setup {
    fn config(&self, databases: &str, tls: &str, filters: &str) -> airlock::config::LoadedConfig {
        self.ws.config(&format!(
            "[source]\nplugin = \"{}\"\nendpoint = \"{}\"\n{databases}\ncredential = \"{}\"\n\
             tls = {tls}\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n{filters}",
            plugin("mysql").display(),
            self.server.address(),
            self.guid,
        ))
    }

    fn verify_full(&self) -> String {
        format!(
            "{{ mode = \"verify-full\", ca_file = \"{}\" }}",
            self.ca_file.display()
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_extracts_every_database_exactly_as_information_schema_reports() {
    let setup = setup(PASSWORD);
    let expected = expected_catalog(&setup.server, None);
    let tables = expected["table"].len();
    assert!(tables >= 60, "the schema has {tables} tables");

    let cfg = setup.config("databases = [\"*\"]", &setup.verify_full(), "");
    let rt = runtime();
    let report = run_in(&rt, &cfg, &setup.home)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}\n{}", setup.server.error_log()));
    verify_run_dir(&report.output_dir);
    let actual = published(&report.output_dir);
    // The catalog did not change while the plugin read it (row estimates are statistics).
    assert_eq!(expected_catalog(&setup.server, None), expected);
    assert_same(&actual, &expected);

    // Spot checks of what the rules above mean, written out by hand.
    let d = |kind: &str, path: &[&str]| actual[kind][&p(path)].clone();
    assert_eq!(
        d("primary_key", &[SHOP, SHOP, "Order Items", "PRIMARY"]),
        json!({ "columns": ["Order ID", "Line#"] })
    );
    assert_eq!(
        d("foreign_key", &[UBER, UBER, "Größe_2", "größe_2_fk"]),
        json!({ "columns": ["Schlüssel", "Fach"], "referenced_schema": WAREHOUSE,
                "referenced_table": "Stock_2", "referenced_columns": ["sku", "bin"],
                "on_update": "RESTRICT", "on_delete": "RESTRICT" })
    );
    assert_eq!(
        d(
            "foreign_key",
            &[WAREHOUSE, WAREHOUSE, "Stock_3", "stock_3_item"]
        )["referenced_schema"],
        json!(SHOP)
    );
    let mut keys_table = d("table", &[SHOP, SHOP, "ключи"]);
    let collation = keys_table["collation"].take();
    assert!(
        collation.as_str().unwrap().starts_with("utf8mb4_"),
        "{collation}"
    );
    assert_eq!(
        keys_table,
        json!({ "table_type": "table", "engine": "InnoDB", "comment": "Кириллица",
                "row_count_estimate": 0, "collation": null, "auto_increment": null })
    );
    assert_eq!(
        d("table", &[SHOP, SHOP, "legacy_log"])["row_count_estimate"],
        json!(3)
    );
    assert_eq!(
        d("table", &[SHOP, SHOP, "order_seq"])["table_type"],
        json!("sequence")
    );
    assert_eq!(
        d("column", &[SHOP, SHOP, "Order Items", "Qty"]),
        json!({ "ordinal": 3, "data_type": "smallint(6)", "nullable": true, "default": "1",
                "generated": null, "auto_increment": false, "on_update": null,
                "collation": null, "character_set": null,
                "comment": "it's \"quoted\"", "primary_key_position": null })
    );
    assert_eq!(
        d("column", &[SHOP, SHOP, "t_05", "kind"])["data_type"],
        json!("enum('a','b''c')")
    );
    assert_eq!(
        d("index", &[SHOP, SHOP, "legacy_log", "ft_msg"]),
        json!({ "unique": false, "primary": false, "columns": ["msg"], "method": "FULLTEXT" })
    );
    // What EXTRA and GENERATION_EXPRESSION say, written out by hand.
    let notes = |c: &str| d("column", &[SHOP, SHOP, "Order Item Notes", c]);
    assert_eq!(
        notes("total")["generated"],
        json!({ "kind": "virtual", "expression": "`order_id` * 2" })
    );
    assert_eq!(notes("note_len")["generated"]["kind"], json!("stored"));
    assert_eq!(
        notes("note_len")["generated"]["expression"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        "char_length(`note`)"
    );
    assert_eq!(notes("updated")["on_update"], json!("current_timestamp()"));
    assert_eq!(notes("note")["collation"], json!("utf8mb4_bin"));
    assert_eq!(notes("note")["character_set"], json!("utf8mb4"));
    assert_eq!(
        d("column", &[SHOP, SHOP, "t_03", "id"])["auto_increment"],
        json!(true)
    );
    assert_eq!(
        d("table", &[SHOP, SHOP, "legacy_log"])["auto_increment"],
        json!(4)
    );
    assert!(actual["table"].contains_key(&p(&[SHOP, SHOP, "MixedCase"])));
    assert!(actual["table"].contains_key(&p(&[SHOP, SHOP, "mixedcase"])));
    assert!(actual["table"].contains_key(&p(&["other_db", "other_db", "unrelated"])));
    assert!(
        d("view", &[WAREHOUSE, WAREHOUSE, "Stock View"])["view_definition"]
            .as_str()
            .unwrap()
            .contains("`shop`.`t_00`")
    );
    assert!(!actual["database"].contains_key(&p(&["mysql"])));

    assert_no_canary(setup.ws.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_pushes_filters_down_without_dropping_what_the_host_keeps() {
    let setup = setup(PASSWORD);
    let filters = FilterConfig {
        include: vec![SHOP.into(), "Warehouse.Warehouse.Stock_*".into()],
        exclude: vec![
            "shop.shop.t_1*".into(),
            "shop.shop.t_05".into(),
            "shop.shop.mixedcase".into(),
            "Warehouse.Warehouse.Stock_3".into(),
            "*.*.*.created".into(),
        ],
        ..Default::default()
    };
    let toml_list = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cfg = setup.config(
        &format!("databases = [\"{SHOP}\", \"{WAREHOUSE}\", \"{UBER}\"]"),
        &setup.verify_full(),
        &format!(
            "[filters]\ninclude = [{}]\nexclude = [{}]\n",
            toml_list(&filters.include),
            toml_list(&filters.exclude)
        ),
    );
    let rt = runtime();
    let report = run_in(&rt, &cfg, &setup.home)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    verify_run_dir(&report.output_dir);
    let expected = filtered(
        &expected_catalog(&setup.server, Some(&[SHOP, WAREHOUSE, UBER])),
        &filters,
    );
    let actual = published(&report.output_dir);
    assert_same(&actual, &expected);
    // The filters did select something of each kind, and dropped what they name.
    for kind in KINDS {
        assert!(!actual[kind].is_empty(), "no {kind} kept");
    }
    assert!(actual["table"].contains_key(&p(&[SHOP, SHOP, "MixedCase"])));
    assert!(!actual["table"].contains_key(&p(&[SHOP, SHOP, "mixedcase"])));
    assert!(!actual["table"].contains_key(&p(&[SHOP, SHOP, "t_05"])));
    assert!(!actual["database"].contains_key(&p(&[UBER])));
    assert_no_canary(setup.ws.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_with_a_wrong_password_fails_without_the_password() {
    let setup = setup(&format!("{PASSWORD}-wrong"));
    let cfg = setup.config("database = \"shop\"", &setup.verify_full(), "");
    let rt = runtime();
    let err = run_in(&rt, &cfg, &setup.home)
        .await
        .expect_err("wrong password fails the run");
    let message = err.to_string();
    assert!(message.contains("authentication failed"), "{message}");
    assert_no_password(&message);
    assert!(setup.ws.out_entries().iter().all(|e| e.starts_with('.')));
    assert_no_canary(setup.ws.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn run_refuses_cleartext_login_unless_allowed() {
    let setup = setup(PASSWORD);
    let cfg = setup.config("database = \"shop\"", "{ mode = \"disable\" }", "");
    let rt = runtime();
    let err = run_in(&rt, &cfg, &setup.home)
        .await
        .expect_err("cleartext login is refused");
    assert!(
        err.to_string().contains("allow_cleartext_password"),
        "{err}"
    );
    // Allowed explicitly, the same server (which also accepts plain connections) is read.
    let cfg = setup.config(
        "database = \"shop\"",
        "{ mode = \"disable\", allow_cleartext_password = true }",
        "",
    );
    let report = run_in(&rt, &cfg, &setup.home)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    let actual = published(&report.output_dir);
    assert_same(&actual, &expected_catalog(&setup.server, Some(&[SHOP])));
    assert_no_canary(setup.ws.path());
}

/// A host-memory budget for calling the driver directly, as a run's default.
fn budget() -> std::sync::Arc<airlock::runtime::budget::MemoryBudget> {
    airlock::runtime::budget::MemoryBudget::of_mb(256)
}
