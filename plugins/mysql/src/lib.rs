//! airlock connector for MySQL and MariaDB: databases, tables, views, columns, primary, unique
//! and foreign keys, indexes, comments and row-count estimates.
//!
//! # Paths
//!
//! MySQL has no level between the server and a "database" (which the SQL standard calls a
//! schema). airlock's paths always have a database and a schema segment, so this plugin
//! repeats the name: database `[db]`, schema `[db, db]`, table or view `[db, db, table]`, and
//! column, key and index `[db, db, table, name]`. A primary key is always named `PRIMARY`, as
//! MySQL names it. A filter on `shop.shop.*` therefore selects every table of database `shop`.
//!
//! # Queries
//!
//! Every kind of asset comes from one bulk query over `information_schema`, streamed in row
//! batches, never one query per table. The include and exclude patterns are pushed down into
//! those queries only where the result is certain to be a superset of what the host keeps:
//! patterns without wildcards or quotes that name whole databases or tables. The host filters
//! every asset again either way.
//!
//! Where one asset needs facts from two catalog tables (a column's position in the primary
//! key, a foreign key's update and delete rules), both are read sorted by their byte order on a
//! second connection and merged, so memory stays flat however large the catalog is.
//!
//! # Attributes
//!
//! Values are as the catalog reports them (`COLUMN_TYPE`, `COLUMN_DEFAULT` text, ...), except
//! that MySQL's empty-string "no comment" becomes `null`, and a view's comment is always `null`
//! (views cannot have comments; `TABLE_COMMENT` holds the word `VIEW` or an error message).

use std::cmp::Ordering;

use airlock_sdk::sql::{Connection, Driver, Endpoint, Row, Rows, Value};
use airlock_sdk::{AssetKind, Capability, Connector, Emitter, Error, PluginInfo, Scope};
use serde::Deserialize;
use serde_json::json;

/// The workflow's `[source]` table as the host passes it.
#[derive(Deserialize)]
struct Config {
    /// `host:port` of the server.
    endpoint: Option<String>,
    /// One database to read.
    database: Option<String>,
    /// Several databases to read; `["*"]` reads every database on the server except the
    /// system ones.
    databases: Option<Vec<String>>,
    /// Parsed only so that unknown option keys are errors.
    #[serde(default)]
    #[allow(dead_code)]
    options: Options,
}

/// Plugin options (`[source.options]`); none yet, but unknown keys are errors.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {}

/// Schemas MySQL and MariaDB keep for themselves; skipped by `databases = ["*"]`.
const SYSTEM_SCHEMAS: &str = "'information_schema', 'mysql', 'performance_schema', 'sys'";

struct Mysql;

impl Connector for Mysql {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "MySQL and MariaDB: databases, tables, views, columns, keys, indexes, comments",
        )
        .capabilities(&[Capability::Sql])
        .kinds(&[
            AssetKind::Database,
            AssetKind::Schema,
            AssetKind::Table,
            AssetKind::View,
            AssetKind::Column,
            AssetKind::PrimaryKey,
            AssetKind::UniqueKey,
            AssetKind::ForeignKey,
            AssetKind::Index,
        ])
        .config_schema(json!({
            "type": "object",
            "properties": {},
            "additionalProperties": false
        }))
    }

    fn extract(config: Config, scope: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let endpoint = config.endpoint.clone().ok_or_else(|| {
            Error::InvalidConfig("source.endpoint must be the server's host:port".to_string())
        })?;
        let configured = configured_databases(&config)?;
        let selection = Selection::new(configured.clone(), scope);
        // A single database is also the connection's default database, so the host can check
        // it against the workflow; with several, information_schema covers them all.
        let database = match &configured {
            Some(list) if list.len() == 1 => list.first().cloned(),
            _ => None,
        };
        let credential = airlock_sdk::credentials::get("source")?;
        let target = Endpoint {
            driver: Driver::Mysql,
            address: endpoint,
            database,
        };
        let conn = Connection::open(&target, Some(&credential))?;

        let databases = emit_databases(&conn, &selection, scope, out)?;
        if let Some(list) = &configured {
            for missing in list.iter().filter(|d| !databases.contains(d)) {
                if selection.may_read(missing) {
                    out.warn(format!(
                        "database `{missing}` does not exist or is not visible to the user"
                    ));
                }
            }
        }
        if databases.is_empty() {
            return Ok(());
        }
        let needs_second = scope.wants(AssetKind::Column) || scope.wants(AssetKind::ForeignKey);
        let second = if needs_second {
            Some(Connection::open(&target, Some(&credential))?)
        } else {
            None
        };
        if scope.wants(AssetKind::Table) {
            emit_tables(&conn, &selection, out)?;
        }
        if scope.wants(AssetKind::View) {
            emit_views(&conn, &selection, out)?;
        }
        if let (true, Some(second)) = (scope.wants(AssetKind::Column), &second) {
            emit_columns(&conn, second, &selection, out)?;
        }
        if scope.wants(AssetKind::PrimaryKey)
            || scope.wants(AssetKind::UniqueKey)
            || scope.wants(AssetKind::ForeignKey)
        {
            emit_constraints(&conn, second.as_ref(), &selection, scope, out)?;
        }
        if scope.wants(AssetKind::Index) {
            emit_indexes(&conn, &selection, out)?;
        }
        Ok(())
    }
}

/// The databases the workflow names; `None` for every database (`["*"]`).
fn configured_databases(config: &Config) -> Result<Option<Vec<String>>, Error> {
    let mut list: Vec<String> = Vec::new();
    if let Some(d) = &config.database {
        list.push(d.clone());
    }
    if let Some(ds) = &config.databases {
        if ds.iter().any(|d| d == "*") {
            return Ok(None);
        }
        for d in ds {
            if !list.contains(d) {
                list.push(d.clone());
            }
        }
    }
    if list.is_empty() {
        return Err(Error::InvalidConfig(
            "set source.database, or source.databases (`[\"*\"]` for every database)".to_string(),
        ));
    }
    if list.iter().any(|d| d.is_empty()) {
        return Err(Error::InvalidConfig(
            "database names must not be empty".to_string(),
        ));
    }
    Ok(Some(list))
}

/// Which databases and tables the catalog queries read: the workflow's databases, narrowed by
/// the filters where that is certain not to drop anything the host would keep.
struct Selection {
    /// Databases to read, or `None` for every non-system database.
    only: Option<Vec<String>>,
    /// Databases excluded whole (the pattern names the database).
    skip_databases: Vec<String>,
    /// Databases whose schema is excluded: their database asset stays, their objects go.
    skip_objects_of: Vec<String>,
    /// Tables and views excluded whole, as (database, name).
    skip_tables: Vec<(String, String)>,
}

impl Selection {
    fn new(configured: Option<Vec<String>>, scope: &Scope) -> Self {
        // Every kept asset's path starts with the first segment of an include pattern when
        // that segment is a literal (see the host's filter rules), so only those databases
        // can contribute anything.
        let include_firsts: Option<Vec<String>> = if scope.include.is_empty() {
            None
        } else {
            scope
                .include
                .iter()
                .map(|p| literal_segments(p).and_then(|s| s.first().cloned()))
                .collect()
        };
        let only = match (configured, include_firsts) {
            (Some(list), Some(firsts)) => {
                Some(list.into_iter().filter(|d| firsts.contains(d)).collect())
            }
            (Some(list), None) => Some(list),
            (None, firsts) => firsts,
        };
        let mut selection = Selection {
            only,
            skip_databases: Vec::new(),
            skip_objects_of: Vec::new(),
            skip_tables: Vec::new(),
        };
        // An exclude pattern of literal segments matches exactly the asset with that path
        // and, through "exclude covers descendants", everything below it.
        for pattern in &scope.exclude {
            let Some(segments) = literal_segments(pattern) else {
                continue;
            };
            match segments.as_slice() {
                [db] => selection.skip_databases.push(db.clone()),
                [db, schema] if db == schema => selection.skip_objects_of.push(db.clone()),
                [db, schema, table] if db == schema => {
                    selection.skip_tables.push((db.clone(), table.clone()))
                }
                _ => {}
            }
        }
        selection
    }

    /// Whether database `db` is read at all.
    fn may_read(&self, db: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|list| list.iter().any(|d| d == db))
            && !self.skip_databases.iter().any(|d| d == db)
    }

    /// A condition on the catalog columns `schema` (and `table`), with its parameters.
    /// `objects` is false for the database list itself, which a schema exclusion keeps.
    fn condition(&self, schema: &str, table: Option<&str>, objects: bool) -> (String, Vec<Value>) {
        let mut parts: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        // Identifiers compare case-insensitively in information_schema's collation; the host
        // compares bytes. A case-insensitive IN may use the server's catalog lookups, the
        // binary comparison makes the result exact.
        let exact = format!("CAST({schema} AS BINARY)");
        let in_list = |column: &str, names: &[String], negate: bool, params: &mut Vec<Value>| {
            let marks = vec!["?"; names.len()].join(", ");
            params.extend(names.iter().map(|n| Value::Text(n.clone())));
            format!("{column} {}IN ({marks})", if negate { "NOT " } else { "" })
        };
        match &self.only {
            Some(list) if list.is_empty() => parts.push("1 = 0".to_string()),
            Some(list) => {
                parts.push(in_list(schema, list, false, &mut params));
                parts.push(in_list(&exact, list, false, &mut params));
            }
            None => parts.push(format!("{exact} NOT IN ({SYSTEM_SCHEMAS})")),
        }
        if !self.skip_databases.is_empty() {
            parts.push(in_list(&exact, &self.skip_databases, true, &mut params));
        }
        if objects && !self.skip_objects_of.is_empty() {
            parts.push(in_list(&exact, &self.skip_objects_of, true, &mut params));
        }
        if let (Some(table), true) = (table, objects) {
            for (db, name) in &self.skip_tables {
                parts.push(format!("NOT ({exact} = ? AND CAST({table} AS BINARY) = ?)"));
                params.push(Value::Text(db.clone()));
                params.push(Value::Text(name.clone()));
            }
        }
        (parts.join(" AND "), params)
    }
}

/// The segments of a pattern that is a plain dotted name (no `re:`, wildcard or quote).
fn literal_segments(pattern: &str) -> Option<Vec<String>> {
    if pattern.starts_with("re:") || pattern.contains(['*', '?', '"']) {
        return None;
    }
    let segments: Vec<String> = pattern.split('.').map(str::to_string).collect();
    if segments.iter().any(String::is_empty) {
        return None;
    }
    Some(segments)
}

/// Emits the database and schema assets; returns the databases found.
fn emit_databases(
    conn: &Connection,
    selection: &Selection,
    scope: &Scope,
    out: &mut Emitter,
) -> Result<Vec<String>, Error> {
    let (cond, params) = selection.condition("SCHEMA_NAME", None, false);
    let sql = format!(
        "SELECT SCHEMA_NAME AS db, DEFAULT_CHARACTER_SET_NAME AS charset, \
         DEFAULT_COLLATION_NAME AS collation \
         FROM information_schema.SCHEMATA WHERE {cond} ORDER BY CAST(SCHEMA_NAME AS BINARY)"
    );
    let mut found = Vec::new();
    for row in conn.query(&sql, &params)? {
        let row = row?;
        let db = row.string("db")?;
        if scope.wants(AssetKind::Database) {
            out.emit(
                AssetKind::Database,
                [&db],
                json!({
                    "character_set": row.text("charset")?,
                    "collation": row.text("collation")?,
                }),
            )?;
        }
        if scope.wants(AssetKind::Schema) {
            out.emit(AssetKind::Schema, [&db, &db], json!({}))?;
        }
        found.push(db);
    }
    Ok(found)
}

fn emit_tables(conn: &Connection, selection: &Selection, out: &mut Emitter) -> Result<(), Error> {
    let (cond, params) = selection.condition("TABLE_SCHEMA", Some("TABLE_NAME"), true);
    let sql = format!(
        "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS name, TABLE_TYPE AS type, ENGINE AS engine, \
         TABLE_ROWS AS row_count, TABLE_COMMENT AS comment, TABLE_COLLATION AS collation, \
         AUTO_INCREMENT AS auto_increment \
         FROM information_schema.TABLES WHERE TABLE_TYPE <> 'VIEW' AND {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY)"
    );
    for (i, row) in conn.query(&sql, &params)?.enumerate() {
        let row = row?;
        let db = row.string("db")?;
        let name = row.string("name")?;
        out.emit(
            AssetKind::Table,
            [&db, &db, &name],
            json!({
                "table_type": table_type(&row.string("type")?),
                "engine": row.text("engine")?,
                "comment": non_empty(row.text("comment")?),
                "row_count_estimate": row.int("row_count")?,
                "collation": row.text("collation")?,
                "auto_increment": row.int("auto_increment")?,
            }),
        )?;
        if i % 1000 == 999 {
            airlock_sdk::log::progress(i as u64 + 1, None);
        }
    }
    Ok(())
}

/// airlock's name for an `information_schema.TABLES.TABLE_TYPE`.
fn table_type(reported: &str) -> String {
    match reported {
        "BASE TABLE" => "table".to_string(),
        "SYSTEM VERSIONED" => "system-versioned".to_string(),
        "SEQUENCE" => "sequence".to_string(),
        "TEMPORARY" => "temporary".to_string(),
        other => other.to_ascii_lowercase().replace(' ', "-"),
    }
}

fn emit_views(conn: &Connection, selection: &Selection, out: &mut Emitter) -> Result<(), Error> {
    let (cond, params) = selection.condition("TABLE_SCHEMA", Some("TABLE_NAME"), true);
    let sql = format!(
        "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS name, VIEW_DEFINITION AS definition \
         FROM information_schema.VIEWS WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY)"
    );
    for row in conn.query(&sql, &params)? {
        let row = row?;
        let db = row.string("db")?;
        let name = row.string("name")?;
        out.emit(
            AssetKind::View,
            [&db, &db, &name],
            json!({
                "view_definition": row.text("definition")?,
                "comment": null,
            }),
        )?;
    }
    Ok(())
}

/// Columns of tables and views, with their position in the primary key merged in from a
/// second, identically sorted stream of primary-key columns.
///
/// The primary key's columns come from the `PRIMARY` index in `STATISTICS` (`SEQ_IN_INDEX` is
/// the column's position in the key, as `KEY_COLUMN_USAGE.ORDINAL_POSITION` is): MariaDB
/// answers these `STATISTICS` columns from the table definitions alone, while every query on
/// `KEY_COLUMN_USAGE` opens every table in the storage engine (for the foreign keys), several
/// times slower on a large catalog. `emit_constraints` pays that once, for the keys themselves.
fn emit_columns(
    conn: &Connection,
    second: &Connection,
    selection: &Selection,
    out: &mut Emitter,
) -> Result<(), Error> {
    let (cond, params) = selection.condition("TABLE_SCHEMA", Some("TABLE_NAME"), true);
    let pk_sql = format!(
        "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, COLUMN_NAME AS col, \
         SEQ_IN_INDEX AS pos \
         FROM information_schema.STATISTICS \
         WHERE INDEX_NAME = 'PRIMARY' AND {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY)"
    );
    let mut pks = Cursor::new(second.query(&pk_sql, &params)?);
    let sql = format!(
        "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, COLUMN_NAME AS name, \
         ORDINAL_POSITION AS ordinal, COLUMN_TYPE AS data_type, IS_NULLABLE AS nullable, \
         COLUMN_DEFAULT AS dflt, COLUMN_COMMENT AS comment, EXTRA AS extra, \
         GENERATION_EXPRESSION AS generation_expression, COLLATION_NAME AS collation, \
         CHARACTER_SET_NAME AS charset \
         FROM information_schema.COLUMNS WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), ORDINAL_POSITION"
    );
    let mut current: Option<Vec<String>> = None;
    let mut table_pk: Vec<(String, i64)> = Vec::new();
    for row in conn.query(&sql, &params)? {
        let row = row?;
        let db = row.string("db")?;
        let table = row.string("tbl")?;
        let name = row.string("name")?;
        let key = vec![db.clone(), table.clone()];
        if current.as_ref() != Some(&key) {
            table_pk = pks
                .take_equal(&key, |r| Ok(vec![r.string("db")?, r.string("tbl")?]))?
                .iter()
                .map(|r| Ok((r.string("col")?, r.int("pos")?.unwrap_or(0))))
                .collect::<Result<_, Error>>()?;
            current = Some(key);
        }
        let pk_position = table_pk.iter().find(|(c, _)| *c == name).map(|(_, p)| *p);
        let extra = Extra::parse(row.text_ref("extra")?.as_deref().unwrap_or(""));
        let generated = extra.generated.map(|kind| {
            Ok::<_, Error>(json!({
                "kind": kind,
                "expression": non_empty(row.text("generation_expression")?),
            }))
        });
        out.emit(
            AssetKind::Column,
            [&db, &db, &table, &name],
            json!({
                "ordinal": row.int("ordinal")?,
                "data_type": row.string("data_type")?,
                "nullable": row.string("nullable")? == "YES",
                // A generated column's "default" is its expression (MariaDB reports it so).
                "default": if generated.is_some() { None } else { row.text("dflt")? },
                "generated": generated.transpose()?,
                "auto_increment": extra.auto_increment,
                "on_update": extra.on_update,
                "collation": row.text("collation")?,
                "character_set": row.text("charset")?,
                "comment": non_empty(row.text("comment")?),
                "primary_key_position": pk_position,
            }),
        )?;
    }
    Ok(())
}

/// What `information_schema.COLUMNS.EXTRA` says: `auto_increment`, `on update
/// CURRENT_TIMESTAMP` (MariaDB: `on update current_timestamp()`), `VIRTUAL GENERATED`,
/// `STORED GENERATED` (MariaDB before 10.2: `PERSISTENT`), `DEFAULT_GENERATED`.
#[derive(Debug, Default, PartialEq)]
struct Extra {
    auto_increment: bool,
    on_update: Option<String>,
    generated: Option<&'static str>,
}

impl Extra {
    fn parse(extra: &str) -> Extra {
        let lower = extra.to_ascii_lowercase();
        let on_update = lower.find("on update ").map(|at| {
            let rest = extra[at + "on update ".len()..].trim();
            // The expression runs to the end or to the next keyword MySQL appends.
            let end = rest
                .find(" INVISIBLE")
                .or_else(|| rest.find(" invisible"))
                .unwrap_or(rest.len());
            rest[..end].trim().to_string()
        });
        let generated = if lower.contains("stored generated") || lower.contains("persistent") {
            Some("stored")
        } else if lower.contains("virtual generated") || lower.contains("virtual") {
            Some("virtual")
        } else {
            None
        };
        Extra {
            auto_increment: lower.contains("auto_increment"),
            on_update,
            generated,
        }
    }
}

/// One key being assembled from its column rows.
struct Key {
    table: Vec<String>,
    name: String,
    kind: AssetKind,
    attributes: serde_json::Value,
}

/// Primary, unique and foreign keys from `KEY_COLUMN_USAGE` (one row per key column); the
/// rules of foreign keys are merged in from `REFERENTIAL_CONSTRAINTS` on the second connection.
fn emit_constraints(
    conn: &Connection,
    second: Option<&Connection>,
    selection: &Selection,
    scope: &Scope,
    out: &mut Emitter,
) -> Result<(), Error> {
    let (cond, params) = selection.condition("TABLE_SCHEMA", Some("TABLE_NAME"), true);
    let mut rules = match (scope.wants(AssetKind::ForeignKey), second) {
        (true, Some(second)) => {
            let (rc_cond, rc_params) =
                selection.condition("CONSTRAINT_SCHEMA", Some("TABLE_NAME"), true);
            let sql = format!(
                "SELECT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS tbl, CONSTRAINT_NAME AS name, \
                 UPDATE_RULE AS on_update, DELETE_RULE AS on_delete \
                 FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE {rc_cond} \
                 ORDER BY CAST(CONSTRAINT_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), \
                 CAST(CONSTRAINT_NAME AS BINARY)"
            );
            Some(Cursor::new(second.query(&sql, &rc_params)?))
        }
        _ => None,
    };
    let sql = format!(
        "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, CONSTRAINT_NAME AS name, \
         COLUMN_NAME AS col, ORDINAL_POSITION AS pos, \
         REFERENCED_TABLE_SCHEMA AS ref_schema, REFERENCED_TABLE_NAME AS ref_table, \
         REFERENCED_COLUMN_NAME AS ref_col \
         FROM information_schema.KEY_COLUMN_USAGE WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), \
         CAST(CONSTRAINT_NAME AS BINARY), ORDINAL_POSITION"
    );
    let mut current: Option<Key> = None;
    for row in conn.query(&sql, &params)? {
        let row = row?;
        let db = row.string("db")?;
        let table = row.string("tbl")?;
        let name = row.string("name")?;
        let same = current
            .as_ref()
            .is_some_and(|k| k.table[0] == db && k.table[1] == table && k.name == name);
        if !same {
            if let Some(key) = current.take() {
                emit_key(out, scope, key)?;
            }
            let ref_table = row.text("ref_table")?;
            let (kind, attributes) = if name == "PRIMARY" {
                (AssetKind::PrimaryKey, json!({ "columns": [] }))
            } else if let Some(ref_table) = ref_table {
                let key = [db.clone(), table.clone(), name.clone()];
                let rule = match rules.as_mut() {
                    Some(cursor) => cursor
                        .take_equal(&key, |r| {
                            Ok(vec![r.string("db")?, r.string("tbl")?, r.string("name")?])
                        })?
                        .into_iter()
                        .next(),
                    None => None,
                };
                let (on_update, on_delete) = match &rule {
                    Some(r) => (r.text("on_update")?, r.text("on_delete")?),
                    None => (None, None),
                };
                (
                    AssetKind::ForeignKey,
                    json!({
                        "columns": [],
                        "referenced_schema": row.text("ref_schema")?,
                        "referenced_table": ref_table,
                        "referenced_columns": [],
                        "on_update": on_update,
                        "on_delete": on_delete,
                    }),
                )
            } else {
                (AssetKind::UniqueKey, json!({ "columns": [] }))
            };
            current = Some(Key {
                table: vec![db.clone(), table.clone()],
                name: name.clone(),
                kind,
                attributes,
            });
        }
        if let Some(key) = current.as_mut() {
            push(&mut key.attributes, "columns", json!(row.text("col")?));
            if key.kind == AssetKind::ForeignKey {
                push(
                    &mut key.attributes,
                    "referenced_columns",
                    json!(row.text("ref_col")?),
                );
            }
        }
    }
    if let Some(key) = current.take() {
        emit_key(out, scope, key)?;
    }
    Ok(())
}

fn emit_key(out: &mut Emitter, scope: &Scope, key: Key) -> Result<(), Error> {
    if !scope.wants(key.kind) {
        return Ok(());
    }
    let db = &key.table[0];
    out.emit(key.kind, [db, db, &key.table[1], &key.name], key.attributes)
}

/// Indexes from `STATISTICS` (one row per index column), including the primary key's.
fn emit_indexes(conn: &Connection, selection: &Selection, out: &mut Emitter) -> Result<(), Error> {
    let (cond, params) = selection.condition("TABLE_SCHEMA", Some("TABLE_NAME"), true);
    let sql = format!(
        "SELECT TABLE_SCHEMA AS db, TABLE_NAME AS tbl, INDEX_NAME AS name, \
         NON_UNIQUE AS non_unique, SEQ_IN_INDEX AS seq, COLUMN_NAME AS col, \
         INDEX_TYPE AS index_type \
         FROM information_schema.STATISTICS WHERE {cond} \
         ORDER BY CAST(TABLE_SCHEMA AS BINARY), CAST(TABLE_NAME AS BINARY), \
         CAST(INDEX_NAME AS BINARY), SEQ_IN_INDEX"
    );
    let mut current: Option<(String, String, String, serde_json::Value)> = None;
    for row in conn.query(&sql, &params)? {
        let row = row?;
        let db = row.string("db")?;
        let table = row.string("tbl")?;
        let name = row.string("name")?;
        let same = matches!(&current, Some((d, t, n, _)) if *d == db && *t == table && *n == name);
        if !same {
            if let Some((d, t, n, attrs)) = current.take() {
                out.emit(AssetKind::Index, [&d, &d, &t, &n], attrs)?;
            }
            let attrs = json!({
                "unique": !row.bool("non_unique")?.unwrap_or(true),
                "primary": name == "PRIMARY",
                "columns": [],
                "method": row.text("index_type")?,
            });
            current = Some((db, table, name, attrs));
        }
        if let Some((_, _, _, attrs)) = current.as_mut() {
            // MySQL 8 functional key parts have no column name.
            push(attrs, "columns", json!(row.text("col")?));
        }
    }
    if let Some((d, t, n, attrs)) = current.take() {
        out.emit(AssetKind::Index, [&d, &d, &t, &n], attrs)?;
    }
    Ok(())
}

/// A sorted row stream read alongside another one (a merge join on the plugin side).
struct Cursor {
    rows: Rows,
    peeked: Option<Row>,
}

impl Cursor {
    fn new(rows: Rows) -> Self {
        Cursor { rows, peeked: None }
    }

    /// The rows whose key equals `key`, skipping rows whose key sorts before it. Both streams
    /// are sorted by the bytes of their key columns, which is how `String`s compare.
    fn take_equal(
        &mut self,
        key: &[String],
        key_of: impl Fn(&Row) -> Result<Vec<String>, Error>,
    ) -> Result<Vec<Row>, Error> {
        let mut found = Vec::new();
        loop {
            let row = match self.peeked.take() {
                Some(row) => row,
                None => match self.rows.next() {
                    Some(row) => row?,
                    None => break,
                },
            };
            match key_of(&row)?.as_slice().cmp(key) {
                Ordering::Less => {}
                Ordering::Equal => found.push(row),
                Ordering::Greater => {
                    self.peeked = Some(row);
                    break;
                }
            }
        }
        Ok(found)
    }
}

/// MySQL reports "no comment" as an empty string.
fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

fn push(attrs: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(list) = attrs.get_mut(key).and_then(|v| v.as_array_mut()) {
        list.push(value);
    }
}

airlock_sdk::export_connector!(Mysql);
