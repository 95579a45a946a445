//! The AWS Glue Data Catalog connector. It speaks the Glue JSON API (`GetDatabases`,
//! `GetTables`, paginated) through the host's HTTP capability; the host signs every request
//! with AWS Signature V4, so the secret key never enters the plugin.
//!
//! Asset paths: the catalog is the database asset (`options.catalog`, default `glue`), each
//! Glue database a schema, each Glue table a table (a view when its type is `VIRTUAL_VIEW`),
//! each column and partition key a column (`partition_key: true` on the latter).
//!
//! Pushdown: `GetTables` is not called for a database the scope excludes or can never include
//! (`Scope::skips`); the Glue API has no name filter for databases, and its `Expression`
//! parameter's matching differs from the host's patterns, so nothing else is pushed down.

use airlock_sdk::credentials;
use airlock_sdk::http::{pages, Client};
use airlock_sdk::{AssetKind, Capability, Connector, Emitter, Error, PluginInfo, Scope};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Items per page asked of the API.
const PAGE_SIZE: u32 = 100;

#[derive(Debug, Deserialize)]
struct Config {
    #[serde(default)]
    options: Options,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// AWS region, e.g. `us-east-1`; chooses the default endpoint.
    #[serde(default)]
    region: Option<String>,
    /// Base URL of the Glue API (default `https://glue.<region>.amazonaws.com`).
    #[serde(default)]
    endpoint: Option<String>,
    /// The database asset's name (default `glue`).
    #[serde(default)]
    catalog: Option<String>,
    /// The Glue catalog id (an AWS account id); default the caller's.
    #[serde(default)]
    catalog_id: Option<String>,
}

struct Glue;

impl Connector for Glue {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new(
            "glue",
            env!("CARGO_PKG_VERSION"),
            "AWS Glue Data Catalog: databases, tables, views, columns and partition keys",
        )
        .capabilities(&[Capability::Http])
        .kinds(&[
            AssetKind::Database,
            AssetKind::Schema,
            AssetKind::Table,
            AssetKind::View,
            AssetKind::Column,
        ])
        .config_schema(json!({
            "type": "object",
            "properties": {
                "region": {"type": "string"},
                "endpoint": {"type": "string"},
                "catalog": {"type": "string"},
                "catalog_id": {"type": "string"}
            },
            "additionalProperties": false
        }))
    }

    fn extract(config: Config, scope: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let o = config.options;
        let endpoint = match (&o.endpoint, &o.region) {
            (Some(e), _) => e.clone(),
            (None, Some(r)) => format!("https://glue.{r}.amazonaws.com"),
            (None, None) => {
                return Err(Error::InvalidConfig(
                    "options.region (or options.endpoint) is required".into(),
                ))
            }
        };
        let catalog = o.catalog.clone().unwrap_or_else(|| "glue".into());
        let cred = credentials::get("source")?;
        let client = Client::open(&endpoint, Some(&cred))?;
        let api = Api {
            client: &client,
            catalog_id: o.catalog_id.clone(),
        };

        out.emit(
            AssetKind::Database,
            [catalog.as_str()],
            json!({"engine": "glue"}),
        )?;
        let databases: Vec<Value> = api
            .list("GetDatabases", json!({}), "DatabaseList")
            .collect::<Result<_, _>>()?;
        let total = databases.len() as u64;
        let mut skipped = 0u64;
        for (i, db) in databases.iter().enumerate() {
            let Some(db_name) = db["Name"].as_str() else {
                continue;
            };
            out.emit(
                AssetKind::Schema,
                [catalog.as_str(), db_name],
                json!({
                    "comment": db.get("Description"),
                    "location": db.get("LocationUri"),
                    "extra": {
                        "parameters": db.get("Parameters").cloned().unwrap_or_else(|| json!({})),
                        "create_time": db.get("CreateTime"),
                    },
                }),
            )?;
            // Pushdown: the host drops everything under an excluded or never-included
            // database anyway, so its tables are not listed at all.
            if !(scope.wants(AssetKind::Table)
                || scope.wants(AssetKind::View)
                || scope.wants(AssetKind::Column))
            {
                continue;
            }
            if scope.skips(&[catalog.as_str(), db_name]) {
                skipped += 1;
                continue;
            }
            for table in api.list("GetTables", json!({"DatabaseName": db_name}), "TableList") {
                emit_table(out, &catalog, db_name, &table?)?;
            }
            airlock_sdk::log::progress(i as u64 + 1, Some(total));
        }
        if skipped > 0 {
            airlock_sdk::log::info(&format!(
                "tables of {skipped} of {total} databases not listed: outside the scope"
            ));
        }
        Ok(())
    }
}

/// The Glue JSON API over one client.
struct Api<'a> {
    client: &'a Client,
    catalog_id: Option<String>,
}

impl Api<'_> {
    /// Every item of `list_key` over all pages of `action`.
    fn list<'s>(
        &'s self,
        action: &'s str,
        params: Value,
        list_key: &'s str,
    ) -> impl Iterator<Item = Result<Value, Error>> + 's {
        let target = format!("AWSGlue.{action}");
        pages(move |token| {
            let mut body = params.clone();
            body["MaxResults"] = json!(PAGE_SIZE);
            if let Some(id) = &self.catalog_id {
                body["CatalogId"] = json!(id);
            }
            if let Some(t) = token {
                body["NextToken"] = json!(t);
            }
            // Streamed: a page of tables with many columns can exceed the per-call limit.
            let page: Value = self
                .client
                .post_json_streaming(
                    "/",
                    &[
                        ("content-type", "application/x-amz-json-1.1"),
                        ("x-amz-target", &target),
                    ],
                    &body,
                )?
                .json()
                .map_err(|e| Error::Source(format!("Glue {action}: {}", message(&e))))?;
            let items = page[list_key].as_array().cloned().unwrap_or_default();
            let next = page["NextToken"].as_str().map(str::to_string);
            Ok((items, next))
        })
    }
}

fn message(e: &Error) -> String {
    match e {
        Error::InvalidConfig(m)
        | Error::Denied(m)
        | Error::Unavailable(m)
        | Error::Source(m)
        | Error::Limit(m) => m.clone(),
    }
}

fn emit_table(out: &mut Emitter, catalog: &str, db: &str, t: &Value) -> Result<(), Error> {
    let Some(name) = t["Name"].as_str() else {
        return Ok(());
    };
    let sd = &t["StorageDescriptor"];
    let table_type = t["TableType"].as_str();
    let kind = if table_type == Some("VIRTUAL_VIEW") {
        AssetKind::View
    } else {
        AssetKind::Table
    };
    let partition_keys: Vec<Value> = t["PartitionKeys"].as_array().cloned().unwrap_or_default();
    let field = |v: Option<&Value>| v.cloned().unwrap_or(Value::Null);
    let mut attrs = Map::new();
    attrs.insert("table_type".into(), field(t.get("TableType")));
    attrs.insert("comment".into(), field(t.get("Description")));
    attrs.insert("owner".into(), field(t.get("Owner")));
    if kind == AssetKind::View {
        attrs.insert("view_definition".into(), field(t.get("ViewOriginalText")));
    } else {
        attrs.insert("location".into(), field(sd.get("Location")));
        attrs.insert("input_format".into(), field(sd.get("InputFormat")));
        attrs.insert("output_format".into(), field(sd.get("OutputFormat")));
        attrs.insert(
            "serde".into(),
            field(sd.pointer("/SerdeInfo/SerializationLibrary")),
        );
        attrs.insert(
            "partition_keys".into(),
            Value::Array(
                partition_keys
                    .iter()
                    .filter_map(|k| k["Name"].as_str().map(|n| json!(n)))
                    .collect(),
            ),
        );
    }
    attrs.insert(
        "extra".into(),
        json!({ "parameters": t.get("Parameters").cloned().unwrap_or_else(|| json!({})) }),
    );
    out.emit(kind, [catalog, db, name], Value::Object(attrs))?;

    let columns = sd["Columns"].as_array().cloned().unwrap_or_default();
    let mut ordinal = 0u64;
    for (col, is_partition) in columns
        .iter()
        .map(|c| (c, false))
        .chain(partition_keys.iter().map(|c| (c, true)))
    {
        let Some(col_name) = col["Name"].as_str() else {
            continue;
        };
        ordinal += 1;
        out.emit(
            AssetKind::Column,
            [catalog, db, name, col_name],
            json!({
                "ordinal": ordinal,
                "data_type": col.get("Type"),
                "comment": col.get("Comment"),
                "partition_key": is_partition,
                "extra": {
                    "parameters": col.get("Parameters").cloned().unwrap_or_else(|| json!({})),
                },
            }),
        )?;
    }
    Ok(())
}

airlock_sdk::export_connector!(Glue);
