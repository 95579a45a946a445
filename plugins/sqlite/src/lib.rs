//! airlock connector for SQLite: schema, tables, views, columns, foreign keys and indexes.
//!
//! The plugin has no file system. It asks the host to open the database through the `sql`
//! capability; the host opens it read-only and only inside the workflow's allowed directories.
//! Every catalog query is one bulk query over `sqlite_schema` joined with the `pragma_*`
//! table-valued functions, never one query per table.

use airlock_sdk::sql::{Connection, Driver, Endpoint, Row};
use airlock_sdk::{AssetKind, Capability, Connector, Emitter, Error, PluginInfo, Scope};
use serde::Deserialize;
use serde_json::json;

/// The workflow's `[source]` table as the host passes it.
#[derive(Deserialize)]
struct Config {
    /// Path of the database file, resolved by the host.
    database: Option<String>,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Name of the database asset; defaults to the file name without extension.
    name: Option<String>,
}

struct Sqlite;

/// Tables and views of the main schema, without SQLite's internal tables.
const OBJECTS: &str = "SELECT name, type, sql FROM main.sqlite_schema \
     WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY name";

const COLUMNS: &str = "SELECT m.name AS table_name, p.cid, p.name, p.type, p.\"notnull\", \
     p.dflt_value, p.pk, p.hidden \
     FROM main.sqlite_schema AS m JOIN pragma_table_xinfo(m.name, 'main') AS p \
     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY m.name, p.cid";

const FOREIGN_KEYS: &str = "SELECT m.name AS table_name, f.id, f.seq, f.\"table\" AS ref_table, \
     f.\"from\" AS from_column, f.\"to\" AS to_column, f.on_update, f.on_delete, f.\"match\" \
     FROM main.sqlite_schema AS m JOIN pragma_foreign_key_list(m.name, 'main') AS f \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY m.name, f.id, f.seq";

const INDEXES: &str = "SELECT m.name AS table_name, il.name AS index_name, il.\"unique\", \
     il.origin, il.partial, ii.seqno, ii.cid, ii.name AS column_name, ix.sql \
     FROM main.sqlite_schema AS m \
     JOIN pragma_index_list(m.name, 'main') AS il \
     JOIN pragma_index_info(il.name, 'main') AS ii \
     LEFT JOIN main.sqlite_schema AS ix ON ix.type = 'index' AND ix.name = il.name \
     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY m.name, il.name, ii.seqno";

impl Connector for Sqlite {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new(
            "sqlite",
            env!("CARGO_PKG_VERSION"),
            "SQLite databases: schema, tables, views, columns, foreign keys, indexes",
        )
        .capabilities(&[Capability::Sql])
        .kinds(&[
            AssetKind::Database,
            AssetKind::Schema,
            AssetKind::Table,
            AssetKind::View,
            AssetKind::Column,
            AssetKind::ForeignKey,
            AssetKind::Index,
        ])
        .config_schema(json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "name of the database asset" }
            },
            "additionalProperties": false
        }))
    }

    fn extract(config: Config, scope: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let path = config.database.ok_or_else(|| {
            Error::InvalidConfig("source.database must name the SQLite file".to_string())
        })?;
        let db_name = config.options.name.unwrap_or_else(|| file_stem(&path));
        let conn = Connection::open(
            &Endpoint {
                driver: Driver::Sqlite,
                address: path,
                database: None,
            },
            None,
        )?;

        let schema = "main";
        if scope.wants(AssetKind::Database) {
            out.emit(
                AssetKind::Database,
                [&db_name],
                json!({ "engine": "sqlite" }),
            )?;
        }
        if scope.wants(AssetKind::Schema) {
            out.emit(AssetKind::Schema, [&db_name, schema], json!({}))?;
        }

        let objects = conn.query_all(OBJECTS, &[])?;
        let total = objects.len() as u64;
        for (i, row) in objects.iter().enumerate() {
            emit_object(out, scope, &db_name, schema, row)?;
            airlock_sdk::log::progress(i as u64 + 1, Some(total));
        }
        if scope.wants(AssetKind::Column) {
            for row in conn.query(COLUMNS, &[])? {
                emit_column(out, &db_name, schema, &row?)?;
            }
        }
        if scope.wants(AssetKind::ForeignKey) {
            emit_foreign_keys(out, &db_name, schema, &conn)?;
        }
        if scope.wants(AssetKind::Index) {
            emit_indexes(out, &db_name, schema, &conn)?;
        }
        Ok(())
    }
}

fn emit_object(
    out: &mut Emitter,
    scope: &Scope,
    db: &str,
    schema: &str,
    row: &Row,
) -> Result<(), Error> {
    let name = row.string("name")?;
    let sql = row.text("sql")?;
    match row.string("type")?.as_str() {
        "view" if scope.wants(AssetKind::View) => out.emit(
            AssetKind::View,
            [db, schema, &name],
            json!({ "view_definition": sql }),
        ),
        "table" if scope.wants(AssetKind::Table) => {
            let ddl = sql.clone().unwrap_or_default().to_ascii_uppercase();
            let virtual_table = ddl.starts_with("CREATE VIRTUAL TABLE");
            out.emit(
                AssetKind::Table,
                [db, schema, &name],
                json!({
                    "table_type": if virtual_table { "virtual" } else { "table" },
                    "without_rowid": ddl.contains("WITHOUT ROWID"),
                    "strict": ddl.trim_end().ends_with("STRICT") || ddl.contains("STRICT,"),
                    "ddl": sql,
                }),
            )
        }
        _ => Ok(()),
    }
}

fn emit_column(out: &mut Emitter, db: &str, schema: &str, row: &Row) -> Result<(), Error> {
    let table = row.string("table_name")?;
    let name = row.string("name")?;
    let ordinal = row.int("cid")?.unwrap_or(0) + 1;
    let pk = row.int("pk")?.unwrap_or(0);
    let hidden = row.int("hidden")?.unwrap_or(0);
    out.emit(
        AssetKind::Column,
        [db, schema, &table, &name],
        json!({
            "ordinal": ordinal,
            "data_type": row.string("type")?,
            "nullable": !row.bool("notnull")?.unwrap_or(false),
            "default": row.text("dflt_value")?,
            "primary_key_position": if pk > 0 { Some(pk) } else { None },
            "generated": match hidden { 2 => Some("virtual"), 3 => Some("stored"), _ => None },
        }),
    )
}

/// One foreign key spans several rows (one per column pair); group them by (table, id).
fn emit_foreign_keys(
    out: &mut Emitter,
    db: &str,
    schema: &str,
    conn: &Connection,
) -> Result<(), Error> {
    let mut current: Option<(String, i64, serde_json::Value)> = None;
    for row in conn.query(FOREIGN_KEYS, &[])? {
        let row = row?;
        let table = row.string("table_name")?;
        let id = row.int("id")?.unwrap_or(0);
        let same = matches!(&current, Some((t, i, _)) if *t == table && *i == id);
        if !same {
            if let Some((t, i, attrs)) = current.take() {
                out.emit(
                    AssetKind::ForeignKey,
                    [db, schema, &t, &format!("fk{i}")],
                    attrs,
                )?;
            }
            current = Some((
                table.clone(),
                id,
                json!({
                    "id": id,
                    "columns": [],
                    "referenced_schema": schema,
                    "referenced_table": row.string("ref_table")?,
                    "referenced_columns": [],
                    "on_update": row.text("on_update")?,
                    "on_delete": row.text("on_delete")?,
                    "match": row.text("match")?,
                }),
            ));
        }
        if let Some((_, _, attrs)) = current.as_mut() {
            push(attrs, "columns", json!(row.text("from_column")?));
            push(attrs, "referenced_columns", json!(row.text("to_column")?));
        }
    }
    if let Some((t, i, attrs)) = current.take() {
        out.emit(
            AssetKind::ForeignKey,
            [db, schema, &t, &format!("fk{i}")],
            attrs,
        )?;
    }
    Ok(())
}

/// One index spans several rows (one per key column); group them by (table, index).
fn emit_indexes(out: &mut Emitter, db: &str, schema: &str, conn: &Connection) -> Result<(), Error> {
    let mut current: Option<(String, String, serde_json::Value)> = None;
    for row in conn.query(INDEXES, &[])? {
        let row = row?;
        let table = row.string("table_name")?;
        let index = row.string("index_name")?;
        let same = matches!(&current, Some((t, i, _)) if *t == table && *i == index);
        if !same {
            if let Some((t, i, attrs)) = current.take() {
                out.emit(AssetKind::Index, [db, schema, &t, &i], attrs)?;
            }
            current = Some((
                table.clone(),
                index.clone(),
                json!({
                    "unique": row.bool("unique")?.unwrap_or(false),
                    "origin": match row.string("origin")?.as_str() {
                        "pk" => "primary-key",
                        "u" => "unique-constraint",
                        _ => "create-index",
                    },
                    "partial": row.bool("partial")?.unwrap_or(false),
                    "columns": [],
                    "definition": row.text("sql")?,
                }),
            ));
        }
        if let Some((_, _, attrs)) = current.as_mut() {
            // An expression in the key has no column name (cid -2).
            push(attrs, "columns", json!(row.text("column_name")?));
        }
    }
    if let Some((t, i, attrs)) = current.take() {
        out.emit(AssetKind::Index, [db, schema, &t, &i], attrs)?;
    }
    Ok(())
}

fn push(attrs: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(list) = attrs.get_mut(key).and_then(|v| v.as_array_mut()) {
        list.push(value);
    }
}

fn file_stem(path: &str) -> String {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => file.to_string(),
    }
}

airlock_sdk::export_connector!(Sqlite);
