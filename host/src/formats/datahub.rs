//! DataHub's file format: what DataHub's `file` source reads — one JSON array of metadata change
//! proposals (`entityType`, `entityUrn`, `changeType`, `aspectName`, `aspect.json`).
//!
//! The URNs are the ones DataHub's own `postgres`, `mysql` and `sqlalchemy` (SQLite) sources
//! produce for the same database, so that a catalog fed by either sees one entity:
//! - datasets `urn:li:dataset:(urn:li:dataPlatform:<platform>,[<instance>.]<name>,<ENV>)`, the
//!   name `<db>.<schema>.<table>` (PostgreSQL), `<db>.<table>` (MySQL, two tiers) or
//!   `main.<table>` (SQLite), with `,`, `(`, `)` and `␟` percent-encoded;
//! - containers `urn:li:container:<guid>`, the GUID the MD5 of the key
//!   `{"database", "instance", "platform"[, "schema"]}` serialised as Python's
//!   `json.dumps(key, separators=(",", ":"), sort_keys=True)` does (ASCII only, `\uXXXX` in
//!   lower case, UTF-16 surrogate pairs), `instance` being the environment when no platform
//!   instance is set. A SQLite database's key is the database file's path as DataHub's recipe
//!   writes it in its connection URI ([`DatahubOptions::sqlite_database`]).
//!
//! Every aspect is written as a change proposal with `aspect.json`, whose unions use the
//! `com.linkedin.schema.*` names (DataHub reads `com.linkedin.pegasus2avro.*` names there as a
//! different union member, silently).

use std::collections::BTreeMap;
use std::io::Write;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::Line;

/// Options of the DataHub output (from [`super::CatalogOptions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DatahubOptions {
    /// DataHub's environment (fabric type), upper case: `PROD`, `DEV`, `QA`, ...
    pub env: String,
    /// DataHub's `platform_instance`, when the recipes of the same sources set one.
    pub platform_instance: Option<String>,
    /// The `database` of SQLite containers: DataHub keys them by the path in its connection
    /// URI, which only the operator knows; by default the database asset's name.
    pub sqlite_database: Option<String>,
}

impl Default for DatahubOptions {
    fn default() -> Self {
        DatahubOptions {
            env: "PROD".into(),
            platform_instance: None,
            sqlite_database: None,
        }
    }
}

/// The DataHub platform and layout of a connector's output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// `<db>.<schema>.<table>`, database and schema containers.
    ThreeTier,
    /// `<db>.<table>`, database containers only (MySQL's database is its schema).
    TwoTier,
    /// `<schema>.<table>` under one database container keyed by the file path (SQLite).
    SqliteFile,
}

fn platform_of(plugin: &str) -> Result<(&'static str, Layout), String> {
    Ok(match plugin {
        "postgres" => ("postgres", Layout::ThreeTier),
        "mysql" => ("mysql", Layout::TwoTier),
        "sqlite" => ("sqlite", Layout::SqliteFile),
        other => {
            return Err(format!(
                "the DataHub format supports the postgres, mysql and sqlite connectors' output, \
                 not {other}'s"
            ))
        }
    })
}

/// Builds DataHub records from a run's assets.
pub struct Writer {
    platform: &'static str,
    layout: Layout,
    options: DatahubOptions,
    last_observed: i64,
    run_id: String,
}

impl Writer {
    /// A writer for the output of `plugin` (the manifest's plugin name).
    pub fn new(
        plugin: &str,
        options: DatahubOptions,
        run_id: &str,
        last_observed_ms: i64,
    ) -> Result<Writer, String> {
        let (platform, layout) = platform_of(plugin)?;
        let env = options.env.to_ascii_uppercase();
        if env.is_empty() || !env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "DataHub env `{}` is not a fabric type",
                options.env
            ));
        }
        Ok(Writer {
            platform,
            layout,
            options: DatahubOptions { env, ..options },
            last_observed: last_observed_ms,
            run_id: format!("airlock-{run_id}"),
        })
    }

    fn instance(&self) -> &str {
        self.options
            .platform_instance
            .as_deref()
            .unwrap_or(&self.options.env)
    }

    /// The dataset name of a table-like path `[db, schema, name]`.
    fn dataset_name(&self, path: &[String]) -> String {
        let base = match self.layout {
            Layout::ThreeTier => format!("{}.{}.{}", path[0], path[1], path[2]),
            Layout::TwoTier | Layout::SqliteFile => format!("{}.{}", path[1], path[2]),
        };
        match &self.options.platform_instance {
            Some(pi) => format!("{pi}.{base}"),
            None => base,
        }
    }

    /// The dataset URN of a table-like path.
    pub fn dataset_urn(&self, path: &[String]) -> String {
        format!(
            "urn:li:dataset:(urn:li:dataPlatform:{},{},{})",
            self.platform,
            urn_encode(&self.dataset_name(path)),
            self.options.env
        )
    }

    fn field_urn(&self, dataset: &str, field: &str) -> String {
        format!("urn:li:schemaField:({dataset},{})", urn_encode(field))
    }

    /// The container key's `database` for a database asset.
    fn database_key(&self, db_asset: &Line) -> String {
        match self.layout {
            Layout::SqliteFile => self
                .options
                .sqlite_database
                .clone()
                .unwrap_or_else(|| db_asset.path[0].clone()),
            _ => db_asset.path[0].clone(),
        }
    }

    fn container_urn(&self, database: &str, schema: Option<&str>) -> String {
        let mut key = BTreeMap::new();
        key.insert("database", database);
        key.insert("instance", self.instance());
        key.insert("platform", self.platform);
        if let Some(s) = schema {
            key.insert("schema", s);
        }
        format!("urn:li:container:{}", container_guid(&key))
    }

    fn record(&self, entity_type: &str, urn: &str, aspect: &str, value: Value) -> Value {
        json!({
            "entityType": entity_type,
            "entityUrn": urn,
            "changeType": "UPSERT",
            "aspectName": aspect,
            "aspect": { "json": value },
            "systemMetadata": {
                "lastObserved": self.last_observed,
                "runId": self.run_id,
                "lastRunId": "no-run-id-provided",
            },
        })
    }

    fn platform_instance_aspect(&self) -> Value {
        let platform = format!("urn:li:dataPlatform:{}", self.platform);
        match &self.options.platform_instance {
            Some(pi) => json!({
                "platform": platform,
                "instance": format!("urn:li:dataPlatformInstance:({platform},{pi})"),
            }),
            None => json!({ "platform": platform }),
        }
    }

    fn container_records(
        &self,
        urn: &str,
        name: &str,
        database: &str,
        schema: Option<&str>,
        parent: Option<&str>,
        comment: Option<&str>,
    ) -> Vec<Value> {
        let mut props = serde_json::Map::new();
        props.insert("platform".into(), json!(self.platform));
        if let Some(pi) = &self.options.platform_instance {
            props.insert("instance".into(), json!(pi));
        }
        props.insert("env".into(), json!(self.options.env));
        props.insert("database".into(), json!(database));
        if let Some(s) = schema {
            props.insert("schema".into(), json!(s));
        }
        let mut properties =
            json!({ "customProperties": props, "name": name, "env": self.options.env });
        if let Some(c) = comment {
            properties["description"] = json!(c);
        }
        let mut out = Vec::new();
        if let Some(p) = parent {
            out.push(self.record("container", urn, "container", json!({ "container": p })));
        }
        out.push(self.record("container", urn, "containerProperties", properties));
        out.push(self.record("container", urn, "status", json!({ "removed": false })));
        out.push(self.record(
            "container",
            urn,
            "dataPlatformInstance",
            self.platform_instance_aspect(),
        ));
        out.push(self.record(
            "container",
            urn,
            "subTypes",
            json!({ "typeNames": [if schema.is_some() { "Schema" } else { "Database" }] }),
        ));
        let path: Vec<Value> = parent
            .iter()
            .map(|p| json!({ "id": p, "urn": p }))
            .collect();
        out.push(self.record("container", urn, "browsePathsV2", json!({ "path": path })));
        out
    }

    /// Writes every record for `lines` (a run's assets, any order) to `out` as one JSON
    /// array; `removed` are table-like paths to mark `status.removed`. Returns the number of
    /// records.
    pub fn write(
        &self,
        lines: &[Line],
        removed: &[Vec<String>],
        mut out: impl Write,
    ) -> std::io::Result<u64> {
        let mut n = 0u64;
        let mut first = true;
        let mut put = |out: &mut dyn Write, record: Value| -> std::io::Result<()> {
            out.write_all(if first { b"[\n" } else { b",\n" })?;
            first = false;
            serde_json::to_writer(&mut *out, &record)?;
            n += 1;
            Ok(())
        };
        fn by_kind<'a>(lines: &'a [Line], kind: &'a str) -> impl Iterator<Item = &'a Line> {
            lines.iter().filter(move |l| l.kind == kind)
        }
        // Containers: databases, and schemas where the platform has them.
        let mut db_urns: BTreeMap<String, (String, String)> = BTreeMap::new();
        for db in by_kind(lines, "database") {
            let key = self.database_key(db);
            let urn = self.container_urn(&key, None);
            let comment = db.attributes.get("comment").and_then(Value::as_str);
            let name = match self.layout {
                Layout::SqliteFile => key.clone(),
                _ => db.path[0].clone(),
            };
            for r in self.container_records(&urn, &name, &key, None, None, comment) {
                put(&mut out, r)?;
            }
            db_urns.insert(db.path[0].clone(), (urn, key));
        }
        let mut schema_urns: BTreeMap<(String, String), String> = BTreeMap::new();
        for schema in by_kind(lines, "schema") {
            let Some((db_urn, key)) = db_urns.get(&schema.path[0]).cloned() else {
                continue;
            };
            if self.layout == Layout::TwoTier {
                schema_urns.insert((schema.path[0].clone(), schema.path[1].clone()), db_urn);
                continue;
            }
            let urn = self.container_urn(&key, Some(&schema.path[1]));
            let comment = schema.attributes.get("comment").and_then(Value::as_str);
            for r in self.container_records(
                &urn,
                &schema.path[1],
                &key,
                Some(&schema.path[1]),
                Some(&db_urn),
                comment,
            ) {
                put(&mut out, r)?;
            }
            schema_urns.insert((schema.path[0].clone(), schema.path[1].clone()), urn);
        }
        // Columns, keys and foreign keys per table.
        let mut columns: BTreeMap<&[String], Vec<&Line>> = BTreeMap::new();
        for c in by_kind(lines, "column") {
            columns.entry(&c.path[..3]).or_default().push(c);
        }
        let mut foreign_keys: BTreeMap<&[String], Vec<&Line>> = BTreeMap::new();
        for f in by_kind(lines, "foreign_key") {
            foreign_keys.entry(&f.path[..3]).or_default().push(f);
        }
        for line in lines.iter().filter(|l| {
            matches!(l.kind.as_str(), "table" | "view" | "materialized_view")
                && l.attributes.get("table_type").and_then(Value::as_str) != Some("sequence")
        }) {
            let urn = self.dataset_urn(&line.path);
            let attrs = &line.attributes;
            let is_view = line.kind != "table";
            let parent = schema_urns
                .get(&(line.path[0].clone(), line.path[1].clone()))
                .or_else(|| db_urns.get(&line.path[0]).map(|(u, _)| u));
            if let Some(p) = parent {
                put(
                    &mut out,
                    self.record("dataset", &urn, "container", json!({ "container": p })),
                )?;
            }
            put(
                &mut out,
                self.record("dataset", &urn, "status", json!({ "removed": false })),
            )?;
            let definition = attrs.get("view_definition").and_then(Value::as_str);
            let mut custom = serde_json::Map::new();
            if is_view {
                custom.insert("is_view".into(), json!("True"));
                if let Some(d) = definition {
                    custom.insert("view_definition".into(), json!(d));
                }
            }
            for key in ["table_type", "owner", "engine", "extension"] {
                if let Some(v) = attrs.get(key).and_then(Value::as_str) {
                    custom.insert(key.into(), json!(v));
                }
            }
            let mut properties =
                json!({ "customProperties": custom, "name": line.path[2], "tags": [] });
            if let Some(c) = attrs.get("comment").and_then(Value::as_str) {
                properties["description"] = json!(c);
            }
            put(
                &mut out,
                self.record("dataset", &urn, "datasetProperties", properties),
            )?;
            let key = &line.path[..3];
            put(
                &mut out,
                self.record(
                    "dataset",
                    &urn,
                    "schemaMetadata",
                    self.schema_metadata(
                        &urn,
                        key,
                        columns.get(key).map(Vec::as_slice).unwrap_or(&[]),
                        foreign_keys.get(key).map(Vec::as_slice).unwrap_or(&[]),
                    ),
                ),
            )?;
            put(
                &mut out,
                self.record(
                    "dataset",
                    &urn,
                    "subTypes",
                    json!({ "typeNames": [if is_view { "View" } else { "Table" }] }),
                ),
            )?;
            if is_view {
                put(
                    &mut out,
                    self.record(
                        "dataset",
                        &urn,
                        "viewProperties",
                        json!({
                            "materialized": line.kind == "materialized_view",
                            "viewLogic": definition.unwrap_or(""),
                            "viewLanguage": "SQL",
                        }),
                    ),
                )?;
            }
            let mut path = Vec::new();
            if let Some((db_urn, _)) = db_urns.get(&line.path[0]) {
                path.push(json!({ "id": db_urn, "urn": db_urn }));
                if let Some(p) = parent.filter(|p| *p != db_urn) {
                    path.push(json!({ "id": p, "urn": p }));
                }
            }
            put(
                &mut out,
                self.record("dataset", &urn, "browsePathsV2", json!({ "path": path })),
            )?;
        }
        for path in removed {
            let urn = self.dataset_urn(path);
            put(
                &mut out,
                self.record("dataset", &urn, "status", json!({ "removed": true })),
            )?;
        }
        if first {
            out.write_all(b"[")?;
        }
        out.write_all(b"\n]\n")?;
        Ok(n)
    }

    fn schema_metadata(
        &self,
        urn: &str,
        table: &[String],
        columns: &[&Line],
        foreign_keys: &[&Line],
    ) -> Value {
        let mut cols: Vec<&&Line> = columns.iter().collect();
        cols.sort_by_key(|c| c.attributes.get("ordinal").and_then(Value::as_i64));
        let fields: Vec<Value> = cols
            .iter()
            .map(|c| {
                let a = &c.attributes;
                let native = a.get("data_type").and_then(Value::as_str).unwrap_or("");
                let mut f = json!({
                    "fieldPath": c.path[3],
                    "nullable": a.get("nullable").and_then(Value::as_bool).unwrap_or(true),
                    "type": { "type": { type_class(native): {} } },
                    "nativeDataType": native,
                    "recursive": false,
                    "isPartOfKey": a.get("primary_key_position").is_some_and(|p| !p.is_null()),
                });
                if let Some(comment) = a.get("comment").and_then(Value::as_str) {
                    f["description"] = json!(comment);
                }
                f
            })
            .collect();
        let mut fks = Vec::new();
        for fk in foreign_keys {
            let a = &fk.attributes;
            let names = |key: &str| -> Vec<String> {
                a.get(key)
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (Some(ref_schema), Some(ref_table)) = (
                a.get("referenced_schema").and_then(Value::as_str),
                a.get("referenced_table").and_then(Value::as_str),
            ) else {
                continue;
            };
            let foreign = self.dataset_urn(&[
                table[0].clone(),
                ref_schema.to_string(),
                ref_table.to_string(),
            ]);
            fks.push(json!({
                "name": fk.path[3],
                "foreignFields": names("referenced_columns").iter().map(|c| self.field_urn(&foreign, c)).collect::<Vec<_>>(),
                "sourceFields": names("columns").iter().map(|c| self.field_urn(urn, c)).collect::<Vec<_>>(),
                "foreignDataset": foreign,
            }));
        }
        let mut meta = json!({
            "schemaName": self.dataset_name(table),
            "platform": format!("urn:li:dataPlatform:{}", self.platform),
            "version": 0,
            "created": { "time": 0, "actor": "urn:li:corpuser:unknown" },
            "lastModified": { "time": 0, "actor": "urn:li:corpuser:unknown" },
            "hash": "",
            "platformSchema": { "com.linkedin.schema.MySqlDDL": { "tableSchema": "" } },
            "fields": fields,
        });
        if !fks.is_empty() {
            meta["foreignKeys"] = json!(fks);
        }
        meta
    }
}

/// DataHub's type class for a native type name (as its SQL sources map them).
fn type_class(native: &str) -> &'static str {
    let t = native.trim().to_ascii_lowercase();
    if t.ends_with("[]") || t.starts_with("array") {
        return "com.linkedin.schema.ArrayType";
    }
    if t.starts_with("map<") {
        return "com.linkedin.schema.MapType";
    }
    if t.starts_with("struct<") || t == "json" || t == "jsonb" {
        return "com.linkedin.schema.RecordType";
    }
    if t.starts_with("enum(") {
        return "com.linkedin.schema.EnumType";
    }
    // The first word before any parenthesis: `int(10) unsigned` -> `int`, `timestamp(3)
    // with time zone` -> `timestamp`, `character varying(20)` -> `character`.
    let word = t.split(['(', ' ']).next().unwrap_or("");
    match word {
        "bool" | "boolean" => "com.linkedin.schema.BooleanType",
        "int" | "integer" | "int2" | "int4" | "int8" | "bigint" | "smallint" | "tinyint"
        | "mediumint" | "serial" | "bigserial" | "smallserial" | "numeric" | "decimal" | "dec"
        | "real" | "double" | "float" | "float4" | "float8" | "money" | "number" | "bit" => {
            "com.linkedin.schema.NumberType"
        }
        "date" => "com.linkedin.schema.DateType",
        "timestamp" | "timestamptz" | "datetime" | "time" | "timetz" | "interval" | "year" => {
            "com.linkedin.schema.TimeType"
        }
        "bytea" | "blob" | "tinyblob" | "mediumblob" | "longblob" | "binary" | "varbinary" => {
            "com.linkedin.schema.BytesType"
        }
        "char" | "character" | "varchar" | "nchar" | "nvarchar" | "text" | "tinytext"
        | "mediumtext" | "longtext" | "string" | "uuid" | "citext" | "name" | "clob" | "xml"
        | "inet" | "cidr" | "macaddr" | "set" => "com.linkedin.schema.StringType",
        _ => "com.linkedin.schema.NullType",
    }
}

/// Percent-encodes what a URN's tuple syntax reserves: `,`, `(`, `)` and `␟`, as DataHub does.
fn urn_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ',' => out.push_str("%2C"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '\u{241F}' => out.push_str("%E2%90%9F"),
            c => out.push(c),
        }
    }
    out
}

/// DataHub's `datahub_guid`: the MD5 of the key as Python's `json.dumps(key,
/// separators=(",", ":"), sort_keys=True)` writes it (ASCII only).
fn container_guid(key: &BTreeMap<&str, &str>) -> String {
    let mut text = String::from("{");
    for (i, (k, v)) in key.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        python_json_string(&mut text, k);
        text.push(':');
        python_json_string(&mut text, v);
    }
    text.push('}');
    hex::encode(Md5::digest(text.as_bytes()))
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`.
fn python_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(pairs: &[(&'static str, &'static str)]) -> String {
        container_guid(&pairs.iter().cloned().collect())
    }

    /// GUIDs DataHub's own `datahub_guid` computed for these keys (acryl-datahub 1.7.0.17).
    #[test]
    fn container_guids_are_datahubs() {
        for (key, want) in [
            (
                vec![
                    ("database", "shop"),
                    ("instance", "PROD"),
                    ("platform", "postgres"),
                ],
                "ea3682d9b15a15aab92e076074c2394c",
            ),
            (
                vec![
                    ("database", "shop"),
                    ("instance", "PROD"),
                    ("platform", "postgres"),
                    ("schema", "Inventar_ü"),
                ],
                "4cad086ce122b6976a2baea870447677",
            ),
            (
                vec![
                    ("database", "Lager_ü"),
                    ("instance", "PROD"),
                    ("platform", "mysql"),
                ],
                "b4b4cfc5c1e9bdc60b5247da97fdb208",
            ),
            (
                vec![
                    ("database", "shop"),
                    ("instance", "PROD"),
                    ("platform", "postgres"),
                    ("schema", "Emoji😀"),
                ],
                "742134f39a12d9dbca9857be866e99f6",
            ),
            (
                vec![
                    ("database", "we\"ird\\db/x"),
                    ("instance", "PROD"),
                    ("platform", "postgres"),
                    ("schema", "tab\there\u{7f}"),
                ],
                "18a43346a2002baec4068612ce9e9ef6",
            ),
            (
                vec![
                    ("database", "/tmp/datahub/shop.db"),
                    ("instance", "PROD"),
                    ("platform", "sqlite"),
                ],
                "ea01cbc68c9d98c4e0151812aaa3d4c6",
            ),
        ] {
            assert_eq!(guid(&key), want, "{key:?}");
        }
    }

    #[test]
    fn dataset_urns_follow_each_platforms_layout() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let w = Writer::new("postgres", DatahubOptions::default(), "r", 0).unwrap();
        assert_eq!(
            w.dataset_urn(&p(&["shop", "Inventar_ü", "café_é"])),
            "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.Inventar_ü.café_é,PROD)"
        );
        assert_eq!(
            w.dataset_urn(&p(&["db", "s", "a,b(c)"])),
            "urn:li:dataset:(urn:li:dataPlatform:postgres,db.s.a%2Cb%28c%29,PROD)"
        );
        let w = Writer::new("mysql", DatahubOptions::default(), "r", 0).unwrap();
        assert_eq!(
            w.dataset_urn(&p(&["Lager_ü", "Lager_ü", "café_é"])),
            "urn:li:dataset:(urn:li:dataPlatform:mysql,Lager_ü.café_é,PROD)"
        );
        let options = DatahubOptions {
            env: "dev".into(),
            platform_instance: Some("pi1".into()),
            sqlite_database: None,
        };
        let w = Writer::new("sqlite", options, "r", 0).unwrap();
        assert_eq!(
            w.dataset_urn(&p(&["shop", "main", "t"])),
            "urn:li:dataset:(urn:li:dataPlatform:sqlite,pi1.main.t,DEV)"
        );
        assert!(Writer::new("glue", DatahubOptions::default(), "r", 0).is_err());
    }

    #[test]
    fn native_types_map_to_datahub_type_classes() {
        for (native, class) in [
            ("integer", "NumberType"),
            ("INTEGER", "NumberType"),
            ("int(10) unsigned", "NumberType"),
            ("numeric(12,2)", "NumberType"),
            ("double precision", "NumberType"),
            ("character varying(200)", "StringType"),
            ("varchar(32)", "StringType"),
            ("TEXT", "StringType"),
            ("uuid", "StringType"),
            ("boolean", "BooleanType"),
            ("tinyint(1)", "NumberType"),
            ("timestamp with time zone", "TimeType"),
            ("timestamp(3) without time zone", "TimeType"),
            ("datetime", "TimeType"),
            ("date", "DateType"),
            ("jsonb", "RecordType"),
            ("bytea", "BytesType"),
            ("text[]", "ArrayType"),
            ("enum('a','b''c')", "EnumType"),
            ("geo.meters", "NullType"),
        ] {
            assert_eq!(
                type_class(native),
                format!("com.linkedin.schema.{class}"),
                "{native}"
            );
        }
    }
}
