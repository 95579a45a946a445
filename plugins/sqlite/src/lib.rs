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

/// Tables and views of the main schema, without SQLite's internal tables; `pragma_table_list`
/// says what each really is (a shadow table of a virtual table, WITHOUT ROWID, STRICT).
const OBJECTS: &str = "SELECT m.name, m.type, m.sql, t.type AS list_type, t.wr, t.strict \
     FROM main.sqlite_schema AS m \
     LEFT JOIN pragma_table_list AS t ON t.schema = 'main' AND t.name = m.name \
     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY m.name";

const COLUMNS: &str = "SELECT m.name AS table_name, p.cid, p.name, p.type, p.\"notnull\", \
     p.dflt_value, p.pk, p.hidden \
     FROM main.sqlite_schema AS m JOIN pragma_table_xinfo(m.name, 'main') AS p \
     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY m.name, p.cid";

/// A foreign key written without a column list references the parent's primary key: its
/// `to` is NULL and the parent's key column of the same position stands in.
const FOREIGN_KEYS: &str = "SELECT m.name AS table_name, f.id, f.seq, f.\"table\" AS ref_table, \
     f.\"from\" AS from_column, COALESCE(f.\"to\", pk.name) AS to_column, f.on_update, \
     f.on_delete, f.\"match\" \
     FROM main.sqlite_schema AS m JOIN pragma_foreign_key_list(m.name, 'main') AS f \
     LEFT JOIN pragma_table_info(f.\"table\", 'main') AS pk \
       ON f.\"to\" IS NULL AND pk.pk = f.seq + 1 \
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
        let virtual_tables: Vec<String> = objects
            .iter()
            .filter(|r| r.text_ref("list_type").ok().flatten().as_deref() == Some("virtual"))
            .filter_map(|r| r.string("name").ok())
            .collect();
        let mut ddl = std::collections::HashMap::new();
        for (i, row) in objects.iter().enumerate() {
            emit_object(out, scope, &db_name, schema, row, &virtual_tables)?;
            if row.text_ref("type")?.as_deref() == Some("table") {
                if let (Ok(name), Ok(Some(sql))) = (row.string("name"), row.text("sql")) {
                    ddl.insert(name, sql);
                }
            }
            airlock_sdk::log::progress(i as u64 + 1, Some(total));
        }
        if scope.wants(AssetKind::Column) {
            for row in conn.query(COLUMNS, &[])? {
                emit_column(out, &db_name, schema, &row?, &ddl)?;
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
    virtual_tables: &[String],
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
            let list_type = row.text("list_type")?.unwrap_or_else(|| "table".into());
            let module = match list_type.as_str() {
                "virtual" => sql.as_deref().and_then(ddl::virtual_module),
                _ => None,
            };
            // A shadow table is named after its virtual table: `<vtab>_<suffix>`.
            let shadow_of = match list_type.as_str() {
                "shadow" => virtual_tables
                    .iter()
                    .filter(|v| {
                        name.len() > v.len() + 1
                            && name.starts_with(v.as_str())
                            && name.as_bytes()[v.len()] == b'_'
                    })
                    .max_by_key(|v| v.len())
                    .cloned(),
                _ => None,
            };
            out.emit(
                AssetKind::Table,
                [db, schema, &name],
                json!({
                    "table_type": list_type,
                    "without_rowid": row.bool("wr")?.unwrap_or(false),
                    "strict": row.bool("strict")?.unwrap_or(false),
                    "virtual_module": module,
                    "shadow_of": shadow_of,
                    "ddl": sql,
                }),
            )
        }
        _ => Ok(()),
    }
}

fn emit_column(
    out: &mut Emitter,
    db: &str,
    schema: &str,
    row: &Row,
    ddl: &std::collections::HashMap<String, String>,
) -> Result<(), Error> {
    let hidden = row.int("hidden")?.unwrap_or(0);
    // Hidden columns of a virtual table (an FTS table's own name column, `rank`) are the
    // module's, not the table's: SQLite's `table_info` leaves them out too.
    if hidden == 1 {
        return Ok(());
    }
    let table = row.string("table_name")?;
    let name = row.string("name")?;
    let ordinal = row.int("cid")?.unwrap_or(0) + 1;
    let pk = row.int("pk")?.unwrap_or(0);
    let def = ddl
        .get(&table)
        .and_then(|sql| ddl::column_definition(sql, &name));
    let generated = match hidden {
        2 => Some("virtual"),
        3 => Some("stored"),
        _ => None,
    }
    .map(|kind| {
        json!({
            "kind": kind,
            "expression": def.as_deref().and_then(ddl::generated_expression),
        })
    });
    let upper = def.as_deref().map(str::to_ascii_uppercase);
    out.emit(
        AssetKind::Column,
        [db, schema, &table, &name],
        json!({
            "ordinal": ordinal,
            "data_type": row.string("type")?,
            "nullable": !row.bool("notnull")?.unwrap_or(false),
            "default": row.text("dflt_value")?,
            "primary_key_position": if pk > 0 { Some(pk) } else { None },
            "generated": generated,
            "auto_increment": upper.as_deref().is_some_and(|d| d.contains("AUTOINCREMENT")),
            "collation": def.as_deref().and_then(ddl::collation),
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

/// What the catalog pragmas do not say, read from a table's `CREATE` statement: SQLite keeps
/// it as written, so a small tokenizer over it (quotes and parentheses respected) is exact.
mod ddl {
    /// The module of `CREATE VIRTUAL TABLE t USING module(...)`.
    pub fn virtual_module(sql: &str) -> Option<String> {
        let tokens = tokens(sql);
        let at = tokens
            .iter()
            .position(|t| t.eq_ignore_ascii_case("USING"))?;
        tokens.get(at + 1).map(|m| unquote(m).to_ascii_lowercase())
    }

    /// The definition of column `name` inside `CREATE TABLE t (...)`.
    pub fn column_definition(sql: &str, name: &str) -> Option<String> {
        let open = sql.find('(')?;
        let body = &sql[open + 1..];
        for part in split_top_level(body) {
            let tokens = tokens(part);
            if tokens
                .first()
                .is_some_and(|t| unquote(t).eq_ignore_ascii_case(name))
            {
                return Some(part.trim().to_string());
            }
        }
        None
    }

    /// The expression of `... [GENERATED ALWAYS] AS (expr) ...`.
    pub fn generated_expression(def: &str) -> Option<String> {
        let tokens = tokens(def);
        let at = tokens.iter().position(|t| t.eq_ignore_ascii_case("AS"))?;
        let expr = tokens.get(at + 1)?;
        expr.strip_prefix('(')
            .and_then(|e| e.strip_suffix(')'))
            .map(|e| e.trim().to_string())
    }

    /// The collation of `... COLLATE name ...`.
    pub fn collation(def: &str) -> Option<String> {
        let tokens = tokens(def);
        let at = tokens
            .iter()
            .position(|t| t.eq_ignore_ascii_case("COLLATE"))?;
        tokens.get(at + 1).map(|c| unquote(c).to_string())
    }

    /// Splits at commas outside quotes and parentheses, up to the closing parenthesis.
    fn split_top_level(body: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let (mut depth, mut start, mut quote) = (0i32, 0usize, None::<char>);
        for (i, c) in body.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"' | '`') => quote = Some(c),
                (None, '[') => quote = Some(']'),
                (None, '(') => depth += 1,
                (None, ')') if depth == 0 => {
                    parts.push(&body[start..i]);
                    return parts;
                }
                (None, ')') => depth -= 1,
                (None, ',') if depth == 0 => {
                    parts.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&body[start..]);
        parts
    }

    /// Words, quoted names and parenthesised groups (kept whole, with their parentheses).
    fn tokens(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let bytes: Vec<(usize, char)> = text.char_indices().collect();
        let mut i = 0;
        while i < bytes.len() {
            let (start, c) = bytes[i];
            if c.is_whitespace() || c == ',' {
                i += 1;
                continue;
            }
            let close = match c {
                '\'' | '"' | '`' => Some(c),
                '[' => Some(']'),
                _ => None,
            };
            let mut j = i + 1;
            if let Some(q) = close {
                while j < bytes.len() && bytes[j].1 != q {
                    j += 1;
                }
                j = (j + 1).min(bytes.len());
            } else if c == '(' {
                let mut depth = 1;
                let mut quote = None::<char>;
                while j < bytes.len() && depth > 0 {
                    let d = bytes[j].1;
                    match (quote, d) {
                        (Some(q), d) if d == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"' | '`') => quote = Some(d),
                        (None, '(') => depth += 1,
                        (None, ')') => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
            } else {
                while j < bytes.len()
                    && !bytes[j].1.is_whitespace()
                    && !matches!(bytes[j].1, '(' | ',' | '\'' | '"' | '`' | '[')
                {
                    j += 1;
                }
            }
            let end = bytes.get(j).map(|b| b.0).unwrap_or(text.len());
            out.push(&text[start..end]);
            i = j;
        }
        out
    }

    fn unquote(t: &str) -> &str {
        let t = t.trim();
        for (open, close) in [('"', '"'), ('`', '`'), ('[', ']'), ('\'', '\'')] {
            if let Some(inner) = t.strip_prefix(open).and_then(|t| t.strip_suffix(close)) {
                return inner;
            }
        }
        t
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_columns_expressions_collations_and_modules() {
            let sql = "CREATE TABLE \"t x\" (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                       name TEXT COLLATE NOCASE, \"full, name\" TEXT GENERATED ALWAYS AS \
                       (name || ' (' || id || ')') STORED, total AS (id * 2), \
                       CHECK (id > 0))";
            let def = column_definition(sql, "full, name").unwrap();
            assert_eq!(
                generated_expression(&def).as_deref(),
                Some("name || ' (' || id || ')'")
            );
            let total = column_definition(sql, "total").unwrap();
            assert_eq!(generated_expression(&total).as_deref(), Some("id * 2"));
            let name = column_definition(sql, "name").unwrap();
            assert_eq!(collation(&name).as_deref(), Some("NOCASE"));
            assert_eq!(generated_expression(&name), None);
            assert!(column_definition(sql, "id")
                .unwrap()
                .contains("AUTOINCREMENT"));
            assert_eq!(column_definition(sql, "missing"), None);
            assert_eq!(
                virtual_module("CREATE VIRTUAL TABLE docs USING fts5(title, body)").as_deref(),
                Some("fts5")
            );
        }
    }
}

airlock_sdk::export_connector!(Sqlite);
