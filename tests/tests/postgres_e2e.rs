//! PostgreSQL end to end against real servers started by the test (127.0.0.1, free port,
//! temp dir, stopped on drop): the host driver directly (TLS modes, SCRAM, read-only
//! sessions, value types, streaming, sanitized errors) and the `postgres` plugin through the
//! host, whose output must equal what the server's own catalog reports, queried
//! independently through psql.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock::capabilities::sql::postgres::PgDb;
use airlock::capabilities::sql::{ConnectParams, DbValue, SqlError, TlsMode, TlsSettings};
use airlock::secrets::SecretString;
use airlock_tests::postgres::PgCluster;
use airlock_tests::{
    all_files, plugin, read_jsonl, run_in, runtime, verify_run_dir, Home, Workspace,
};
use serde_json::Value;

const PASSWORD: &str = "Canary-pg-7f3a9c1e-ünï";

// ---------------------------------------------------------------------------------------
// Certificates

struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca(name: &str) -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A server certificate for `names` (IP addresses become IP SANs), issued by `ca`.
fn server_cert(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock test server");
    let cert = params
        .signed_by(&key, &ca.issuer)
        .expect("server certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

// ---------------------------------------------------------------------------------------
// Driver

fn params(pg: &PgCluster, user: &str, password: &str, tls: TlsSettings) -> ConnectParams {
    ConnectParams {
        host: "127.0.0.1".into(),
        addr: None,
        port: pg.port(),
        database: Some("postgres".into()),
        user: user.into(),
        password: SecretString::new(password.to_string()),
        tls,
        connect_timeout: Duration::from_secs(20),
    }
}

fn tls(mode: TlsMode, ca_file: Option<&Path>) -> TlsSettings {
    TlsSettings {
        mode,
        ca_file: ca_file.map(Path::to_path_buf),
        allow_cleartext_password: false,
    }
}

async fn rows(db: &PgDb, sql: &str, params: Vec<DbValue>) -> Result<Vec<Vec<DbValue>>, SqlError> {
    let mut rows = db
        .query(sql.to_string(), params, Duration::from_secs(30), &budget())
        .await?;
    let mut out = Vec::new();
    while let Some(batch) = rows.next_batch(1000, 1 << 20).await? {
        out.extend(batch);
    }
    Ok(out)
}

fn assert_no_secret(message: &str) {
    assert!(
        !message.contains(PASSWORD),
        "the password leaked: {message}"
    );
    assert!(
        !message.contains("postgres://") && !message.contains("password="),
        "a connection string leaked: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_logs_in_with_scram_over_verified_tls_and_stays_read_only() {
    let ca = ca("airlock test CA");
    let (cert, key) = server_cert(&ca, &["127.0.0.1"]);
    let pg = PgCluster::start_tls(&cert, &key);
    pg.create_user("reader", PASSWORD);
    pg.psql(
        "postgres",
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TABLE t (a int); GRANT SELECT ON t TO reader;",
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);

    let db = PgDb::connect(&params(
        &pg,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyFull, Some(&ca_file)),
    ))
    .await
    .expect("verify-full login");

    // The session is TLS and the stored verifier is SCRAM.
    let ssl = rows(
        &db,
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(ssl[0][0], DbValue::Bool(true));
    assert!(matches!(&ssl[0][1], DbValue::Text(v) if v.starts_with("TLSv1.")));
    let stored = pg.psql(
        "postgres",
        "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'reader'",
    );
    assert_eq!(stored.trim(), "SCRAM-SHA-256$");

    // Values map onto typed DbValues; unknown types do not fail.
    let got = rows(
        &db,
        "SELECT true, 7::int2, 8::int4, 9::int8, 'pg_class'::regclass, 1.5::float4, 2.25::float8, \
         123456.780::numeric(12,3), -0.005::numeric, 'héllo'::text, 'x'::varchar(3), 'ab'::char(3), \
         'nm'::name, '{\"a\": [1]}'::jsonb, '\\x00ff'::bytea, NULL::int4, \
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '2024-02-29'::date, \
         '2024-02-29 13:14:15.5'::timestamp, ARRAY[[1, 2], [3, NULL]]::int4[], ARRAY['x', 'y,z']::text[], \
         'sad'::public.mood, '10.0.0.1'::inet, $1::int4 + 1, $2 || '!', $3::bool, $4::float8 * 2, $5::text IS NULL",
        vec![
            DbValue::Int(41),
            DbValue::Text("hi".into()),
            DbValue::Bool(true),
            DbValue::Float(1.25),
            DbValue::Null,
        ],
    )
    .await
    .unwrap();
    let expected = vec![
        DbValue::Bool(true),
        DbValue::Int(7),
        DbValue::Int(8),
        DbValue::Int(9),
        DbValue::Int(1259),
        DbValue::Float(1.5),
        DbValue::Float(2.25),
        DbValue::Text("123456.780".into()),
        DbValue::Text("-0.005".into()),
        DbValue::Text("héllo".into()),
        DbValue::Text("x".into()),
        DbValue::Text("ab ".into()),
        DbValue::Text("nm".into()),
        DbValue::Text("{\"a\": [1]}".into()),
        DbValue::Bytes(vec![0, 255]),
        DbValue::Null,
        DbValue::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
        DbValue::Text("2024-02-29".into()),
        DbValue::Text("2024-02-29T13:14:15.500".into()),
        DbValue::Text("[[1,2],[3,null]]".into()),
        DbValue::Text("[\"x\",\"y,z\"]".into()),
        DbValue::Text("sad".into()),
        // inet has no mapping: its raw binary form (family, bits, is_cidr, length, address).
        DbValue::Bytes(vec![2, 32, 0, 4, 10, 0, 0, 1]),
        DbValue::Int(42),
        DbValue::Text("hi!".into()),
        DbValue::Bool(true),
        DbValue::Float(2.5),
        DbValue::Bool(true),
    ];
    assert_eq!(got, vec![expected]);

    // Rows stream in batches; all of them arrive, in order.
    let mut stream = db
        .query(
            "SELECT g FROM generate_series(1, 25000) g".into(),
            vec![],
            Duration::from_secs(30),
            &budget(),
        )
        .await
        .unwrap();
    assert_eq!(stream.columns, vec![("g".to_string(), "int4".to_string())]);
    let mut seen = 0i64;
    while let Some(batch) = stream.next_batch(777, 1 << 20).await.unwrap() {
        assert!(batch.len() <= 777);
        for row in batch {
            seen += 1;
            assert_eq!(row, vec![DbValue::Int(seen)]);
        }
    }
    assert_eq!(seen, 25000);
    drop(stream);

    // A statement cannot write, nor make the session writable for the next one.
    for sql in [
        "CREATE TABLE reader_was_here (a int)",
        "INSERT INTO public.t VALUES (1)",
    ] {
        let e = rows(&db, sql, vec![]).await.unwrap_err();
        assert!(
            matches!(&e, SqlError::Denied(m) if m.contains("read-only")),
            "{sql}: {e:?}"
        );
    }
    rows(&db, "SET default_transaction_read_only = off", vec![])
        .await
        .unwrap();
    rows(
        &db,
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        vec![],
    )
    .await
    .unwrap();
    let e = rows(&db, "INSERT INTO public.t VALUES (2)", vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, SqlError::Denied(_)), "{e:?}");
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM t").trim(), "0");

    // SQL errors carry the server's message; the statement timeout is a limit.
    let e = rows(&db, "SELECT * FROM no_such_table", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SqlError::Source(m) if m.contains("relation \"no_such_table\" does not exist")),
        "{e:?}"
    );
    // The timeout may fire while the statement starts or while its rows are awaited,
    // depending on how busy the machine is; either way it is a limit error.
    let e = match db
        .query(
            "SELECT pg_sleep(60)".into(),
            vec![],
            Duration::from_secs(2),
            &budget(),
        )
        .await
    {
        Err(e) => e,
        Ok(mut slow) => slow.next_batch(10, 1 << 20).await.unwrap_err(),
    };
    assert!(matches!(e, SqlError::Limit(_)), "{e:?}");

    // Dropping a half-read stream frees the connection for the next statement.
    let mut big = db
        .query(
            "SELECT g FROM generate_series(1, 200000) g".into(),
            vec![],
            Duration::from_secs(30),
            &budget(),
        )
        .await
        .unwrap();
    assert_eq!(big.next_batch(3, 1 << 20).await.unwrap().unwrap().len(), 3);
    drop(big);
    let one = rows(&db, "SELECT 1", vec![]).await.unwrap();
    assert_eq!(one, vec![vec![DbValue::Int(1)]]);

    // A half-read stream that the plugin still holds is reported, not waited on forever.
    let mut held = db
        .query(
            "SELECT g FROM generate_series(1, 200000) g".into(),
            vec![],
            Duration::from_secs(30),
            &budget(),
        )
        .await
        .unwrap();
    assert_eq!(held.next_batch(1, 1 << 20).await.unwrap().unwrap().len(), 1);
    let e = match db
        .query(
            "SELECT 2".into(),
            vec![],
            Duration::from_secs(30),
            &budget(),
        )
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("a second statement ran while the first was unread"),
    };
    assert!(
        matches!(&e, SqlError::Source(m) if m.contains("still unread")),
        "{e:?}"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_authentication_error_without_the_password() {
    let ca = ca("airlock test CA");
    let (cert, key) = server_cert(&ca, &["127.0.0.1"]);
    let pg = PgCluster::start_tls(&cert, &key);
    pg.create_user("reader", "the-right-one");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let e = match PgDb::connect(&params(
        &pg,
        "reader",
        PASSWORD,
        tls(TlsMode::VerifyFull, Some(&ca_file)),
    ))
    .await
    {
        Err(e) => e,
        Ok(_) => panic!("logged in with a wrong password"),
    };
    let message = e.to_string();
    assert!(
        matches!(&e, SqlError::Denied(m) if m.contains("authentication failed for user \"reader\"")),
        "{e:?}"
    );
    assert_no_secret(&message);
    assert!(!format!("{e:?}").contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verification_modes() {
    let trusted = ca("airlock test CA");
    let stranger = ca("someone else's CA");
    // The certificate names another host: verify-full must refuse it, verify-ca accept it.
    let (cert, key) = server_cert(&trusted, &["db.elsewhere.invalid"]);
    let pg = PgCluster::start_tls(&cert, &key);
    pg.create_user("reader", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let trusted_file = write(dir.path(), "trusted.pem", &trusted.pem);
    let stranger_file = write(dir.path(), "stranger.pem", &stranger.pem);

    let connect = |mode, file: &Path| {
        let p = params(&pg, "reader", PASSWORD, tls(mode, Some(file)));
        async move { PgDb::connect(&p).await }
    };
    let denied = |r: Result<PgDb, SqlError>, needle: &str| match r {
        Ok(_) => panic!("connected although the certificate should be refused ({needle})"),
        Err(e) => {
            assert!(
                matches!(&e, SqlError::Denied(m) if m.contains(needle)),
                "expected Denied containing {needle}: {e:?}"
            );
            assert_no_secret(&e.to_string());
        }
    };
    // Not signed by the configured CA.
    denied(
        connect(TlsMode::VerifyFull, &stranger_file).await,
        "UnknownIssuer",
    );
    denied(
        connect(TlsMode::VerifyCa, &stranger_file).await,
        "UnknownIssuer",
    );
    // Signed by the CA, but for another name.
    denied(
        connect(TlsMode::VerifyFull, &trusted_file).await,
        "certificate not valid for name",
    );
    connect(TlsMode::VerifyCa, &trusted_file)
        .await
        .expect("verify-ca ignores the host name");
    connect(TlsMode::Require, &stranger_file)
        .await
        .expect("require accepts any certificate");
    // A ca_file that is not PEM is a configuration error.
    let junk = write(dir.path(), "junk.pem", "not a certificate");
    match connect(TlsMode::VerifyFull, &junk).await {
        Err(SqlError::InvalidConfig(m)) => assert!(m.contains("junk.pem"), "{m}"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("connected with a junk CA file"),
    }
    // The server refuses logins without TLS (hostnossl ... reject).
    let mut plain = params(&pg, "reader", PASSWORD, tls(TlsMode::Disable, None));
    plain.tls.allow_cleartext_password = true;
    assert!(matches!(
        PgDb::connect(&plain).await,
        Err(SqlError::Denied(_))
    ));
}

/// The network policy applies to SQL logins: a declared endpoint whose *name* resolves to a
/// loopback address is refused (and the secret never resolved) until `[network] allow` names
/// the address; the login then goes to the checked address while TLS still verifies the name
/// (the certificate names only `localhost`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logins_follow_the_network_policy_and_connect_to_the_checked_address() {
    let ca = ca("airlock test CA");
    let (cert, key) = server_cert(&ca, &["localhost"]);
    let pg = PgCluster::start_tls(&cert, &key);
    pg.create_user("reader", PASSWORD);
    // A search_path that would print `meters` for `geo.meters` and `nextval('orders_id_seq')`
    // for sales' sequences, were it not pinned by the host.
    pg.psql(
        "postgres",
        "ALTER ROLE reader SET search_path = sales, geo, public",
    );
    let ws = Workspace::new();
    let ca_file = write(ws.path(), "ca.pem", &ca.pem);
    let home = Home::new(ws.path());
    let endpoint = format!("localhost:{}", pg.port());
    let guid = home.add_password("reader", PASSWORD, &[&endpoint]);
    let config = |network: &str| {
        ws.config(&format!(
            "[source]\nplugin = \"{}\"\nendpoint = \"{endpoint}\"\ncredential = \"{guid}\"\n\
             database = \"postgres\"\ntls = {{ mode = \"verify-full\", ca_file = \"{}\" }}\n\n\
             [sink]\nkind = \"local\"\ndir = \"out\"\n\n{network}",
            plugin("postgres").display(),
            ca_file.display()
        ))
    };
    let rt = runtime();
    let err = run_in(&rt, &config(""), &home)
        .await
        .expect_err("a name resolving to loopback is not allowed by default");
    let text = err.to_string();
    assert!(
        text.contains("loopback") && text.contains("network"),
        "{text}"
    );
    let audit = home
        .inner()
        .state()
        .audit_entries(None, Some(&guid))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "network" && e.outcome == "denied"),
        "the denial is audited: {audit:?}"
    );
    assert!(
        !audit
            .iter()
            .any(|e| e.action == "resolve" && e.outcome == "ok"),
        "the secret must not be resolved for a denied destination: {audit:?}"
    );
    assert!(
        ws.out_entries().iter().all(|e| e.starts_with('.')),
        "{:?}",
        ws.out_entries()
    );

    let allow = format!("[network]\nallow = [\"127.0.0.1:{}\"]\n", pg.port());
    let report = run_in(&rt, &config(&allow), &home)
        .await
        .expect("allowed once the address is named");
    verify_run_dir(&report.output_dir);
    assert!(!read_jsonl(&report.output_dir, "database").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_password_needs_explicit_consent() {
    let pg = PgCluster::start();
    pg.create_user("reader", PASSWORD);
    let refused = params(&pg, "reader", PASSWORD, tls(TlsMode::Disable, None));
    match PgDb::connect(&refused).await {
        Err(SqlError::Denied(m)) => {
            assert!(m.contains("allow_cleartext_password"), "{m}");
            assert_no_secret(&m);
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("sent a password without TLS"),
    }
    // Nothing reached the server: it logged no connection from the refused attempt.
    let mut allowed = params(&pg, "reader", PASSWORD, tls(TlsMode::Disable, None));
    allowed.tls.allow_cleartext_password = true;
    let db = PgDb::connect(&allowed)
        .await
        .expect("opted-in cleartext login");
    let ssl = rows(
        &db,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(ssl, vec![vec![DbValue::Bool(false)]]);
    // A TLS mode against a server without TLS fails instead of falling back.
    let e = match PgDb::connect(&params(
        &pg,
        "reader",
        PASSWORD,
        tls(TlsMode::Require, None),
    ))
    .await
    {
        Err(e) => e,
        Ok(_) => panic!("fell back to cleartext"),
    };
    assert!(matches!(e, SqlError::Denied(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// The plugin through the host

/// The test schema: 56 tables, mixed-case, quoted and non-ASCII names, reserved words,
/// a partitioned table, a foreign table, foreign keys across schemas, comments, views, a
/// materialized view, a sequence, functions and a procedure.
const SCHEMA: &str = r#"
CREATE SCHEMA sales;
CREATE SCHEMA "Inventory";
CREATE SCHEMA "données";
CREATE SCHEMA "select";
CREATE SCHEMA audit;
COMMENT ON SCHEMA sales IS 'Sales and orders';
COMMENT ON SCHEMA "données" IS 'Données clients — été';
CREATE TABLE sales.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE, "Full Name" varchar(200), created_at timestamptz NOT NULL DEFAULT now(), balance numeric(12,2) DEFAULT 0.00, tags text[]);
COMMENT ON TABLE sales.customers IS 'People who buy things';
COMMENT ON COLUMN sales.customers.email IS 'Login e-mail; unique';
CREATE TABLE "Inventory"."Products" (sku char(12) PRIMARY KEY, "Name" text NOT NULL, price numeric(10,2) CHECK (price >= 0), "weight.kg" real, "quote""d" int);
COMMENT ON COLUMN "Inventory"."Products"."Name" IS 'Nom du produit — affiché';
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES sales.customers(id) ON DELETE CASCADE, placed_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'paid', 'shipped')), total numeric);
CREATE TABLE sales.order_lines (order_id bigint REFERENCES sales.orders(id) ON UPDATE CASCADE ON DELETE CASCADE, line_no int, sku char(12) NOT NULL REFERENCES "Inventory"."Products"(sku) ON DELETE RESTRICT, qty int NOT NULL DEFAULT 1, PRIMARY KEY (order_id, line_no));
CREATE INDEX order_lines_sku_idx ON sales.order_lines (sku) INCLUDE (qty);
CREATE INDEX orders_lower_status ON sales.orders (lower(status), id) WHERE status <> 'shipped';
CREATE TABLE "données"."clients_été" ("prénom" text, "année" smallint, "naïve?" boolean DEFAULT true, uid uuid UNIQUE, ref_sku char(12), CONSTRAINT "clé_produit" FOREIGN KEY (ref_sku) REFERENCES "Inventory"."Products"(sku) ON UPDATE SET NULL);
COMMENT ON TABLE "données"."clients_été" IS 'Clients de l''été ☀';
CREATE TABLE "select"."from" ("where" int PRIMARY KEY, "group" text, "order" int);
CREATE TABLE "select"."table" ("user" text, "from_where" int REFERENCES "select"."from"("where") DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE public."MixedCase" ("ID" int, "Value" text, CONSTRAINT "MixedCase_pk" PRIMARY KEY ("ID"));
CREATE TABLE public."odd.name" ("a.b" int, "c""d" text, UNIQUE ("a.b", "c""d"));
CREATE TABLE sales.events (id bigint NOT NULL, happened_on date NOT NULL, payload jsonb, PRIMARY KEY (id, happened_on)) PARTITION BY RANGE (happened_on);
CREATE TABLE sales.events_2024 PARTITION OF sales.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE sales.events_2025 PARTITION OF sales.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales.events_default PARTITION OF sales.events DEFAULT;
COMMENT ON TABLE sales.events IS 'Partitioned by day';
CREATE INDEX events_payload_idx ON sales.events USING gin (payload);
CREATE TABLE audit.event_notes (event_id bigint, happened_on date, note text, FOREIGN KEY (event_id, happened_on) REFERENCES sales.events(id, happened_on));
CREATE FOREIGN DATA WRAPPER airlock_dummy_fdw;
CREATE SERVER airlock_dummy FOREIGN DATA WRAPPER airlock_dummy_fdw;
CREATE FOREIGN TABLE public.remote_things (id int NOT NULL, label text) SERVER airlock_dummy;
COMMENT ON FOREIGN TABLE public.remote_things IS 'Lives elsewhere';
CREATE VIEW sales.order_totals AS SELECT o.id, o.customer_id, sum(l.qty) AS items FROM sales.orders o JOIN sales.order_lines l ON l.order_id = o.id GROUP BY o.id, o.customer_id;
COMMENT ON VIEW sales.order_totals IS 'Items per order';
CREATE VIEW "select"."view" AS SELECT "where", "group" FROM "select"."from";
CREATE MATERIALIZED VIEW sales.customer_stats AS SELECT customer_id, count(*) AS orders FROM sales.orders GROUP BY customer_id;
CREATE UNIQUE INDEX customer_stats_pk ON sales.customer_stats (customer_id);
COMMENT ON MATERIALIZED VIEW sales.customer_stats IS 'Orders per customer';
CREATE SEQUENCE "Inventory".sku_seq START 1000 INCREMENT 5;
COMMENT ON SEQUENCE "Inventory".sku_seq IS 'SKU numbers';
CREATE FUNCTION sales.order_count(customer bigint) RETURNS bigint LANGUAGE sql STABLE AS $f$ SELECT count(*) FROM sales.orders WHERE customer_id = customer $f$;
CREATE FUNCTION sales.order_count(customer bigint, since date) RETURNS bigint LANGUAGE sql STABLE AS $f$ SELECT count(*) FROM sales.orders WHERE customer_id = customer AND placed_at >= since $f$;
COMMENT ON FUNCTION sales.order_count(bigint) IS 'Orders of one customer';
CREATE PROCEDURE audit.purge(days int) LANGUAGE sql AS $f$ DELETE FROM audit.event_notes WHERE false $f$;
ALTER TABLE sales.orders ADD COLUMN obsolete int;
ALTER TABLE sales.orders DROP COLUMN obsolete;
ALTER TABLE sales.orders ADD COLUMN note text;
ALTER TABLE sales.order_lines ADD COLUMN qty_doubled int GENERATED ALWAYS AS (qty * 2) STORED;
DO $d$ BEGIN FOR i IN 1..40 LOOP
  EXECUTE format('CREATE TABLE "Inventory".%I (id int PRIMARY KEY, sku char(12) REFERENCES "Inventory"."Products"(sku), owner_id bigint REFERENCES sales.customers(id), note varchar(%s))', 'bin_' || lpad(i::text, 2, '0'), i * 10);
  EXECUTE format('COMMENT ON TABLE "Inventory".%I IS %L', 'bin_' || lpad(i::text, 2, '0'), 'Storage bin ' || i);
END LOOP; END $d$;
INSERT INTO sales.customers (email, "Full Name") SELECT 'c' || g || '@example.com', 'Customer ' || g FROM generate_series(1, 500) g;
INSERT INTO sales.orders (customer_id, status) SELECT 1 + g % 500, 'paid' FROM generate_series(1, 2000) g;
INSERT INTO sales.events SELECT g, DATE '2024-06-01' + g % 500, '{"k": 1}' FROM generate_series(1, 3000) g;
REFRESH MATERIALIZED VIEW sales.customer_stats;
CREATE SCHEMA geo;
CREATE DOMAIN geo.meters AS numeric(10,2);
ALTER TABLE sales.orders ADD COLUMN distance geo.meters, ADD COLUMN code text COLLATE "C";
CREATE EXTENSION pg_buffercache;
CREATE EXTENSION citext SCHEMA geo;
ANALYZE;
"#;

/// An extension owning a view and a function: the objects name it.
const EXTENSION_OWNED: (&str, &str) = ("pg_buffercache", "pg_buffercache");

/// The SQL the test's catalog queries use for an object's owning extension.
fn extension_of(catalog: &str, oid: &str) -> String {
    format!(
        "(SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
          WHERE d.classid = '{catalog}'::regclass AND d.objid = {oid} \
          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e')"
    )
}

/// User schemas, as the plugin defines them (everything but `pg_*` and information_schema).
const USER: &str = "!~ '^pg_' AND {} <> 'information_schema'";

fn user(column: &str) -> String {
    format!("{column} {}", USER.replace("{}", column))
}

/// What the catalog says, one query per asset kind, as `{kind: {path: attributes}}`.
/// These queries are the test's own, mostly over information_schema, and do not share code
/// with the plugin.
fn catalog(pg: &PgCluster, db: &str) -> BTreeMap<String, BTreeMap<Vec<String>, Value>> {
    let queries: Vec<(&str, String)> = vec![
        (
            "database",
            "SELECT json_agg(json_build_object('path', json_build_array(datname), 'attributes', json_build_object(\
               'engine', 'postgres', 'server_version', current_setting('server_version'), \
               'encoding', pg_encoding_to_char(encoding), 'owner', pg_get_userbyid(datdba), \
               'comment', shobj_description(oid, 'pg_database')))) \
             FROM pg_database WHERE datname = current_database()"
                .to_string(),
        ),
        (
            "schema",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(catalog_name, schema_name), \
                   'attributes', json_build_object('owner', schema_owner, \
                   'comment', obj_description(to_regnamespace(quote_ident(schema_name))::oid, 'pg_namespace')))) \
                 FROM information_schema.schemata WHERE {}",
                user("schema_name")
            ),
        ),
        (
            "table",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(t.table_catalog, t.table_schema, t.table_name), \
                   'attributes', json_build_object( \
                     'table_type', CASE WHEN c.relkind = 'p' THEN 'partitioned' WHEN t.table_type = 'FOREIGN' THEN 'foreign' ELSE 'table' END, \
                     'comment', obj_description(c.oid, 'pg_class'), \
                     'row_count_estimate', CASE WHEN c.reltuples >= 0 THEN round(c.reltuples)::bigint END, \
                     'partition_key', pg_get_partkeydef(c.oid), \
                     'partition_of', (SELECT json_build_object('schema', pn.nspname, 'table', p.relname) \
                        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace \
                        WHERE i.inhrelid = c.oid AND c.relispartition), \
                     'partition_bound', pg_get_expr(c.relpartbound, c.oid), \
                     'owner', pg_get_userbyid(c.relowner), 'extension', {}))) \
                 FROM information_schema.tables t \
                 JOIN pg_class c ON c.oid = (quote_ident(t.table_schema) || '.' || quote_ident(t.table_name))::regclass \
                 WHERE t.table_type IN ('BASE TABLE', 'FOREIGN') AND {}",
                extension_of("pg_class", "c.oid"),
                user("t.table_schema")
            ),
        ),
        (
            "view",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(v.table_catalog, v.table_schema, v.table_name), \
                   'attributes', json_build_object('view_definition', v.view_definition, \
                   'comment', obj_description(c.oid, 'pg_class'), 'owner', pg_get_userbyid(c.relowner), \
                   'extension', {}))) \
                 FROM information_schema.views v \
                 JOIN pg_class c ON c.oid = (quote_ident(v.table_schema) || '.' || quote_ident(v.table_name))::regclass \
                 WHERE {}",
                extension_of("pg_class", "c.oid"),
                user("v.table_schema")
            ),
        ),
        (
            "materialized_view",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(current_database(), m.schemaname, m.matviewname), \
                   'attributes', json_build_object('view_definition', m.definition, \
                   'comment', obj_description(c.oid, 'pg_class'), \
                   'row_count_estimate', CASE WHEN c.reltuples >= 0 THEN round(c.reltuples)::bigint END, \
                   'owner', m.matviewowner, 'extension', {}))) \
                 FROM pg_matviews m \
                 JOIN pg_class c ON c.oid = (quote_ident(m.schemaname) || '.' || quote_ident(m.matviewname))::regclass \
                 WHERE {}",
                extension_of("pg_class", "c.oid"),
                user("m.schemaname")
            ),
        ),
        (
            "sequence",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(s.sequence_catalog, s.sequence_schema, s.sequence_name), \
                   'attributes', json_build_object('data_type', s.data_type, 'start_value', s.start_value::bigint, \
                   'increment', s.increment::bigint, 'min_value', s.minimum_value::bigint, \
                   'max_value', s.maximum_value::bigint, 'cycle', s.cycle_option = 'YES', \
                   'comment', obj_description(c.oid, 'pg_class'), \
                   'owner', pg_get_userbyid(c.relowner), 'extension', {}))) \
                 FROM information_schema.sequences s \
                 JOIN pg_class c ON c.oid = (quote_ident(s.sequence_schema) || '.' || quote_ident(s.sequence_name))::regclass \
                 WHERE {}",
                extension_of("pg_class", "c.oid"),
                user("s.sequence_schema")
            ),
        ),
        (
            "routine",
            format!(
                "SELECT json_agg(json_build_object('kind', CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, \
                   'path', json_build_array(current_database(), n.nspname, \
                     p.proname || '(' || coalesce(array_to_string(ARRAY(SELECT format_type(p.proargtypes[i], NULL) \
                       FROM generate_series(0, p.pronargs - 1) i ORDER BY i), ', '), '') || ')'), \
                   'attributes', json_build_object('name', p.proname, 'arguments', pg_get_function_arguments(p.oid), \
                     'function_type', CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' WHEN 'p' THEN 'procedure' ELSE 'function' END, \
                     'return_type', CASE WHEN p.prokind <> 'p' THEN pg_get_function_result(p.oid) END, \
                     'language', l.lanname, 'comment', obj_description(p.oid, 'pg_proc'), \
                     'owner', pg_get_userbyid(p.proowner), 'extension', {}))) \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
                 WHERE {}",
                extension_of("pg_proc", "p.oid"),
                user("n.nspname")
            ),
        ),
        (
            "column",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(current_database(), x.s, x.t, x.c), 'attributes', x.a)) FROM ( \
                   SELECT c.table_schema AS s, c.table_name AS t, c.column_name AS c, json_build_object( \
                     'ordinal', c.ordinal_position, \
                     'data_type', format_type(a.atttypid, a.atttypmod), \
                     'nullable', c.is_nullable = 'YES', \
                     'default', c.column_default, \
                     'generated', CASE WHEN c.is_generated = 'ALWAYS' THEN \
                       json_build_object('kind', 'stored', 'expression', c.generation_expression) END, \
                     'identity', lower(replace(c.identity_generation, ' ', '_')), \
                     'collation', CASE WHEN c.collation_schema = 'pg_catalog' THEN c.collation_name \
                       ELSE c.collation_schema || '.' || c.collation_name END, \
                     'comment', col_description(a.attrelid, a.attnum), \
                     'primary_key_position', (SELECT k.ordinal_position FROM information_schema.table_constraints tc \
                        JOIN information_schema.key_column_usage k ON k.constraint_schema = tc.constraint_schema \
                          AND k.constraint_name = tc.constraint_name AND k.table_name = tc.table_name \
                        WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema \
                          AND tc.table_name = c.table_name AND k.column_name = c.column_name)) AS a \
                   FROM information_schema.columns c \
                   JOIN pg_attribute a ON a.attrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass \
                     AND a.attname = c.column_name \
                   WHERE {} \
                   UNION ALL \
                   SELECT n.nspname, cl.relname, a.attname, json_build_object('ordinal', a.attnum, \
                     'data_type', format_type(a.atttypid, a.atttypmod), 'nullable', NOT a.attnotnull, 'default', NULL, \
                     'generated', NULL, 'identity', NULL, 'collation', NULL, 'comment', col_description(cl.oid, a.attnum), 'primary_key_position', NULL) \
                   FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid JOIN pg_namespace n ON n.oid = cl.relnamespace \
                   WHERE cl.relkind = 'm' AND a.attnum > 0 AND NOT a.attisdropped AND {}) x",
                user("c.table_schema"),
                user("n.nspname")
            ),
        ),
        (
            "constraint",
            // PostgreSQL adds internal copies of a foreign key for each partition of a
            // partitioned table it references, on the same table (conparentid set); they are
            // not constraints anyone declared, and the plugin skips them.
            format!(
                "SELECT json_agg(json_build_object('kind', con.contype, \
                   'path', json_build_array(current_database(), n.nspname, c.relname, con.conname), \
                   'attributes', CASE con.contype \
                   WHEN 'f' THEN json_build_object('columns', cols.k, 'referenced_schema', rn.nspname, \
                     'referenced_table', rc.relname, 'referenced_columns', cols.r, \
                     'on_update', rco.update_rule, 'on_delete', rco.delete_rule, \
                     'match', CASE rco.match_option WHEN 'NONE' THEN 'SIMPLE' ELSE rco.match_option END, \
                     'deferrable', con.condeferrable, 'validated', con.convalidated, \
                     'definition', pg_get_constraintdef(con.oid)) \
                   WHEN 'c' THEN json_build_object('columns', coalesce(cols.k, '[]'), 'definition', pg_get_constraintdef(con.oid), \
                     'validated', con.convalidated) \
                   ELSE json_build_object('columns', cols.k, 'deferrable', con.condeferrable, \
                     'definition', pg_get_constraintdef(con.oid)) END)) \
                 FROM pg_constraint con \
                 JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_class rc ON rc.oid = con.confrelid LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace \
                 LEFT JOIN information_schema.referential_constraints rco \
                   ON rco.constraint_schema = n.nspname AND rco.constraint_name = con.conname \
                 CROSS JOIN LATERAL (SELECT \
                   (SELECT json_agg(a.attname ORDER BY i) FROM generate_subscripts(con.conkey, 1) i \
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[i]) AS k, \
                   (SELECT json_agg(a.attname ORDER BY i) FROM generate_subscripts(con.confkey, 1) i \
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = con.confkey[i]) AS r) cols \
                 WHERE con.contype IN ('p', 'u', 'f', 'c') AND {} \
                   AND NOT (con.conparentid <> 0 AND EXISTS (SELECT 1 FROM pg_constraint p \
                     WHERE p.oid = con.conparentid AND p.conrelid = con.conrelid))",
                user("n.nspname")
            ),
        ),
        (
            "index",
            format!(
                "SELECT json_agg(json_build_object('path', json_build_array(current_database(), x.schemaname, x.tablename, x.indexname), \
                   'attributes', json_build_object('unique', i.indisunique, 'primary', i.indisprimary, \
                   'columns', (SELECT json_agg(CASE WHEN i.indkey[k - 1] <> 0 \
                       THEN (SELECT attname::text FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[k - 1]) \
                       ELSE pg_get_indexdef(i.indexrelid, k, true) END ORDER BY k) FROM generate_series(1, i.indnkeyatts) k), \
                   'include_columns', coalesce((SELECT json_agg(a.attname ORDER BY k) FROM generate_series(i.indnkeyatts + 1, i.indnatts) k \
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1]), '[]'), \
                   'method', am.amname, 'predicate', pg_get_expr(i.indpred, i.indrelid), 'definition', x.indexdef))) \
                 FROM pg_indexes x \
                 JOIN pg_index i ON i.indexrelid = (quote_ident(x.schemaname) || '.' || quote_ident(x.indexname))::regclass \
                 JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam \
                 WHERE {}",
                user("x.schemaname")
            ),
        ),
    ];
    let mut out: BTreeMap<String, BTreeMap<Vec<String>, Value>> = BTreeMap::new();
    for (kind, sql) in queries {
        // The search_path the host pins, so that both sides print names alike.
        let rows = pg.query_json(db, &format!("SET search_path = pg_catalog; {sql}"));
        for row in rows.as_array().cloned().unwrap_or_default() {
            let kind = match (kind, row.get("kind").and_then(Value::as_str)) {
                ("routine", Some(k)) => k.to_string(),
                ("constraint", Some("p")) => "primary_key".into(),
                ("constraint", Some("u")) => "unique_key".into(),
                ("constraint", Some("f")) => "foreign_key".into(),
                ("constraint", Some(_)) => "check_constraint".into(),
                _ => kind.to_string(),
            };
            let path = path_of(&row);
            let previous = out
                .entry(kind.clone())
                .or_default()
                .insert(path.clone(), row["attributes"].clone());
            assert!(
                previous.is_none(),
                "duplicate {kind} {path:?} in the catalog"
            );
        }
    }
    out
}

fn path_of(v: &Value) -> Vec<String> {
    v["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(|s| s.as_str().expect("segment").to_string())
        .collect()
}

const KINDS: &[&str] = &[
    "database",
    "schema",
    "table",
    "view",
    "materialized_view",
    "sequence",
    "function",
    "procedure",
    "column",
    "primary_key",
    "unique_key",
    "foreign_key",
    "check_constraint",
    "index",
];

fn output(run_dir: &Path) -> BTreeMap<String, BTreeMap<Vec<String>, Value>> {
    let mut out = BTreeMap::new();
    for kind in KINDS {
        let mut assets = BTreeMap::new();
        for line in read_jsonl(run_dir, kind) {
            assert_eq!(line["kind"], *kind);
            let path = path_of(&line);
            assert!(
                assets
                    .insert(path.clone(), line["attributes"].clone())
                    .is_none(),
                "duplicate {kind} {path:?} in the output"
            );
        }
        if !assets.is_empty() {
            out.insert(kind.to_string(), assets);
        }
    }
    out
}

/// Compares kind by kind, naming the first difference.
fn assert_same(
    got: &BTreeMap<String, BTreeMap<Vec<String>, Value>>,
    want: &BTreeMap<String, BTreeMap<Vec<String>, Value>>,
) {
    let kinds: Vec<&String> = got.keys().chain(want.keys()).collect();
    for kind in kinds {
        let empty = BTreeMap::new();
        let g = got.get(kind).unwrap_or(&empty);
        let w = want.get(kind).unwrap_or(&empty);
        let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).collect();
        let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "{kind}: missing from the output: {missing:?}"
        );
        assert!(extra.is_empty(), "{kind}: not in the catalog: {extra:?}");
        for (path, attrs) in w {
            assert_eq!(&g[path], attrs, "{kind} {path:?}");
        }
    }
}

/// The forms a secret could leak in: raw, base64, hex and URL-encoded.
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let url: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        secret.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret)
            .into_bytes(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        url.clone().into_bytes(),
        url.to_lowercase().into_bytes(),
    ]
}

fn assert_no_canary(dir: &Path) {
    let files = all_files(dir);
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for form in encodings(PASSWORD) {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                "{} holds the password ({})",
                file.display(),
                String::from_utf8_lossy(&form)
            );
        }
    }
}

struct Server {
    pg: PgCluster,
    ws: Workspace,
    home: Home,
    guid: String,
    ca_file: PathBuf,
}

fn server_with_schema() -> Server {
    let ca = ca("airlock test CA");
    let (cert, key) = server_cert(&ca, &["127.0.0.1"]);
    let pg = PgCluster::start_tls(&cert, &key);
    pg.create_database("shopdb");
    pg.psql("shopdb", SCHEMA);
    pg.create_database("warehouse");
    pg.psql(
        "warehouse",
        "CREATE TABLE stock (sku char(12) PRIMARY KEY, qty int); COMMENT ON DATABASE warehouse IS 'Stock';",
    );
    // A metadata reader: no privileges on any table, yet it sees the whole catalog.
    pg.create_user("reader", PASSWORD);
    // A search_path that would print `meters` for `geo.meters` and `nextval('orders_id_seq')`
    // for sales' sequences, were it not pinned by the host.
    pg.psql(
        "postgres",
        "ALTER ROLE reader SET search_path = sales, geo, public",
    );
    let ws = Workspace::new();
    let ca_file = write(ws.path(), "ca.pem", &ca.pem);
    let home = Home::new(ws.path());
    let guid = home.add_password("reader", PASSWORD, &[&pg.endpoint()]);
    Server {
        pg,
        ws,
        home,
        guid,
        ca_file,
    }
}

impl Server {
    fn config(&self, source_extra: &str, extra: &str) -> airlock::config::LoadedConfig {
        self.ws.config(&format!(
            "[source]\nplugin = \"{}\"\nendpoint = \"{}\"\ncredential = \"{}\"\n\
             tls = {{ mode = \"verify-full\", ca_file = \"{}\" }}\n{source_extra}\n\n\
             [sink]\nkind = \"local\"\ndir = \"out\"\n\n{extra}",
            plugin("postgres").display(),
            self.pg.endpoint(),
            self.guid,
            self.ca_file.display()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extraction_equals_the_servers_catalog() {
    let s = server_with_schema();
    let rt = runtime();
    let cfg = s.config("database = \"shopdb\"", "");
    let report = run_in(&rt, &cfg, &s.home).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    let got = output(&report.output_dir);
    let want = catalog(&s.pg, "shopdb");
    assert!(want["table"].len() >= 50, "{} tables", want["table"].len());
    assert_same(&got, &want);

    // Spot checks that the schema exercises what it should (and the comparison is not
    // vacuous).
    let tables = &got["table"];
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        tables[&path(&["shopdb", "sales", "events"])]["table_type"],
        "partitioned"
    );
    assert_eq!(
        tables[&path(&["shopdb", "sales", "events"])]["partition_key"],
        "RANGE (happened_on)"
    );
    assert_eq!(
        tables[&path(&["shopdb", "sales", "events_2024"])]["partition_of"],
        serde_json::json!({"schema": "sales", "table": "events"})
    );
    assert_eq!(
        tables[&path(&["shopdb", "public", "remote_things"])]["table_type"],
        "foreign"
    );
    assert_eq!(
        tables[&path(&["shopdb", "données", "clients_été"])]["comment"],
        "Clients de l'été ☀"
    );
    assert_eq!(
        tables[&path(&["shopdb", "sales", "customers"])]["row_count_estimate"],
        500
    );
    let fk = &got["foreign_key"][&path(&["shopdb", "données", "clients_été", "clé_produit"])];
    assert_eq!(fk["referenced_schema"], "Inventory");
    assert_eq!(fk["referenced_table"], "Products");
    assert_eq!(fk["on_update"], "SET NULL");
    let col = &got["column"][&path(&["shopdb", "sales", "orders", "note"])];
    assert_eq!(col["ordinal"], 7, "dropped columns leave a gap");
    assert!(got["column"].contains_key(&path(&["shopdb", "Inventory", "Products", "quote\"d"])));
    assert!(got["view"].contains_key(&path(&["shopdb", "select", "view"])));
    assert_eq!(got["materialized_view"].len(), 1);
    assert_eq!(got["procedure"].len(), 1);
    let own_functions = got["function"]
        .values()
        .filter(|f| f["extension"].is_null())
        .count();
    assert_eq!(own_functions, 2);
    // Names printed schema-qualified whatever the login's search_path (the host pins it),
    // owning extensions and collations.
    let orders = |c: &str| got["column"][&path(&["shopdb", "sales", "orders", c])].clone();
    assert_eq!(orders("distance")["data_type"], "geo.meters");
    assert_eq!(
        orders("id")["default"],
        "nextval('sales.orders_id_seq'::regclass)"
    );
    assert_eq!(orders("code")["collation"], "C");
    assert_eq!(orders("note")["collation"], serde_json::Value::Null);
    let (extension, view) = EXTENSION_OWNED;
    assert_eq!(
        got["view"][&path(&["shopdb", "public", view])]["extension"],
        extension
    );
    assert!(got["function"]
        .iter()
        .any(|(p, f)| p[1] == "geo" && f["extension"] == "citext"));
    assert_eq!(
        got["table"][&path(&["shopdb", "sales", "orders"])]["extension"],
        serde_json::Value::Null
    );
    let customers_id = &got["column"][&path(&["shopdb", "sales", "customers", "id"])];
    assert_eq!(customers_id["identity"], "always");
    let doubled = &got["column"][&path(&["shopdb", "sales", "order_lines", "qty_doubled"])];
    assert_eq!(
        doubled["generated"],
        serde_json::json!({"kind": "stored", "expression": "(qty * 2)"})
    );
    assert_eq!(manifest["counts"]["table"]["kept"], want["table"].len());

    assert_no_canary(s.ws.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_database_and_pushdown_never_drops_what_the_host_keeps() {
    let s = server_with_schema();
    let rt = runtime();
    let filters = "[filters]\nexclude = [\"shopdb.sales\", \"*.Inventory.bin_1?\", \"shopdb.*.\\\"odd.name\\\"\", \
                   \"**.clients_été.année\", \"re:.*_3[0-9]\", \"postgres\"]\n";

    // All databases, with and without pushdown: the host's output must be identical.
    let mut outputs = Vec::new();
    for pushdown in [true, false] {
        let cfg = s.config(
            &format!("databases = [\"*\"]\n[source.options]\npushdown = {pushdown}"),
            filters,
        );
        let report = run_in(&rt, &cfg, &s.home).await.expect("run succeeds");
        verify_run_dir(&report.output_dir);
        outputs.push(output(&report.output_dir));
    }
    assert_eq!(outputs[0], outputs[1]);
    let got = &outputs[0];

    let dbs: Vec<_> = got["database"].keys().cloned().collect();
    assert_eq!(
        dbs,
        vec![vec!["shopdb".to_string()], vec!["warehouse".to_string()]]
    );
    assert_eq!(
        got["database"][&vec!["warehouse".to_string()]]["comment"],
        "Stock"
    );

    // Exactly the catalog minus what the filters drop.
    let mut want = catalog(&s.pg, "shopdb");
    for (kind, assets) in catalog(&s.pg, "warehouse") {
        want.entry(kind).or_default().extend(assets);
    }
    let excluded = |p: &Vec<String>| {
        let q = |n: usize| p[..n.min(p.len())].join(".");
        p[0] == "postgres"
            || q(2) == "shopdb.sales"
            || (p.len() >= 3 && p[1] == "Inventory" && p[2].len() == 6 && p[2].starts_with("bin_1"))
            || (p.len() >= 3 && p[0] == "shopdb" && p[2] == "odd.name")
            || (p.len() == 4 && p[2] == "clients_été" && p[3] == "année")
            || p.iter().enumerate().any(|(i, _)| {
                let name = p[..=i].join(".");
                name.len() >= 3
                    && name.ends_with(|c: char| c.is_ascii_digit())
                    && name[..name.len() - 1].ends_with("_3")
            })
    };
    for assets in want.values_mut() {
        assets.retain(|p, _| !excluded(p));
    }
    want.retain(|_, a| !a.is_empty());
    assert!(want["table"].len() > 20);
    assert_same(got, &want);
    assert_no_canary(s.ws.path());
}

/// A host-memory budget for calling the driver directly, as a run's default.
fn budget() -> std::sync::Arc<airlock::runtime::budget::MemoryBudget> {
    airlock::runtime::budget::MemoryBudget::of_mb(256)
}
