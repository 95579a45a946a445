//! The SQLite plugin against a database the test creates: every table, view, column, foreign
//! key and index must match what `sqlite_schema` and the `pragma` functions report — exactly.

use std::collections::BTreeMap;

use airlock_tests::{plugin, read_jsonl, run, runtime, verify_run_dir, Workspace};
use serde_json::{json, Value};

const EXTRA_SCHEMA: &str = r#"
CREATE TABLE "weird.name" ("col with space" TEXT DEFAULT 'x''y', "quote""d" INTEGER NOT NULL DEFAULT (1 + 2));
CREATE TABLE strict_t (id INTEGER PRIMARY KEY, v ANY) STRICT;
CREATE TABLE child (a INTEGER, b INTEGER, note TEXT COLLATE NOCASE,
  FOREIGN KEY (a, b) REFERENCES "weird.name"("col with space", "quote""d") ON UPDATE SET NULL);
CREATE UNIQUE INDEX idx_child_ab ON child(a, b);
CREATE INDEX idx_child_expr ON child(a + b, note);
"#;

fn build_database(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(airlock::demo::SHOP_SCHEMA).unwrap();
    conn.execute_batch(EXTRA_SCHEMA).unwrap();
}

/// What the catalog itself says, keyed by qualified path.
struct Expected {
    objects: BTreeMap<Vec<String>, Value>,
    columns: BTreeMap<Vec<String>, Value>,
    foreign_keys: BTreeMap<Vec<String>, Value>,
    indexes: BTreeMap<Vec<String>, Value>,
}

fn p(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn expected(path: &std::path::Path) -> Expected {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut objects = BTreeMap::new();
    let mut columns = BTreeMap::new();
    let mut foreign_keys = BTreeMap::new();
    let mut indexes = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT name, type, sql FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let objs: Vec<(String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (name, kind, sql) in &objs {
        objects.insert(
            p(&["shop", "main", name]),
            json!({ "kind": kind, "sql": sql }),
        );
        let mut cols = conn
            .prepare(
                "SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1)",
            )
            .unwrap();
        for c in cols
            .query_map([name], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .unwrap()
        {
            let (cid, col, ty, notnull, dflt, pk) = c.unwrap();
            columns.insert(
                p(&["shop", "main", name, &col]),
                json!({
                    "ordinal": cid + 1,
                    "data_type": ty,
                    "nullable": notnull == 0,
                    "default": dflt,
                    "primary_key_position": if pk > 0 { Some(pk) } else { None },
                }),
            );
        }
        if kind != "table" {
            continue;
        }
        let mut fks = conn
            .prepare("SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
            .unwrap();
        for f in fks
            .query_map([name], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .unwrap()
        {
            let (id, table, from, to, on_update, on_delete) = f.unwrap();
            let entry = foreign_keys
                .entry(p(&["shop", "main", name, &format!("fk{id}")]))
                .or_insert_with(|| {
                    json!({ "referenced_table": table, "columns": [], "referenced_columns": [],
                            "on_update": on_update, "on_delete": on_delete })
                });
            entry["columns"].as_array_mut().unwrap().push(json!(from));
            entry["referenced_columns"]
                .as_array_mut()
                .unwrap()
                .push(json!(to));
        }
        let mut idx = conn
            .prepare("SELECT il.name, il.\"unique\", il.origin, il.partial, ii.name FROM pragma_index_list(?1) il JOIN pragma_index_info(il.name) ii ORDER BY il.name, ii.seqno")
            .unwrap();
        for i in idx
            .query_map([name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .unwrap()
        {
            let (iname, unique, origin, partial, col) = i.unwrap();
            let entry = indexes
                .entry(p(&["shop", "main", name, &iname]))
                .or_insert_with(|| {
                    json!({ "unique": unique == 1, "origin": origin, "partial": partial == 1, "columns": [] })
                });
            entry["columns"].as_array_mut().unwrap().push(json!(col));
        }
    }
    Expected {
        objects,
        columns,
        foreign_keys,
        indexes,
    }
}

fn by_path(values: Vec<Value>) -> BTreeMap<Vec<String>, Value> {
    values
        .into_iter()
        .map(|v| {
            let path: Vec<String> = serde_json::from_value(v["path"].clone()).unwrap();
            (path, v)
        })
        .collect()
}

#[tokio::test]
async fn sqlite_plugin_matches_the_catalog_exactly() {
    let ws = Workspace::new();
    let db = ws.path().join("shop.db");
    build_database(&db);
    let cfg = ws.config_for(
        &plugin("sqlite"),
        "shop.db",
        "[source.options]\nname = \"shop\"\n",
    );
    let rt = runtime();
    let report = run(&rt, &cfg).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    let want = expected(&db);
    assert!(want.objects.len() >= 29, "test database is realistic");
    assert!(want.indexes.len() >= 20);

    // tables and views
    let tables = by_path(read_jsonl(&report.output_dir, "table"));
    let views = by_path(read_jsonl(&report.output_dir, "view"));
    let mut got_objects = BTreeMap::new();
    for (path, v) in &tables {
        got_objects.insert(
            path.clone(),
            json!({ "kind": "table", "sql": v["attributes"]["ddl"] }),
        );
    }
    for (path, v) in &views {
        got_objects.insert(
            path.clone(),
            json!({ "kind": "view", "sql": v["attributes"]["view_definition"] }),
        );
    }
    assert_eq!(got_objects, want.objects);

    // columns
    let got_columns: BTreeMap<_, _> = by_path(read_jsonl(&report.output_dir, "column"))
        .into_iter()
        .map(|(path, v)| {
            let a = &v["attributes"];
            (
                path,
                json!({
                    "ordinal": a["ordinal"], "data_type": a["data_type"], "nullable": a["nullable"],
                    "default": a["default"], "primary_key_position": a["primary_key_position"],
                }),
            )
        })
        .collect();
    assert_eq!(got_columns, want.columns);

    // foreign keys
    let got_fks: BTreeMap<_, _> = by_path(read_jsonl(&report.output_dir, "foreign_key"))
        .into_iter()
        .map(|(path, v)| {
            let a = &v["attributes"];
            (
                path,
                json!({
                    "referenced_table": a["referenced_table"], "columns": a["columns"],
                    "referenced_columns": a["referenced_columns"], "on_update": a["on_update"],
                    "on_delete": a["on_delete"],
                }),
            )
        })
        .collect();
    assert_eq!(got_fks, want.foreign_keys);

    // indexes
    let origin = |o: &str| match o {
        "pk" => "primary-key",
        "u" => "unique-constraint",
        _ => "create-index",
    };
    let want_indexes: BTreeMap<_, _> = want
        .indexes
        .into_iter()
        .map(|(k, mut v)| {
            let o = origin(v["origin"].as_str().unwrap());
            v["origin"] = json!(o);
            (k, v)
        })
        .collect();
    let got_indexes: BTreeMap<_, _> = by_path(read_jsonl(&report.output_dir, "index"))
        .into_iter()
        .map(|(path, v)| {
            let a = &v["attributes"];
            (
                path,
                json!({ "unique": a["unique"], "origin": a["origin"], "partial": a["partial"], "columns": a["columns"] }),
            )
        })
        .collect();
    assert_eq!(got_indexes, want_indexes);

    // qualified names quote segments holding dots
    assert!(tables
        .values()
        .any(|v| v["qualified_name"] == "shop.main.\"weird.name\""));
    assert_eq!(manifest["plugin"]["name"], "sqlite");
    assert_eq!(manifest["counts"]["table"]["emitted"], json!(tables.len()));
}

#[tokio::test]
async fn filters_drop_excluded_assets_and_count_them() {
    let ws = Workspace::new();
    build_database(&ws.path().join("shop.db"));
    let cfg = ws.config_for(
        &plugin("sqlite"),
        "shop.db",
        "[source.options]\nname = \"shop\"\n\n[filters]\ninclude = [\"shop.main.order*\", \"shop.main.customers\"]\nexclude = [\"shop.main.order_items\"]\nkinds = [\"database\", \"schema\", \"table\", \"column\"]\n",
    );
    let report = run(&runtime(), &cfg).await.expect("run succeeds");
    let manifest = verify_run_dir(&report.output_dir);
    let tables: Vec<String> = read_jsonl(&report.output_dir, "table")
        .iter()
        .map(|v| v["qualified_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tables, vec!["shop.main.customers", "shop.main.orders"]);
    let columns = read_jsonl(&report.output_dir, "column");
    assert!(columns.iter().all(|c| {
        let q = c["qualified_name"].as_str().unwrap();
        q.starts_with("shop.main.customers.") || q.starts_with("shop.main.orders.")
    }));
    assert_eq!(read_jsonl(&report.output_dir, "database").len(), 1);
    assert_eq!(read_jsonl(&report.output_dir, "schema").len(), 1);
    assert!(read_jsonl(&report.output_dir, "index").is_empty());
    // the kind allow-list is pushed down: the plugin does not even emit views or indexes
    assert!(manifest["counts"].get("view").is_none(), "{manifest}");
    assert!(manifest["counts"].get("index").is_none(), "{manifest}");
    assert!(
        manifest["counts"]["table"]["dropped_filter"]
            .as_u64()
            .unwrap()
            > 20
    );
}

/// What the catalog pragmas alone do not say, each on a database that holds it: shadow and
/// virtual tables from `pragma table_list` (not guessed from the DDL), FTS hidden columns
/// left out, generated columns with their kind and expression, AUTOINCREMENT, collations,
/// and a foreign key written without a column list referencing the parent's primary key.
#[tokio::test]
async fn sqlite_plugin_reports_what_the_ddl_and_table_list_say() {
    let ws = Workspace::new();
    let db = ws.path().join("lib.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            r#"
            CREATE TABLE parent (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT COLLATE NOCASE,
              doubled INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL,
              label TEXT AS (upper(code) || ' (' || id || ')') STORED);
            CREATE TABLE pair_parent (a INTEGER, b INTEGER, PRIMARY KEY (b, a)) WITHOUT ROWID;
            CREATE TABLE implicit_child (pid INTEGER REFERENCES parent, x INTEGER, y INTEGER,
              FOREIGN KEY (x, y) REFERENCES pair_parent);
            CREATE TABLE typed (v ANY, note TEXT) STRICT;
            CREATE TABLE "looks STRICT, but is not" (v TEXT);
            CREATE VIRTUAL TABLE docs USING fts5(title, body);
            CREATE TABLE "café_é" (ünï INTEGER);
            "#,
        )
        .unwrap();
    let cfg = ws.config_for(&plugin("sqlite"), "lib.db", "");
    let report = run(&runtime(), &cfg).await.expect("run succeeds");
    verify_run_dir(&report.output_dir);
    let tables = by_path(read_jsonl(&report.output_dir, "table"));
    let table = |name: &str| tables[&p(&["lib", "main", name])]["attributes"].clone();
    assert_eq!(table("pair_parent")["without_rowid"], true);
    assert_eq!(table("parent")["without_rowid"], false);
    assert_eq!(table("typed")["strict"], true);
    assert_eq!(table("looks STRICT, but is not")["strict"], false);
    assert_eq!(table("docs")["table_type"], "virtual");
    assert_eq!(table("docs")["virtual_module"], "fts5");
    for shadow in [
        "docs_data",
        "docs_idx",
        "docs_content",
        "docs_docsize",
        "docs_config",
    ] {
        assert_eq!(table(shadow)["table_type"], "shadow", "{shadow}");
        assert_eq!(table(shadow)["shadow_of"], "docs", "{shadow}");
    }
    assert_eq!(table("parent")["table_type"], "table");
    assert!(tables.contains_key(&p(&["lib", "main", "café_é"])));

    let columns = by_path(read_jsonl(&report.output_dir, "column"));
    let column = |t: &str, c: &str| columns[&p(&["lib", "main", t, c])]["attributes"].clone();
    let docs: Vec<&str> = columns
        .keys()
        .filter(|k| k[2] == "docs")
        .map(|k| k[3].as_str())
        .collect();
    assert_eq!(
        docs,
        ["body", "title"],
        "the FTS table's hidden columns are left out"
    );
    assert_eq!(column("parent", "id")["auto_increment"], true);
    assert_eq!(column("parent", "code")["auto_increment"], false);
    assert_eq!(column("parent", "code")["collation"], "NOCASE");
    assert_eq!(
        column("parent", "doubled")["generated"],
        json!({"kind": "virtual", "expression": "id * 2"})
    );
    assert_eq!(
        column("parent", "label")["generated"],
        json!({"kind": "stored", "expression": "upper(code) || ' (' || id || ')'"})
    );
    assert_eq!(column("parent", "code")["generated"], Value::Null);
    assert_eq!(column("café_é", "ünï")["data_type"], "INTEGER");

    let fks = by_path(read_jsonl(&report.output_dir, "foreign_key"));
    let fk_columns: BTreeMap<Vec<String>, Value> = fks
        .iter()
        .map(|(k, v)| {
            let a = &v["attributes"];
            (
                k.clone(),
                json!([a["referenced_table"], a["columns"], a["referenced_columns"]]),
            )
        })
        .collect();
    let mut got: Vec<Value> = fk_columns.values().cloned().collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(
        got,
        vec![
            json!(["pair_parent", ["x", "y"], ["b", "a"]]),
            json!(["parent", ["pid"], ["id"]]),
        ],
        "{fk_columns:?}"
    );
}
