//! airlock connector for PostgreSQL: databases, schemas, tables (ordinary, partitioned,
//! foreign), views, materialized views, sequences, functions, columns, primary, unique,
//! foreign-key and check constraints, indexes, comments and row-count estimates.
//!
//! The plugin has no network access and never sees the password: it asks the host to open
//! each database with the credential handle bound to the `source` slot, and the host logs in
//! with TLS as the workflow says.
//!
//! Every kind of object is read with one bulk catalog query per database whose rows arrive in
//! batches, never one query per table. The scope's exclude globs are pushed down into those
//! queries as POSIX regular expressions over the same qualified names the host filters on;
//! the host filters again, so the pushdown only has to be conservative: it never drops an
//! object the host would keep.

use std::borrow::Cow;

use airlock_sdk::sql::{Connection, Driver, Endpoint, Row, Value};
use airlock_sdk::{AssetKind, Capability, Connector, Emitter, Error, PluginInfo, Scope};
use serde::Deserialize;
use serde_json::{json, Value as Json};

/// The workflow's `[source]` table as the host passes it (other keys are ignored).
#[derive(Deserialize)]
struct Config {
    /// `host:port` of the server.
    endpoint: Option<String>,
    /// The database to read; with `databases = ["*"]`, the one used to list the others.
    database: Option<String>,
    /// Databases to read: names, or `["*"]` for every database on the server.
    #[serde(default)]
    databases: Option<Vec<String>>,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Push exclude patterns down into the catalog queries (default true).
    #[serde(default = "yes")]
    pushdown: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { pushdown: true }
    }
}

fn yes() -> bool {
    true
}

struct Postgres;

impl Connector for Postgres {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL: schemas, tables, views, columns, keys, indexes, comments",
        )
        .capabilities(&[Capability::Sql])
        .kinds(&[
            AssetKind::Database,
            AssetKind::Schema,
            AssetKind::Table,
            AssetKind::View,
            AssetKind::MaterializedView,
            AssetKind::Sequence,
            AssetKind::Function,
            AssetKind::Procedure,
            AssetKind::Column,
            AssetKind::PrimaryKey,
            AssetKind::UniqueKey,
            AssetKind::ForeignKey,
            AssetKind::CheckConstraint,
            AssetKind::Index,
        ])
        .config_schema(json!({
            "type": "object",
            "properties": {
                "pushdown": {
                    "type": "boolean",
                    "description": "push exclude patterns down into the catalog queries (default true)"
                }
            },
            "additionalProperties": false
        }))
    }

    fn extract(config: Config, scope: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let endpoint = config
            .endpoint
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::InvalidConfig("source.endpoint must be host:port".into()))?;
        let credential = airlock_sdk::credentials::get("source")?;
        let excludes = if config.options.pushdown {
            pushdown_excludes(&scope.exclude)
        } else {
            Vec::new()
        };
        let open = |database: &str| {
            Connection::open(
                &Endpoint {
                    driver: Driver::Postgres,
                    address: endpoint.clone(),
                    database: Some(database.to_string()),
                },
                Some(&credential),
            )
        };

        let databases = config.databases.unwrap_or_default();
        let every = databases.iter().any(|d| d == "*");
        if every && databases.len() > 1 {
            return Err(Error::InvalidConfig(
                "source.databases: \"*\" cannot be combined with names".into(),
            ));
        }
        let names: Vec<String> = if every {
            let first = config.database.as_deref().unwrap_or("postgres");
            let conn = open(first)?;
            let encoding_ok = utf8_server(&conn)?;
            let excludes = if encoding_ok {
                excludes.clone()
            } else {
                Vec::new()
            };
            let sql = format!(
                "SELECT d.datname AS name FROM pg_catalog.pg_database d \
                 WHERE d.datallowconn AND NOT d.datistemplate \
                 AND pg_catalog.has_database_privilege(d.oid, 'CONNECT') \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.json_array_elements_text($1::json) AS x(re) \
                 WHERE {} ~ x.re) ORDER BY 1",
                segment("d.datname")
            );
            let rows = conn.query_all(&sql, &[patterns_param(&excludes)])?;
            rows.iter()
                .map(|r| r.string("name"))
                .collect::<Result<_, _>>()?
        } else if !databases.is_empty() {
            databases
        } else {
            vec![config.database.clone().ok_or_else(|| {
                Error::InvalidConfig(
                    "source.database (or source.databases) must name a database".into(),
                )
            })?]
        };

        let total = names.len() as u64;
        for (i, name) in names.iter().enumerate() {
            let conn = open(name)?;
            extract_database(&conn, scope, &excludes, out)?;
            airlock_sdk::log::progress(i as u64 + 1, Some(total));
        }
        Ok(())
    }
}

/// Reads one database over its own connection.
fn extract_database(
    conn: &Connection,
    scope: &Scope,
    excludes: &[String],
    out: &mut Emitter,
) -> Result<(), Error> {
    let db_row = conn.query_all(
        "SELECT pg_catalog.current_database() AS name, \
         pg_catalog.pg_encoding_to_char(d.encoding) AS encoding, \
         pg_catalog.shobj_description(d.oid, 'pg_database') AS comment, \
         pg_catalog.pg_get_userbyid(d.datdba) AS owner, \
         pg_catalog.current_setting('server_version') AS server_version \
         FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
        &[],
    )?;
    let db_row = db_row
        .first()
        .ok_or_else(|| Error::Source("the current database is not in pg_database".into()))?;
    let db = db_row.string("name")?;
    // Regular expressions over multi-byte names match characters only in a UTF-8 database;
    // elsewhere `?` could match half a character, so nothing is pushed down.
    let excludes = if db_row.string("encoding")? == "UTF8" {
        excludes
    } else {
        &[]
    };
    // Without patterns the queries have no pushdown condition (and no parameter) at all.
    let patterns: Vec<Value> = if excludes.is_empty() {
        Vec::new()
    } else {
        vec![patterns_param(excludes)]
    };
    let q = Queries::new(!excludes.is_empty());

    if scope.wants(AssetKind::Database) {
        emit(
            out,
            AssetKind::Database,
            &[&db],
            json!({
                "engine": "postgres",
                "server_version": db_row.text("server_version")?,
                "encoding": db_row.text("encoding")?,
                "owner": db_row.text("owner")?,
                "comment": db_row.text("comment")?,
            }),
        )?;
    }
    if scope.wants(AssetKind::Schema) {
        for row in conn.query(&q.schemas, &patterns)? {
            let row = row?;
            let schema = row.string("schema_name")?;
            emit(
                out,
                AssetKind::Schema,
                &[&db, &schema],
                json!({ "owner": row.text("owner")?, "comment": row.text("comment")? }),
            )?;
        }
    }
    if scope.wants(AssetKind::Table)
        || scope.wants(AssetKind::View)
        || scope.wants(AssetKind::MaterializedView)
    {
        for row in conn.query(&q.relations, &patterns)? {
            emit_relation(out, scope, &db, &row?)?;
        }
    }
    if scope.wants(AssetKind::Sequence) {
        // Identity columns' sequences are internal to the column (information_schema does
        // not list them either); serial columns' sequences are ordinary objects.
        for row in conn.query(&q.sequences, &patterns)? {
            let row = row?;
            let (schema, name) = (row.string("schema_name")?, row.string("name")?);
            emit(
                out,
                AssetKind::Sequence,
                &[&db, &schema, &name],
                json!({
                    "data_type": row.text("data_type")?,
                    "start_value": row.int("start_value")?,
                    "increment": row.int("increment")?,
                    "min_value": row.int("min_value")?,
                    "max_value": row.int("max_value")?,
                    "cycle": row.bool("cycle")?,
                    "comment": row.text("comment")?,
                    "owner": row.text("owner")?,
                    "extension": row.text("extension")?,
                }),
            )?;
        }
    }
    if scope.wants(AssetKind::Function) || scope.wants(AssetKind::Procedure) {
        for row in conn.query(&q.functions, &patterns)? {
            emit_function(out, scope, &db, &row?)?;
        }
    }
    if scope.wants(AssetKind::Column) {
        for row in conn.query(&q.columns, &patterns)? {
            emit_column(out, &db, &row?)?;
        }
    }
    if scope.wants(AssetKind::PrimaryKey)
        || scope.wants(AssetKind::UniqueKey)
        || scope.wants(AssetKind::ForeignKey)
        || scope.wants(AssetKind::CheckConstraint)
    {
        for row in conn.query(&q.constraints, &patterns)? {
            emit_constraint(out, scope, &db, &row?)?;
        }
    }
    if scope.wants(AssetKind::Index) {
        for row in conn.query(&q.indexes, &patterns)? {
            emit_index(out, &db, &row?)?;
        }
    }
    out.flush()
}

fn emit_relation(out: &mut Emitter, scope: &Scope, db: &str, row: &Row) -> Result<(), Error> {
    let schema = row.string("schema_name")?;
    let name = row.string("name")?;
    let path = [db, schema.as_str(), name.as_str()];
    let comment = row.text("comment")?;
    let estimate = row.int("row_count_estimate")?;
    match row.string("kind")?.as_str() {
        kind @ ("r" | "p" | "f") if scope.wants(AssetKind::Table) => {
            let partition_of = match (row.text("parent_schema")?, row.text("parent_name")?) {
                (Some(s), Some(t)) => json!({ "schema": s, "table": t }),
                _ => Json::Null,
            };
            emit(
                out,
                AssetKind::Table,
                &path,
                json!({
                    "table_type": match kind { "p" => "partitioned", "f" => "foreign", _ => "table" },
                    "comment": comment,
                    "row_count_estimate": estimate,
                    "partition_key": row.text("partition_key")?,
                    "partition_of": partition_of,
                    "partition_bound": row.text("partition_bound")?,
                    "owner": row.text("owner")?,
                    "extension": row.text("extension")?,
                }),
            )
        }
        "v" if scope.wants(AssetKind::View) => emit(
            out,
            AssetKind::View,
            &path,
            json!({
                "view_definition": row.text("view_definition")?,
                "comment": comment,
                "owner": row.text("owner")?,
                "extension": row.text("extension")?,
            }),
        ),
        "m" if scope.wants(AssetKind::MaterializedView) => emit(
            out,
            AssetKind::MaterializedView,
            &path,
            json!({
                "view_definition": row.text("view_definition")?,
                "comment": comment,
                "row_count_estimate": estimate,
                "owner": row.text("owner")?,
                "extension": row.text("extension")?,
            }),
        ),
        _ => Ok(()),
    }
}

fn emit_function(out: &mut Emitter, scope: &Scope, db: &str, row: &Row) -> Result<(), Error> {
    let schema = row.string("schema_name")?;
    let signature = row.string("signature")?;
    let kind = match row.string("kind")?.as_str() {
        "p" => AssetKind::Procedure,
        _ => AssetKind::Function,
    };
    if !scope.wants(kind) {
        return Ok(());
    }
    emit(
        out,
        kind,
        &[db, &schema, &signature],
        json!({
            "name": row.text("name")?,
            "arguments": row.text("arguments")?,
            "function_type": match row.string("kind")?.as_str() {
                "a" => "aggregate",
                "w" => "window",
                "p" => "procedure",
                _ => "function",
            },
            "return_type": row.text("return_type")?,
            "language": row.text("language")?,
            "comment": row.text("comment")?,
            "owner": row.text("owner")?,
            "extension": row.text("extension")?,
        }),
    )
}

/// A column's attributes, borrowed from its row: columns are most of a catalog's assets, so
/// they are serialised straight from the row without an intermediate JSON map.
#[derive(serde::Serialize)]
struct ColumnAttrs<'r> {
    ordinal: Option<i64>,
    data_type: Option<Cow<'r, str>>,
    nullable: Option<bool>,
    default: Option<Cow<'r, str>>,
    generated: Option<Generated<'r>>,
    identity: Option<Cow<'r, str>>,
    collation: Option<Cow<'r, str>>,
    comment: Option<Cow<'r, str>>,
    primary_key_position: Option<i64>,
}

/// A generated column: `stored` (or, from PostgreSQL 18, `virtual`) and its expression.
#[derive(serde::Serialize)]
struct Generated<'r> {
    kind: Cow<'r, str>,
    expression: Option<Cow<'r, str>>,
}

fn emit_column(out: &mut Emitter, db: &str, row: &Row) -> Result<(), Error> {
    let required = |c: &str| {
        row.text_ref(c)?
            .ok_or_else(|| Error::Source(format!("column `{c}` is NULL")))
    };
    let (schema, table, name) = (
        required("schema_name")?,
        required("table_name")?,
        required("name")?,
    );
    emit(
        out,
        AssetKind::Column,
        &[db, &schema, &table, &name],
        ColumnAttrs {
            ordinal: row.int("ordinal")?,
            data_type: row.text_ref("data_type")?,
            nullable: row.bool("nullable")?,
            default: row.text_ref("column_default")?,
            generated: match row.text_ref("generated_kind")? {
                Some(kind) => Some(Generated {
                    kind,
                    expression: row.text_ref("generation_expression")?,
                }),
                None => None,
            },
            identity: row.text_ref("identity")?,
            collation: row.text_ref("collation")?,
            comment: row.text_ref("comment")?,
            primary_key_position: row.int("primary_key_position")?,
        },
    )
}

fn emit_constraint(out: &mut Emitter, scope: &Scope, db: &str, row: &Row) -> Result<(), Error> {
    let schema = row.string("schema_name")?;
    let table = row.string("table_name")?;
    let name = row.string("name")?;
    let path = [db, schema.as_str(), table.as_str(), name.as_str()];
    let columns = json_list(row, "columns")?;
    let kind = match row.string("kind")?.as_str() {
        "p" => AssetKind::PrimaryKey,
        "u" => AssetKind::UniqueKey,
        "f" => AssetKind::ForeignKey,
        _ => AssetKind::CheckConstraint,
    };
    if !scope.wants(kind) {
        return Ok(());
    }
    let attrs = match kind {
        AssetKind::ForeignKey => json!({
            "columns": columns,
            "referenced_schema": row.text("referenced_schema")?,
            "referenced_table": row.text("referenced_table")?,
            "referenced_columns": json_list(row, "referenced_columns")?,
            "on_update": row.text("on_update")?,
            "on_delete": row.text("on_delete")?,
            "match": row.text("match_type")?,
            "deferrable": row.bool("deferrable")?,
            "validated": row.bool("validated")?,
            "definition": row.text("definition")?,
        }),
        AssetKind::CheckConstraint => json!({
            "columns": columns,
            "definition": row.text("definition")?,
            "validated": row.bool("validated")?,
        }),
        _ => json!({
            "columns": columns,
            "deferrable": row.bool("deferrable")?,
            "definition": row.text("definition")?,
        }),
    };
    emit(out, kind, &path, attrs)
}

fn emit_index(out: &mut Emitter, db: &str, row: &Row) -> Result<(), Error> {
    let schema = row.string("schema_name")?;
    let table = row.string("table_name")?;
    let name = row.string("name")?;
    emit(
        out,
        AssetKind::Index,
        &[db, &schema, &table, &name],
        json!({
            "unique": row.bool("is_unique")?,
            "primary": row.bool("is_primary")?,
            "columns": json_list(row, "columns")?,
            "include_columns": json_list(row, "include_columns")?,
            "method": row.text("method")?,
            "predicate": row.text("predicate")?,
            "definition": row.text("definition")?,
        }),
    )
}

/// Emits an asset unless a path segment is one the host would reject as invalid (which
/// would fail the whole run): empty, or holding a control character. Those are skipped
/// with a warning.
fn emit<A: serde::Serialize>(
    out: &mut Emitter,
    kind: AssetKind,
    path: &[&str],
    attrs: A,
) -> Result<(), Error> {
    if path
        .iter()
        .any(|s| s.is_empty() || s.chars().any(char::is_control))
    {
        let shown: Vec<String> = path.iter().map(|s| s.escape_debug().to_string()).collect();
        out.warn(format!(
            "skipped {kind:?} {}: a name is empty or holds a control character",
            shown.join(".")
        ));
        return Ok(());
    }
    out.emit(kind, path, attrs)
}

/// A column holding a JSON array as text (NULL is an empty list).
fn json_list(row: &Row, column: &str) -> Result<Json, Error> {
    match row.text(column)? {
        None => Ok(json!([])),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| Error::Source(format!("column `{column}` is not JSON: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Catalog queries

/// User schemas only: `pg_catalog`, `pg_toast`, `pg_temp_*` and every other `pg_` schema
/// (reserved for the system) and `information_schema` are skipped.
const USER_SCHEMA: &str = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'";

/// The bulk catalog queries of one database. Each takes `$1`: a JSON array of regular
/// expressions; an object is skipped when one matches the qualified name of its database,
/// schema or (for objects inside a table) table.
struct Queries {
    schemas: String,
    relations: String,
    sequences: String,
    functions: String,
    columns: String,
    constraints: String,
    indexes: String,
}

impl Queries {
    /// The queries; `pushdown`: whether they take the exclude patterns as `$1`.
    fn new(pushdown: bool) -> Self {
        let not_excluded = |schema: &str, name: Option<&str>| {
            if pushdown {
                not_excluded(schema, name)
            } else {
                "true".to_string()
            }
        };
        let rel = not_excluded("n.nspname", Some("c.relname"));
        Queries {
            schemas: format!(
                "SELECT n.nspname AS schema_name, \
                 pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment, \
                 pg_catalog.pg_get_userbyid(n.nspowner) AS owner \
                 FROM pg_catalog.pg_namespace n \
                 WHERE {USER_SCHEMA} AND {} ORDER BY 1",
                not_excluded("n.nspname", None)
            ),
            relations: format!(
                "SELECT n.nspname AS schema_name, c.relname AS name, c.relkind::text AS kind, \
                 ds.description AS comment, \
                 CASE WHEN c.relkind IN ('r', 'p', 'f', 'm') AND c.reltuples >= 0 \
                   THEN c.reltuples::int8 END AS row_count_estimate, \
                 CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key, \
                 pn.nspname AS parent_schema, pc.relname AS parent_name, \
                 CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END AS partition_bound, \
                 CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END AS view_definition, \
                 pg_catalog.pg_get_userbyid(c.relowner) AS owner, \
                 e.extname AS extension \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_catalog.pg_inherits i ON c.relispartition AND i.inhrelid = c.oid \
                 LEFT JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent \
                 LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace \
                 LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid \
                   AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = 0 \
                 LEFT JOIN pg_catalog.pg_depend ext ON ext.objid = c.oid \
                   AND ext.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                   AND ext.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND ext.deptype = 'e' \
                 LEFT JOIN pg_catalog.pg_extension e ON e.oid = ext.refobjid \
                 WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND {USER_SCHEMA} AND {rel} \
                 ORDER BY 1, 2"
            ),
            sequences: format!(
                "SELECT n.nspname AS schema_name, c.relname AS name, \
                 pg_catalog.format_type(s.seqtypid, NULL) AS data_type, \
                 s.seqstart AS start_value, s.seqincrement AS increment, \
                 s.seqmin AS min_value, s.seqmax AS max_value, s.seqcycle AS cycle, \
                 pg_catalog.obj_description(c.oid, 'pg_class') AS comment, \
                 pg_catalog.pg_get_userbyid(c.relowner) AS owner, \
                 {} AS extension \
                 FROM pg_catalog.pg_sequence s \
                 JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE {USER_SCHEMA} AND {rel} \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep \
                   WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
                   AND dep.objid = c.oid AND dep.deptype = 'i') \
                 ORDER BY 1, 2",
                owning_extension("pg_class", "c.oid")
            ),
            functions: format!(
                "SELECT f.* FROM (SELECT n.nspname AS schema_name, p.proname AS name, \
                 p.proname || '(' || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format_type(u.t, NULL), ', ' ORDER BY u.o) \
                   FROM pg_catalog.unnest(p.proargtypes::oid[]) WITH ORDINALITY AS u(t, o)), '') || ')' AS signature, \
                 pg_catalog.pg_get_function_arguments(p.oid) AS arguments, \
                 p.prokind::text AS kind, l.lanname AS language, \
                 CASE WHEN p.prokind <> 'p' THEN pg_catalog.pg_get_function_result(p.oid) END AS return_type, \
                 pg_catalog.obj_description(p.oid, 'pg_proc') AS comment, \
                 pg_catalog.pg_get_userbyid(p.proowner) AS owner, \
                 {} AS extension \
                 FROM pg_catalog.pg_proc p \
                 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                 JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
                 WHERE {USER_SCHEMA}) AS f \
                 WHERE {} ORDER BY 1, 3",
                owning_extension("pg_proc", "p.oid"),
                not_excluded("f.schema_name", Some("f.signature"))
            ),
            // Joins instead of per-row catalog lookups, and sorted by the relation's OID and
            // the column's number rather than by names: the cheapest order the server has.
            columns: format!(
                "SELECT n.nspname AS schema_name, c.relname AS table_name, a.attname AS name, \
                 a.attnum::int8 AS ordinal, \
                 pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type, \
                 NOT a.attnotnull AS nullable, \
                 CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS column_default, \
                 CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS generation_expression, \
                 CASE a.attgenerated WHEN 's' THEN 'stored' WHEN 'v' THEN 'virtual' END AS generated_kind, \
                 CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by_default' END AS identity, \
                 CASE WHEN cn.nspname = 'pg_catalog' THEN co.collname::text \
                   ELSE cn.nspname || '.' || co.collname END AS collation, \
                 ds.description AS comment, \
                 pg_catalog.array_position(pk.conkey, a.attnum)::int8 AS primary_key_position \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 LEFT JOIN pg_catalog.pg_constraint pk ON pk.conrelid = c.oid AND pk.contype = 'p' \
                 LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = c.oid \
                   AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = a.attnum \
                 LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
                 LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
                   AND (cn.nspname <> 'pg_catalog' OR co.collname <> 'default') \
                 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm') \
                 AND {USER_SCHEMA} AND {rel} \
                 ORDER BY a.attrelid, a.attnum"
            ),
            constraints: format!(
                "SELECT n.nspname AS schema_name, c.relname AS table_name, con.conname AS name, \
                 con.contype::text AS kind, \
                 (SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord) \
                   FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum)::text AS columns, \
                 rn.nspname AS referenced_schema, rc.relname AS referenced_table, \
                 (SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord) \
                   FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)::text AS referenced_columns, \
                 {} AS on_update, {} AS on_delete, \
                 CASE con.confmatchtype WHEN 'f' THEN 'FULL' WHEN 'p' THEN 'PARTIAL' WHEN 's' THEN 'SIMPLE' END AS match_type, \
                 pg_catalog.pg_get_constraintdef(con.oid) AS definition, \
                 con.condeferrable AS deferrable, con.convalidated AS validated \
                 FROM pg_catalog.pg_constraint con \
                 JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid \
                 LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
                 WHERE con.contype IN ('p', 'u', 'f', 'c') AND {USER_SCHEMA} AND {rel} \
                 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint parent \
                   WHERE parent.oid = con.conparentid AND parent.conrelid = con.conrelid) \
                 ORDER BY 1, 2, 3",
                fk_action("con.confupdtype"),
                fk_action("con.confdeltype"),
            ),
            indexes: format!(
                "SELECT n.nspname AS schema_name, c.relname AS table_name, ic.relname AS name, \
                 i.indisunique AS is_unique, i.indisprimary AS is_primary, \
                 (SELECT pg_catalog.json_agg(CASE WHEN k.attnum <> 0 THEN a.attname::text \
                     ELSE pg_catalog.pg_get_indexdef(i.indexrelid, k.ord::int4, true) END ORDER BY k.ord) \
                   FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                   LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                   WHERE k.ord <= i.indnkeyatts)::text AS columns, \
                 (SELECT pg_catalog.json_agg(a.attname ORDER BY k.ord) \
                   FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                   WHERE k.ord > i.indnkeyatts)::text AS include_columns, \
                 am.amname AS method, \
                 pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate, \
                 pg_catalog.pg_get_indexdef(i.indexrelid) AS definition \
                 FROM pg_catalog.pg_index i \
                 JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
                 JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
                 WHERE c.relkind IN ('r', 'p', 'm') AND {USER_SCHEMA} AND {rel} \
                 ORDER BY 1, 2, 3"
            ),
        }
    }
}

/// SQL naming the extension that owns the object `oid` of catalog `catalog` (`CREATE
/// EXTENSION` made it), or NULL.
fn owning_extension(catalog: &str, oid: &str) -> String {
    format!(
        "(SELECT e.extname FROM pg_catalog.pg_depend ext \
         JOIN pg_catalog.pg_extension e ON e.oid = ext.refobjid \
         WHERE ext.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass AND ext.objid = {oid} \
         AND ext.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass \
         AND ext.deptype = 'e' LIMIT 1)"
    )
}

/// The referential action names information_schema uses.
fn fk_action(column: &str) -> String {
    format!(
        "CASE {column} WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE' \
         WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END"
    )
}

/// SQL computing a name as one segment of a qualified name, exactly as the host writes it:
/// in double quotes, `"` doubled, when it contains `.` or `"`.
fn segment(expr: &str) -> String {
    format!(
        "(CASE WHEN pg_catalog.strpos({expr}::text, '.') > 0 OR pg_catalog.strpos({expr}::text, '\"') > 0 \
         THEN '\"' || pg_catalog.replace({expr}::text, '\"', '\"\"') || '\"' ELSE {expr}::text END)"
    )
}

/// SQL that is true unless a pushed-down pattern in `$1` matches the qualified name of the
/// database, the schema `schema`, or the object `name` in it. These are the names the host
/// tests before dropping an object *and everything under it*, so skipping it in SQL drops
/// nothing the host would keep.
fn not_excluded(schema: &str, name: Option<&str>) -> String {
    let db = segment("pg_catalog.current_database()");
    let schema_name = format!("{db} || '.' || {}", segment(schema));
    let mut tests = vec![format!("{db} ~ x.re"), format!("({schema_name}) ~ x.re")];
    if let Some(name) = name {
        tests.push(format!(
            "({schema_name} || '.' || {}) ~ x.re",
            segment(name)
        ));
    }
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.json_array_elements_text($1::json) AS x(re) WHERE {})",
        tests.join(" OR ")
    )
}

fn patterns_param(patterns: &[String]) -> Value {
    Value::Text(Json::from(patterns.to_vec()).to_string())
}

/// Whether the server's encoding is UTF-8 (see [`extract_database`]).
fn utf8_server(conn: &Connection) -> Result<bool, Error> {
    let rows = conn.query_all(
        "SELECT pg_catalog.current_setting('server_encoding') AS e",
        &[],
    )?;
    Ok(rows
        .first()
        .map(|r| r.text("e"))
        .transpose()?
        .flatten()
        .is_some_and(|e| e == "UTF8"))
}

// ---------------------------------------------------------------------------------------
// Pushdown

/// Translates the exclude globs that can be translated exactly into PostgreSQL regular
/// expressions. `re:` patterns are left to the host (the `regex` crate's syntax is not
/// PostgreSQL's), as is anything holding a control character.
fn pushdown_excludes(patterns: &[String]) -> Vec<String> {
    patterns
        .iter()
        .filter_map(|p| glob_to_pg_regex(p))
        .collect()
}

/// A PostgreSQL advanced regular expression over the qualified name, anchored at both ends,
/// that matches no more than the host's glob: `**` any run of characters but a newline, `*`
/// any run without `.` or `"`, `?` one character other than those, anything else literal.
/// The host matches `*` and `?` per segment, so they also cover `.` and `"` inside a quoted
/// name (`shop.main.*` drops `shop.main."odd.name"`); here they stop at both, which never
/// skips what the host keeps, only leaves a few quoted names for the host to drop.
fn glob_to_pg_regex(glob: &str) -> Option<String> {
    if glob.trim().is_empty() || glob.starts_with("re:") || glob.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::from("^(?:");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str("[^\n]*");
            }
            '*' => out.push_str("[^.\"]*"),
            '?' => out.push_str("[^.\"]"),
            // A backslash before a non-alphanumeric character makes it literal; before an
            // alphanumeric one it would start an escape, so those stay bare.
            c if c.is_ascii_alphanumeric() || !c.is_ascii() => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out.push_str(")$");
    Some(out)
}

airlock_sdk::export_connector!(Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_translate() {
        assert_eq!(
            glob_to_pg_regex("shop.main.audit_*").unwrap(),
            "^(?:shop\\.main\\.audit\\_[^.\"]*)$"
        );
        assert_eq!(
            glob_to_pg_regex("**.tmp?").unwrap(),
            "^(?:[^\n]*\\.tmp[^.\"])$"
        );
        assert_eq!(glob_to_pg_regex("re:.*"), None);
        assert_eq!(
            glob_to_pg_regex("Ünï.\"a.b\"").unwrap(),
            "^(?:Ünï\\.\\\"a\\.b\\\")$"
        );
    }
}
