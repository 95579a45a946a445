//! A connector built directly against the frozen `airlock:connector@0.1.0` WIT, with no SDK:
//! the host must keep running plugins published before 0.2.0. It emits a database, a schema
//! and as many tables as `options.tables` says (default 3).

// The generated bindings have functions with many parameters.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "connector",
    path: "../../../wit/v0.1.0",
});

use airlock::connector::emit::emit;
use airlock::connector::log::{log, Level};
use airlock::connector::types::{Asset, AssetKind, Capability};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "legacy-v010".into(),
            version: "0.1.0".into(),
            description: "built against airlock:connector@0.1.0 without the SDK".into(),
            capabilities: vec![Capability::Sql],
            kinds: vec![AssetKind::Database, AssetKind::Schema, AssetKind::Table],
            config_schema_json: None,
        }
    }

    fn extract(config_json: String, _scope: Scope) -> Result<Summary, Error> {
        // The config is the workflow's [source] table; read `"tables": N` without serde.
        let tables = config_json
            .split("\"tables\":")
            .nth(1)
            .and_then(|rest| {
                let digits: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                digits.parse::<u32>().ok()
            })
            .unwrap_or(3);
        let mut batch = vec![
            Asset {
                kind: AssetKind::Database,
                path: vec!["legacy".into()],
                attributes_json: "{}".into(),
            },
            Asset {
                kind: AssetKind::Schema,
                path: vec!["legacy".into(), "main".into()],
                attributes_json: "{}".into(),
            },
        ];
        for i in 0..tables {
            batch.push(Asset {
                kind: AssetKind::Table,
                path: vec!["legacy".into(), "main".into(), format!("t{i}")],
                attributes_json: format!("{{\"ordinal\":{i}}}"),
            });
        }
        let n = batch.len() as u64;
        emit(&batch)?;
        log(Level::Info, &format!("emitted {n} assets over WIT 0.1.0"));
        Ok(Summary {
            assets_emitted: n,
            warnings: Vec::new(),
        })
    }
}

export!(Legacy);
