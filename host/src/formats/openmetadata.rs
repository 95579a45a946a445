//! OpenMetadata's create requests: one JSON document `{"databases": [CreateDatabaseRequest],
//! "schemas": [CreateDatabaseSchemaRequest], "tables": [CreateTableRequest]}`, in the order
//! OpenMetadata's API needs them (a schema after its database, a table after its schema).
//!
//! Names and fully qualified names follow OpenMetadata's rules: `::`, `>`, `"`, newline,
//! carriage return and tab in a name become `__reserved__colon__`, ... (what its models do to
//! every name), and a part holding `.` is written in double quotes. Column types use
//! OpenMetadata's `dataType` enum as its own ingestion maps native type names
//! (`ColumnTypeParser`), with `dataTypeDisplay` the native text. MySQL's databases are
//! OpenMetadata schemas of the database `default`, as its MySQL connector reads them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Line;

/// Options of the OpenMetadata output.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenMetadataOptions {
    /// The OpenMetadata database service the entities belong to.
    pub service: String,
}

/// The three request lists.
#[derive(Debug, Default, serde::Serialize)]
pub struct Requests {
    /// CreateDatabaseRequest objects.
    pub databases: Vec<Value>,
    /// CreateDatabaseSchemaRequest objects.
    pub schemas: Vec<Value>,
    /// CreateTableRequest objects.
    pub tables: Vec<Value>,
    /// Entities the run's changes report removed, to delete (`DELETE
    /// /api/v1/<entity>/name/<fullyQualifiedName>`): `{"entity", "fullyQualifiedName"}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deletions: Vec<Value>,
}

/// Deletions for removed entities given as (kind, path).
pub fn deletions(
    plugin: &str,
    options: &OpenMetadataOptions,
    removed: &[(String, Vec<String>)],
) -> Vec<Value> {
    let two_tier = plugin == "mysql";
    let service = options.service.as_str();
    removed
        .iter()
        .filter_map(|(kind, path)| {
            let (entity, fqn) = match (kind.as_str(), two_tier) {
                ("table" | "view" | "materialized_view", false) => {
                    ("table", fqn(&[service, &path[0], &path[1], &path[2]]))
                }
                ("table" | "view" | "materialized_view", true) => {
                    ("table", fqn(&[service, "default", &path[1], &path[2]]))
                }
                ("schema", false) => ("databaseSchema", fqn(&[service, &path[0], &path[1]])),
                ("schema", true) => ("databaseSchema", fqn(&[service, "default", &path[1]])),
                ("database", false) => ("database", fqn(&[service, &path[0]])),
                // A MySQL database is a schema of `default`; its schema asset says it.
                _ => return None,
            };
            Some(json!({ "entity": entity, "fullyQualifiedName": fqn }))
        })
        .collect()
}

/// A name as OpenMetadata's models encode it.
pub fn encode_name(name: &str) -> String {
    name.replace("::", "__reserved__colon__")
        .replace('>', "__reserved__arrow__")
        .replace('"', "__reserved__quote__")
        .replace('\n', "__reserved__newline__")
        .replace('\r', "__reserved__carriage_return__")
        .replace('\t', "__reserved__tab__")
}

/// An FQN of (encoded) parts: a part holding `.` is quoted.
pub fn fqn(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            let p = encode_name(p);
            if p.contains('.') {
                format!("\"{p}\"")
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Builds the requests for a run's assets from the connector `plugin`.
pub fn requests(plugin: &str, options: &OpenMetadataOptions, lines: &[Line]) -> Requests {
    let two_tier = plugin == "mysql";
    let service = options.service.as_str();
    // OpenMetadata's (database, schema) of an airlock path's first two segments.
    let place = |path: &[String]| -> (String, String) {
        if two_tier {
            ("default".to_string(), path[1].clone())
        } else {
            (path[0].clone(), path[1].clone())
        }
    };
    let mut out = Requests::default();
    let comment = |l: &Line| {
        l.attributes
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if two_tier {
        out.databases
            .push(json!({ "name": "default", "service": fqn(&[service]) }));
    }
    for db in lines.iter().filter(|l| l.kind == "database") {
        if two_tier {
            continue;
        }
        let mut r = json!({ "name": encode_name(&db.path[0]), "service": fqn(&[service]) });
        if let Some(c) = comment(db) {
            r["description"] = json!(c);
        }
        out.databases.push(r);
    }
    for schema in lines.iter().filter(|l| l.kind == "schema") {
        let (db, name) = place(&schema.path);
        let mut r = json!({ "name": encode_name(&name), "database": fqn(&[service, &db]) });
        if let Some(c) = comment(schema) {
            r["description"] = json!(c);
        }
        out.schemas.push(r);
    }
    let mut columns: BTreeMap<&[String], Vec<&Line>> = BTreeMap::new();
    let mut keys: BTreeMap<&[String], Vec<&Line>> = BTreeMap::new();
    for l in lines {
        match l.kind.as_str() {
            "column" => columns.entry(&l.path[..3]).or_default().push(l),
            "primary_key" | "unique_key" | "foreign_key" => {
                keys.entry(&l.path[..3]).or_default().push(l)
            }
            _ => {}
        }
    }
    for t in lines
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "table" | "view" | "materialized_view"))
    {
        let attrs = &t.attributes;
        if attrs.get("table_type").and_then(Value::as_str) == Some("sequence") {
            continue;
        }
        let (db, schema) = place(&t.path);
        let key = &t.path[..3];
        let table_keys = keys.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let names = |l: &Line, k: &str| -> Vec<String> {
            l.attributes
                .get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let pk: Vec<String> = table_keys
            .iter()
            .find(|k| k.kind == "primary_key")
            .map(|k| names(k, "columns"))
            .or_else(|| {
                // A connector without primary-key assets gives positions on the columns.
                let mut by_pos: Vec<(i64, String)> = columns
                    .get(key)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        c.attributes
                            .get("primary_key_position")
                            .and_then(Value::as_i64)
                            .map(|p| (p, c.path[3].clone()))
                    })
                    .collect();
                by_pos.sort();
                (!by_pos.is_empty()).then(|| by_pos.into_iter().map(|(_, n)| n).collect())
            })
            .unwrap_or_default();
        let single_unique: Vec<String> = table_keys
            .iter()
            .filter(|k| k.kind == "unique_key")
            .map(|k| names(k, "columns"))
            .filter(|c| c.len() == 1)
            .map(|mut c| c.remove(0))
            .collect();
        let mut cols: Vec<&&Line> = columns.get(key).into_iter().flatten().collect();
        cols.sort_by_key(|c| c.attributes.get("ordinal").and_then(Value::as_i64));
        let column_requests: Vec<Value> = cols
            .iter()
            .map(|c| {
                let a = &c.attributes;
                let name = &c.path[3];
                let native = a.get("data_type").and_then(Value::as_str).unwrap_or("");
                let ty = data_type(native);
                let mut r = json!({
                    "name": encode_name(name),
                    "dataType": ty.name,
                    "dataTypeDisplay": if native.is_empty() { ty.name.to_ascii_lowercase() } else { native.to_string() },
                });
                if let Some(len) = ty.length {
                    r["dataLength"] = json!(len);
                }
                if let Some(elem) = ty.array_of {
                    r["arrayDataType"] = json!(elem);
                }
                if let Some((p, s)) = ty.precision {
                    r["precision"] = json!(p);
                    if let Some(s) = s {
                        r["scale"] = json!(s);
                    }
                }
                let constraint = if pk.len() == 1 && pk[0] == *name {
                    "PRIMARY_KEY"
                } else if single_unique.contains(name) {
                    "UNIQUE"
                } else if a.get("nullable").and_then(Value::as_bool) == Some(false) {
                    "NOT_NULL"
                } else {
                    "NULL"
                };
                r["constraint"] = json!(constraint);
                if let Some(o) = a.get("ordinal").and_then(Value::as_i64) {
                    r["ordinalPosition"] = json!(o);
                }
                if let Some(d) = a.get("comment").and_then(Value::as_str) {
                    r["description"] = json!(d);
                }
                r
            })
            .collect();
        let encoded =
            |v: Vec<String>| -> Vec<String> { v.iter().map(|c| encode_name(c)).collect() };
        let mut constraints = Vec::new();
        if pk.len() > 1 {
            constraints
                .push(json!({ "constraintType": "PRIMARY_KEY", "columns": encoded(pk.clone()) }));
        }
        for k in table_keys {
            match k.kind.as_str() {
                "unique_key" if names(k, "columns").len() > 1 => constraints.push(json!({
                    "constraintType": "UNIQUE",
                    "columns": encoded(names(k, "columns")),
                })),
                "foreign_key" => {
                    let a = &k.attributes;
                    let (Some(ref_schema), Some(ref_table)) = (
                        a.get("referenced_schema").and_then(Value::as_str),
                        a.get("referenced_table").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    let (ref_db, ref_schema) = if two_tier {
                        ("default".to_string(), ref_schema.to_string())
                    } else {
                        (db.clone(), ref_schema.to_string())
                    };
                    let referred: Vec<String> = names(k, "referenced_columns")
                        .iter()
                        .map(|c| fqn(&[service, &ref_db, &ref_schema, ref_table, c]))
                        .collect();
                    constraints.push(json!({
                        "constraintType": "FOREIGN_KEY",
                        "columns": encoded(names(k, "columns")),
                        "referredColumns": referred,
                    }));
                }
                _ => {}
            }
        }
        let table_type = match (
            t.kind.as_str(),
            attrs.get("table_type").and_then(Value::as_str),
        ) {
            ("view", _) => "View",
            ("materialized_view", _) => "MaterializedView",
            (_, Some("partitioned")) => "Partitioned",
            (_, Some("foreign")) => "Foreign",
            (_, Some("EXTERNAL_TABLE")) => "External",
            _ => "Regular",
        };
        let mut r = json!({
            "name": encode_name(&t.path[2]),
            "databaseSchema": fqn(&[service, &db, &schema]),
            "tableType": table_type,
            "columns": column_requests,
        });
        if !constraints.is_empty() {
            r["tableConstraints"] = json!(constraints);
        }
        if let Some(c) = comment(t) {
            r["description"] = json!(c);
        }
        if let Some(d) = attrs.get("view_definition").and_then(Value::as_str) {
            r["schemaDefinition"] = json!(d);
        }
        out.tables.push(r);
    }
    out
}

/// A native type in OpenMetadata's terms.
#[derive(Debug, PartialEq)]
struct OmType {
    name: &'static str,
    /// `dataLength` (required by the server for CHAR, VARCHAR, BINARY and VARBINARY).
    length: Option<u64>,
    /// The element type of an ARRAY.
    array_of: Option<&'static str>,
    /// Precision and scale of a decimal type.
    precision: Option<(u64, Option<u64>)>,
}

/// OpenMetadata's `ColumnTypeParser` lookup: the base name (before `(` or `<`, upper case,
/// without MySQL's `UNSIGNED`/`ZEROFILL`), else `UNKNOWN`.
fn data_type(native: &str) -> OmType {
    let t = native.trim();
    if let Some(elem) = t.strip_suffix("[]") {
        return OmType {
            name: "ARRAY",
            length: None,
            array_of: Some(data_type(elem).name),
            precision: None,
        };
    }
    let base = t
        .split(['(', '<'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    let base = base
        .trim_end_matches(" ZEROFILL")
        .trim_end_matches(" UNSIGNED")
        .trim();
    let name = match base {
        "INT" | "INTEGER" | "INT4" | "MEDIUMINT" => "INT",
        "INT2" | "SMALLINT" | "SMALLSERIAL" => "SMALLINT",
        "INT8" | "BIGINT" | "BIGSERIAL" => "BIGINT",
        "TINYINT" => "TINYINT",
        "NUMERIC" => "NUMERIC",
        "DECIMAL" | "DEC" => "DECIMAL",
        "NUMBER" => "NUMBER",
        "REAL" | "FLOAT" | "FLOAT4" => "FLOAT",
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" => "DOUBLE",
        "MONEY" => "MONEY",
        "BOOL" | "BOOLEAN" => "BOOLEAN",
        "BIT" => "BIT",
        "CHAR" | "CHARACTER" | "NCHAR" | "BPCHAR" => "CHAR",
        "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" | "LONG VARCHAR" => "VARCHAR",
        "TEXT" | "TINYTEXT" | "LONGTEXT" => "TEXT",
        "MEDIUMTEXT" => "MEDIUMTEXT",
        "STRING" => "STRING",
        "CLOB" | "NCLOB" => "CLOB",
        "BINARY" => "BINARY",
        "VARBINARY" | "BINARY VARYING" => "VARBINARY",
        "BLOB" | "TINYBLOB" => "BLOB",
        "MEDIUMBLOB" => "MEDIUMBLOB",
        "LONGBLOB" => "LONGBLOB",
        "BYTEA" => "BYTEA",
        "DATE" => "DATE",
        "TIME" | "TIME WITHOUT TIME ZONE" | "TIME WITH TIME ZONE" => "TIME",
        "TIMETZ"
        | "TIMESTAMP"
        | "TIMESTAMP WITHOUT TIME ZONE"
        | "TIMESTAMP WITH TIME ZONE"
        | "TIMESTAMPTZ" => "TIMESTAMP",
        "DATETIME" => "DATETIME",
        "YEAR" => "YEAR",
        "INTERVAL" => "INTERVAL",
        "JSON" | "JSONB" => "JSON",
        "UUID" => "UUID",
        "XML" => "XML",
        "INET" => "INET",
        "CIDR" => "CIDR",
        "MACADDR" | "MACADDR8" => "MACADDR",
        "TSVECTOR" => "TSVECTOR",
        "TSQUERY" => "TSQUERY",
        "GEOMETRY" | "POINT" | "POLYGON" | "BOX" | "CIRCLE" | "LINE" | "LSEG" | "PATH" => {
            "GEOMETRY"
        }
        "GEOGRAPHY" => "GEOGRAPHY",
        "ENUM" => "ENUM",
        "SET" => "SET",
        "ARRAY" => "ARRAY",
        _ => "UNKNOWN",
    };
    let args: Vec<u64> = t
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| {
            inner
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let length = match name {
        // The server requires a length for these; OpenMetadata's ingestion says 1 when the
        // source gives none.
        "CHAR" | "VARCHAR" | "BINARY" | "VARBINARY" => Some(args.first().copied().unwrap_or(1)),
        _ => None,
    };
    let precision = match (name, args.as_slice()) {
        ("DECIMAL" | "NUMERIC" | "NUMBER" | "DOUBLE" | "FLOAT", [p, s]) => Some((*p, Some(*s))),
        ("DECIMAL" | "NUMERIC" | "NUMBER", [p]) => Some((*p, None)),
        _ => None,
    };
    OmType {
        name,
        length,
        array_of: (name == "ARRAY").then_some("UNKNOWN"),
        precision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fqns_follow_openmetadatas_rules() {
        assert_eq!(
            encode_name("we\"ird::x>y"),
            "we__reserved__quote__ird__reserved__colon__x__reserved__arrow__y"
        );
        assert_eq!(
            fqn(&["my.svc", "café_é", "a.b", "sales"]),
            "\"my.svc\".café_é.\"a.b\".sales"
        );
        assert_eq!(
            fqn(&["pg", "shop", "public", "we\"ird"]),
            "pg.shop.public.we__reserved__quote__ird"
        );
    }

    #[test]
    fn native_types_map_as_openmetadata_maps_them() {
        let t = |n: &str| data_type(n);
        assert_eq!(t("integer").name, "INT");
        assert_eq!(t("int(10) unsigned").name, "INT");
        assert_eq!(t("bigint unsigned").name, "BIGINT");
        assert_eq!(t("character varying(200)").length, Some(200));
        assert_eq!(t("character varying").length, Some(1));
        assert_eq!(t("varchar(32)").name, "VARCHAR");
        assert_eq!(t("timestamp(3) with time zone").name, "TIMESTAMP");
        assert_eq!(t("numeric(12,2)").precision, Some((12, Some(2))));
        assert_eq!(t("jsonb").name, "JSON");
        assert_eq!(t("text[]").array_of, Some("TEXT"));
        assert_eq!(t("enum('a','b')").name, "ENUM");
        assert_eq!(t("geo.meters").name, "UNKNOWN");
        assert_eq!(t("INTEGER").name, "INT");
    }
}
