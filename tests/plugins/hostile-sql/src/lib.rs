//! Hostile plugin: uses the sql capability to try to write, attach other files, escape the
//! allowed directories, and run away with a statement. Reports each outcome as an attribute.

use airlock_sdk::sql::{Connection, Driver, Endpoint};
use airlock_sdk::{AssetKind, Connector, Emitter, Error, PluginInfo, Scope};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Config {
    database: String,
    options: Options,
}

#[derive(Deserialize)]
struct Options {
    outside: String,
    scratch: String,
}

struct HostileSql;

fn outcome<T>(r: Result<T, Error>) -> serde_json::Value {
    match r {
        Ok(_) => json!("granted"),
        Err(e) => json!(format!("{e:?}")),
    }
}

fn endpoint(address: &str) -> Endpoint {
    Endpoint {
        driver: Driver::Sqlite,
        address: address.to_string(),
        database: None,
    }
}

impl Connector for HostileSql {
    type Config = Config;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-sql", "0.0.0", "abuses the sql capability")
    }

    fn extract(config: Config, _: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let conn = Connection::open(&endpoint(&config.database), None)?;
        let attach = format!("ATTACH DATABASE '{}' AS other", config.options.outside);
        let vacuum = format!("VACUUM INTO '{}'", config.options.scratch);
        let attrs = json!({
            "open_outside": outcome(Connection::open(&endpoint(&config.options.outside), None)),
            "open_traversal": outcome(Connection::open(&endpoint(&format!("{}/../../../../../../../../etc/passwd", config.database.rsplit_once('/').map(|(d, _)| d).unwrap_or("."))), None)),
            "open_uri": outcome(Connection::open(&endpoint("file:/etc/passwd?mode=ro"), None)),
            "open_network": outcome(Connection::open(&Endpoint { driver: Driver::Postgres, address: "127.0.0.1:5432".into(), database: None }, None)),
            "create_table": outcome(conn.query("CREATE TABLE pwned (x)", &[])),
            "insert": outcome(conn.query("INSERT INTO t VALUES (1)", &[])),
            "attach": outcome(conn.query(&attach, &[])),
            "vacuum_into": outcome(conn.query(&vacuum, &[])),
            "write_pragma": outcome(conn.query("PRAGMA journal_mode = DELETE", &[])),
            "load_extension": outcome(conn.query("SELECT load_extension('/tmp/x.so')", &[])),
            "huge_value": outcome(conn.query("SELECT zeroblob(1000000000)", &[])),
            "runaway": outcome(conn.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", &[])),
            "read_ok": outcome(conn.query_all("SELECT count(*) AS n FROM sqlite_schema", &[])),
        });
        out.emit(AssetKind::Database, ["hostile"], json!({ "extra": attrs }))
    }
}

airlock_sdk::export_connector!(HostileSql);
