//! The Glue connector against moto_server's Glue API on 127.0.0.1: a catalog the test creates
//! (21 databases, 525 tables) is extracted exactly, over the host's HTTP capability with
//! SigV4 signed by the host; the AWS secret key never appears in any artifact.

use std::collections::{BTreeMap, BTreeSet};

use airlock::home::NewCredential;
use airlock::secrets::SecretString;
use airlock_tests::moto::Moto;
use airlock_tests::{plugin, read_jsonl, run_in, runtime, verify_run_dir, Home, Workspace};
use serde_json::{json, Value};

const ACCESS_KEY: &str = "AKIAAIRLOCKTEST00001";
const SECRET_KEY: &str = "s3cr3t/Glue+Key0123456789abcdefghijKLMNOP";
const DATABASES: usize = 21;
const TABLES_PER_DB: usize = 25;

struct Expected {
    schemas: BTreeMap<String, Value>,
    tables: BTreeMap<String, Value>,
    views: BTreeSet<String>,
    /// qualified name -> (ordinal, data type, partition key)
    columns: BTreeMap<String, (u64, String, bool)>,
}

async fn create_catalog(moto: &Moto) -> Expected {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut e = Expected {
        schemas: BTreeMap::new(),
        tables: BTreeMap::new(),
        views: BTreeSet::new(),
        columns: BTreeMap::new(),
    };
    for d in 0..DATABASES {
        let db = format!("db_{d:02}");
        let (status, body) = moto
            .glue_call(
                &client,
                "CreateDatabase",
                json!({"DatabaseInput": {"Name": db, "Description": format!("database {d}"),
                    "LocationUri": format!("s3://lake/{db}/")}}),
            )
            .await;
        assert_eq!(status, 200, "CreateDatabase: {body}");
        e.schemas
            .insert(format!("lake.{db}"), json!(format!("database {d}")));
        for t in 0..TABLES_PER_DB {
            let name = format!("t_{t:03}");
            let ncols = 2 + (t % 4);
            let columns: Vec<Value> = (0..ncols)
                .map(|c| json!({"Name": format!("c{c}"), "Type": if c == 0 { "bigint" } else { "string" },
                    "Comment": format!("column {c}")}))
                .collect();
            let partitioned = t % 3 == 0;
            let partition_keys: Vec<Value> = if partitioned {
                vec![
                    json!({"Name": "dt", "Type": "date"}),
                    json!({"Name": "region", "Type": "string"}),
                ]
            } else {
                vec![]
            };
            let view = t % 10 == 9;
            let location = format!("s3://lake/{db}/{name}/");
            let mut input = json!({
                "Name": name,
                "Description": format!("table {t} of {db}"),
                "Owner": "etl",
                "TableType": if view { "VIRTUAL_VIEW" } else { "EXTERNAL_TABLE" },
                "Parameters": {"classification": "parquet", "rows": t.to_string()},
                "StorageDescriptor": {
                    "Columns": columns,
                    "Location": location,
                    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"}
                },
                "PartitionKeys": partition_keys,
            });
            if view {
                input["ViewOriginalText"] = json!(format!("SELECT * FROM {db}.t_000"));
            }
            let (status, body) = moto
                .glue_call(
                    &client,
                    "CreateTable",
                    json!({"DatabaseName": db, "TableInput": input}),
                )
                .await;
            assert_eq!(status, 200, "CreateTable: {body}");
            let qn = format!("lake.{db}.{name}");
            if view {
                e.views.insert(qn.clone());
            }
            // A view's storage (location, formats, partitions) is not part of it in the
            // asset contract.
            e.tables.insert(
                qn.clone(),
                if view {
                    json!({"rows": t.to_string()})
                } else {
                    json!({"location": location, "rows": t.to_string(), "partitioned": partitioned})
                },
            );
            for c in 0..ncols {
                let ty = if c == 0 { "bigint" } else { "string" };
                e.columns
                    .insert(format!("{qn}.c{c}"), (c as u64 + 1, ty.into(), false));
            }
            if partitioned {
                e.columns
                    .insert(format!("{qn}.dt"), (ncols as u64 + 1, "date".into(), true));
                e.columns.insert(
                    format!("{qn}.region"),
                    (ncols as u64 + 2, "string".into(), true),
                );
            }
        }
    }
    e
}

#[tokio::test]
async fn glue_catalog_is_extracted_exactly_with_sigv4_done_by_the_host() {
    let moto = Moto::start();
    let expected = create_catalog(&moto).await;
    assert!(expected.schemas.len() >= 20 && expected.tables.len() >= 500);

    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home
        .inner()
        .add_credential(
            NewCredential {
                kind: "aws-access-key".into(),
                username: Some(ACCESS_KEY.into()),
                engine: None,
                destinations: vec![format!("127.0.0.1:{}", moto.port())],
                description: None,
                privileged: false,
            },
            SecretString::new(SECRET_KEY.into()),
        )
        .unwrap();
    let path = ws.path().join("airlock.toml");
    std::fs::write(
        &path,
        format!(
            r#"[source]
plugin = "{plugin}"
credential = "{guid}"
auth = {{ aws_region = "us-east-1", aws_service = "glue", allow_cleartext = true }}

[source.options]
endpoint = "{endpoint}"
catalog = "lake"

[network]
allow = [{allow}]

[sink]
kind = "local"
dir = "out"
"#,
            plugin = plugin("glue").display(),
            endpoint = moto.endpoint(),
            allow = glue_read_only(moto.port()),
        ),
    )
    .unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    let report = run_in(&runtime(), &cfg, &home)
        .await
        .expect("the Glue run succeeds");
    verify_run_dir(&report.output_dir);
    let dir = &report.output_dir;

    let dbs = read_jsonl(dir, "database");
    assert_eq!(dbs.len(), 1);
    assert_eq!(dbs[0]["qualified_name"], "lake");

    let schemas: BTreeMap<String, Value> = read_jsonl(dir, "schema")
        .into_iter()
        .map(|s| {
            (
                s["qualified_name"].as_str().unwrap().to_string(),
                s["attributes"]["comment"].clone(),
            )
        })
        .collect();
    assert_eq!(schemas, expected.schemas);

    let mut tables = BTreeMap::new();
    let mut views = BTreeSet::new();
    for (kind, list) in [
        ("table", read_jsonl(dir, "table")),
        ("view", read_jsonl(dir, "view")),
    ] {
        for t in list {
            let qn = t["qualified_name"].as_str().unwrap().to_string();
            let a = &t["attributes"];
            assert_eq!(
                a["extra"]["parameters"]["classification"], "parquet",
                "{qn}"
            );
            assert_eq!(a["owner"], "etl");
            let rows = &a["extra"]["parameters"]["rows"];
            if kind == "table" {
                assert!(a["serde"].as_str().unwrap().ends_with("ParquetHiveSerDe"));
                let pk = a["partition_keys"].as_array().unwrap();
                tables.insert(
                    qn.clone(),
                    json!({"location": a["location"], "rows": rows, "partitioned": !pk.is_empty()}),
                );
            } else {
                assert!(a.get("location").is_none(), "{qn}: {a}");
                tables.insert(qn.clone(), json!({"rows": rows}));
            }
            if kind == "view" {
                assert!(a["view_definition"].as_str().unwrap().starts_with("SELECT"));
                views.insert(qn);
            }
        }
    }
    assert_eq!(tables, expected.tables);
    assert_eq!(views, expected.views);

    let columns: BTreeMap<String, (u64, String, bool)> = read_jsonl(dir, "column")
        .into_iter()
        .map(|c| {
            let a = &c["attributes"];
            (
                c["qualified_name"].as_str().unwrap().to_string(),
                (
                    a["ordinal"].as_u64().unwrap(),
                    a["data_type"].as_str().unwrap().to_string(),
                    a["partition_key"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(columns, expected.columns);

    // The secret key is in no published file and no audit entry; the access key id is not a
    // secret but the signature travelled only to the credential's destination.
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET_KEY));
    }
    let audit = home
        .inner()
        .state()
        .audit_entries(None, Some(&guid))
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "login" && e.outcome == "ok"),
        "{audit:?}"
    );
    for e in &audit {
        assert!(!format!("{e:?}").contains(SECRET_KEY));
    }
}

/// A loopback Glue API that paginates (moto returns every item in one page): one database per
/// `GetDatabases` page and two tables per `GetTables` page, each table's description `pad`
/// bytes long. It records each request's head.
fn paginating_glue(pad: usize) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let lower = head.to_ascii_lowercase();
            let len: usize = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let token: usize = req["NextToken"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let answer = if lower.contains("x-amz-target: awsglue.getdatabases") {
                let next = if token + 1 < 3 {
                    json!((token + 1).to_string())
                } else {
                    Value::Null
                };
                json!({"DatabaseList": [{"Name": format!("pdb{token}")}], "NextToken": next})
            } else {
                let db = req["DatabaseName"].as_str().unwrap_or("").to_string();
                let tables: Vec<Value> = (token * 2..(token * 2 + 2).min(5))
                    .map(|t| {
                        json!({"Name": format!("pt{t}"), "DatabaseName": db, "Description": "d".repeat(pad),
                        "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "int"}]}})
                    })
                    .collect();
                let next = if token * 2 + 2 < 5 {
                    json!((token + 1).to_string())
                } else {
                    Value::Null
                };
                json!({"TableList": tables, "NextToken": next})
            };
            log.lock().unwrap().push(head);
            let text = answer.to_string();
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                )
                .as_bytes(),
            );
        }
    });
    (port, seen)
}

/// The allow entry of the README's Glue example for a server on `port`: only POST and only
/// the read operations the plugin sends.
fn glue_read_only(port: u16) -> String {
    glue_entry(port, &["AWSGlue.GetDatabases", "AWSGlue.GetTables"])
}

fn glue_entry(port: u16, targets: &[&str]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "{{ dest = \"127.0.0.1:{port}\", methods = [\"POST\"], paths = [\"/\"], aws_targets = [{}] }}",
        targets.join(", ")
    )
}

/// A workspace whose Glue workflow reads the paginating server on `port`, with `extra` TOML
/// appended (e.g. a `[filters]` table).
fn paginated_workflow(port: u16, extra: &str) -> (Workspace, Home, airlock::config::LoadedConfig) {
    paginated_workflow_allowing(port, &glue_read_only(port), extra)
}

/// As [`paginated_workflow`] with `allow` as the one `[network] allow` entry.
fn paginated_workflow_allowing(
    port: u16,
    allow: &str,
    extra: &str,
) -> (Workspace, Home, airlock::config::LoadedConfig) {
    let ws = Workspace::new();
    let home = Home::new(ws.path());
    let guid = home
        .inner()
        .add_credential(
            NewCredential {
                kind: "aws-access-key".into(),
                username: Some(ACCESS_KEY.into()),
                engine: None,
                destinations: vec![format!("127.0.0.1:{port}")],
                description: None,
                privileged: false,
            },
            SecretString::new(SECRET_KEY.into()),
        )
        .unwrap();
    let path = ws.path().join("airlock.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nplugin = \"{}\"\ncredential = \"{guid}\"\nauth = {{ aws_region = \"eu-west-1\", aws_service = \"glue\", allow_cleartext = true }}\n\n[source.options]\nendpoint = \"http://127.0.0.1:{port}\"\n\n[network]\nallow = [{allow}]\n\n[sink]\nkind = \"local\"\ndir = \"out\"\n\n{extra}",
            plugin("glue").display()
        ),
    )
    .unwrap();
    let cfg = airlock::config::LoadedConfig::load(&path).unwrap();
    (ws, home, cfg)
}

fn names(run_dir: &std::path::Path, kind: &str) -> BTreeSet<String> {
    read_jsonl(run_dir, kind)
        .iter()
        .map(|s| s["qualified_name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn glue_pages_are_followed_and_every_request_is_signed_by_the_host() {
    let (port, seen) = paginating_glue(0);
    let (_ws, home, cfg) = paginated_workflow(port, "");
    let report = run_in(&runtime(), &cfg, &home).await.expect("runs");
    assert_eq!(
        names(&report.output_dir, "schema"),
        ["glue.pdb0", "glue.pdb1", "glue.pdb2"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let tables = names(&report.output_dir, "table");
    let want: BTreeSet<String> = (0..3)
        .flat_map(|d| (0..5).map(move |t| format!("glue.pdb{d}.pt{t}")))
        .collect();
    assert_eq!(tables, want);
    // 3 GetDatabases pages + 3 databases x 3 GetTables pages.
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 12, "{heads:?}");
    for h in &heads {
        let lower = h.to_ascii_lowercase();
        assert!(
            lower.contains(&format!(
                "authorization: aws4-hmac-sha256 credential={}/",
                ACCESS_KEY.to_ascii_lowercase()
            )) && lower.contains("/eu-west-1/glue/aws4_request"),
            "signed by the host: {h}"
        );
        assert!(lower.contains("x-amz-date:"), "{h}");
        assert!(!h.contains(SECRET_KEY));
    }
}

/// The scope is pushed down: databases the filters exclude or can never include are not
/// listed (no `GetTables` call), and the output equals what the host's filter keeps.
#[tokio::test]
async fn glue_skips_listing_databases_outside_the_scope() {
    let (port, seen) = paginating_glue(0);
    let filters =
        "[filters]\ninclude = [\"glue.pdb0.*\", \"glue.pdb1.pt1\"]\nexclude = [\"glue.pdb1\"]\n";
    let (_ws, home, cfg) = paginated_workflow(port, filters);
    let report = run_in(&runtime(), &cfg, &home).await.expect("runs");
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names(&report.output_dir, "schema"), set(&["glue.pdb0"]));
    let want: BTreeSet<String> = (0..5).map(|t| format!("glue.pdb0.pt{t}")).collect();
    assert_eq!(names(&report.output_dir, "table"), want);
    // 3 GetDatabases pages + the 3 GetTables pages of pdb0 only.
    let heads = seen.lock().unwrap().clone();
    let get_tables = heads
        .iter()
        .filter(|h| h.to_ascii_lowercase().contains("awsglue.gettables"))
        .count();
    assert_eq!((heads.len(), get_tables), (6, 3), "{heads:?}");
}

/// Responses larger than the per-call limit are streamed to the plugin in pieces; the whole
/// body is still bounded by `limits.http_stream_mb`.
#[tokio::test]
async fn large_responses_are_streamed_and_bounded() {
    // Two tables of 40 KB per page: every GetTables page is above a 64 KiB call limit.
    let (port, _) = paginating_glue(40_000);
    let limits = "[limits]\ncall_bytes = 65536\nasset_kb = 64\n";
    let (_ws, home, cfg) = paginated_workflow(port, limits);
    let report = run_in(&runtime(), &cfg, &home).await.expect("runs");
    let tables = read_jsonl(&report.output_dir, "table");
    assert_eq!(tables.len(), 15);
    for t in &tables {
        assert_eq!(t["attributes"]["comment"].as_str().unwrap().len(), 40_000);
    }

    // Pages of 1.2 MB exceed a 1 MiB stream limit: the run fails with a limit error.
    let (port, _) = paginating_glue(600_000);
    let limits = "[limits]\nhttp_stream_mb = 1\n";
    let (ws, home, cfg) = paginated_workflow(port, limits);
    let err = run_in(&runtime(), &cfg, &home)
        .await
        .expect_err("a body above the stream limit fails the run");
    let text = err.to_string();
    assert!(
        text.contains("exceeds the limit of 1048576 bytes"),
        "{text}"
    );
    assert!(
        ws.out_entries().iter().all(|e| e.starts_with('.')),
        "nothing published"
    );
}

/// An operation the allow entry does not list is refused before it is signed or sent: with
/// only `GetDatabases` allowed, the first `GetTables` fails the run with a `denied` error
/// naming the operation, and the server never sees it.
#[tokio::test]
async fn glue_operations_outside_the_allow_entry_are_refused_before_signing() {
    let (port, seen) = paginating_glue(0);
    let (ws, home, cfg) =
        paginated_workflow_allowing(port, &glue_entry(port, &["AWSGlue.GetDatabases"]), "");
    let err = run_in(&runtime(), &cfg, &home)
        .await
        .expect_err("GetTables is not allowed");
    let text = err.to_string();
    assert!(
        text.contains("denied") && text.contains("X-Amz-Target AWSGlue.GetTables is not allowed"),
        "{text}"
    );
    let heads = seen.lock().unwrap().clone();
    assert!(!heads.is_empty(), "GetDatabases was sent");
    assert!(
        heads.iter().all(|h| h
            .to_ascii_lowercase()
            .contains("x-amz-target: awsglue.getdatabases")),
        "{heads:?}"
    );
    let audit = home.inner().state().audit_entries(None, None).unwrap();
    assert!(
        audit.iter().any(|e| e.action == "network"
            && e.outcome == "denied"
            && e.destination.as_deref() == Some(format!("127.0.0.1:{port}").as_str())
            && e.detail
                .as_deref()
                .is_some_and(|d| d.contains("AWSGlue.GetTables"))),
        "{audit:?}"
    );
    assert!(
        ws.out_entries().iter().all(|e| e.starts_with('.')),
        "nothing published"
    );
}
