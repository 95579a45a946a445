//! Hostile plugin: emits some valid assets, then panics. Nothing may be published.

use airlock_sdk::{AssetKind, Connector, Emitter, Error, PluginInfo, Scope};
use serde_json::json;

struct Panic;

impl Connector for Panic {
    type Config = serde_json::Value;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-panic", "0.0.0", "panics half-way")
    }

    fn extract(_: Self::Config, _: &Scope, out: &mut Emitter) -> Result<(), Error> {
        out.emit(AssetKind::Database, ["db"], json!({}))?;
        out.emit(AssetKind::Schema, ["db", "main"], json!({}))?;
        for i in 0..50 {
            out.emit(
                AssetKind::Table,
                ["db", "main", &format!("t{i}")],
                json!({}),
            )?;
        }
        out.flush()?;
        panic!("boom after 52 assets");
    }
}

airlock_sdk::export_connector!(Panic);
