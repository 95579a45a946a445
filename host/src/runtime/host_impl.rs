//! The host side of the interfaces every `airlock:connector` version shares (types,
//! credentials, sql, emit, log). The logic is one; only the generated WIT types differ per
//! version, so each version module imports its bindings (`credentials`, `emit`, `log`, `sql`,
//! `types`) and expands [`shared_host_impl!`] against them.

/// Implements the shared host traits for `RunState` against the WIT modules in scope at the
/// call site.
macro_rules! shared_host_impl {
    () => {
        use wasmtime::component::Resource;
        use crate::runtime::state::{HostFailure, RunState};
        use crate::capabilities::credentials::{CredentialHandle, CredentialKind};
        use crate::capabilities::log::LogLevel;
        use crate::capabilities::sql::login::{redact_error, NetworkDriver};
        use crate::capabilities::sql::{DbValue, SqlConnection, SqlError, SqlRows};
        use crate::pipeline::asset::AssetKind;
        use crate::pipeline::{EmittedAsset, PipelineError};

        type WitResult<T> = wasmtime::Result<Result<T, types::Error>>;

        impl types::Host for RunState {}

        impl credentials::Host for RunState {
            async fn get(&mut self, slot: String) -> WitResult<Resource<CredentialHandle>> {
                match self.credentials.handle(&slot) {
                    Ok(handle) => {
                        if let Err(message) = self.take_handle("a credential handle") {
                            return Ok(Err(types::Error::Limit(message)));
                        }
                        Ok(Ok(self.table.push(handle)?))
                    }
                    Err(message) => Ok(Err(types::Error::Denied(message))),
                }
            }
        }

        impl credentials::HostCredential for RunState {
            async fn kind(
                &mut self,
                this: Resource<CredentialHandle>,
            ) -> wasmtime::Result<credentials::CredentialKind> {
                Ok(match self.table.get(&this)?.kind {
                    CredentialKind::Password => credentials::CredentialKind::Password,
                    CredentialKind::Token => credentials::CredentialKind::Token,
                    CredentialKind::KeyPair => credentials::CredentialKind::KeyPair,
                    CredentialKind::AwsAccessKey => credentials::CredentialKind::AwsAccessKey,
                    CredentialKind::Oauth2Client => credentials::CredentialKind::Oauth2Client,
                })
            }

            async fn slot(&mut self, this: Resource<CredentialHandle>) -> wasmtime::Result<String> {
                Ok(self.table.get(&this)?.slot.clone())
            }

            async fn drop(&mut self, this: Resource<CredentialHandle>) -> wasmtime::Result<()> {
                self.table.delete(this)?;
                self.release_handle();
                Ok(())
            }
        }

        /// A SQL error as the plugin receives it: redacted, and through the inbound filter (a
        /// server's error message may quote what it was sent).
        fn wit_error(
            inbound: &crate::capabilities::inbound::InboundFilter,
            destination: &str,
            e: SqlError,
        ) -> types::Error {
            // Driver messages are sanitized already; redaction is the second line of defence.
            let f = |m: String| {
                inbound
                    .text(m, "sql errors", destination)
                    .unwrap_or_else(|reflected| reflected)
            };
            match redact_error(e) {
                SqlError::InvalidConfig(m) => types::Error::InvalidConfig(f(m)),
                SqlError::Denied(m) => types::Error::Denied(f(m)),
                SqlError::Unavailable(m) => types::Error::Unavailable(f(m)),
                SqlError::Source(m) => types::Error::Source(f(m)),
                SqlError::Limit(m) => types::Error::Limit(f(m)),
                SqlError::Refused(r) => types::Error::Denied(f(r.to_string())),
            }
        }

        /// A value as the plugin receives it: text and bytes through the inbound filter.
        fn inbound_value(
            inbound: &crate::capabilities::inbound::InboundFilter,
            destination: &str,
            v: DbValue,
        ) -> Result<sql::SqlValue, String> {
            Ok(match v {
                DbValue::Text(s) => sql::SqlValue::Text(inbound.text(s, "sql rows", destination)?),
                DbValue::Bytes(b) => {
                    sql::SqlValue::Bytes(inbound.bytes(b, "sql rows", destination)?)
                }
                other => to_wit_value(other),
            })
        }

        fn from_wit_value(v: sql::SqlValue) -> DbValue {
            match v {
                sql::SqlValue::Null => DbValue::Null,
                sql::SqlValue::Boolean(b) => DbValue::Bool(b),
                sql::SqlValue::Integer(i) => DbValue::Int(i),
                sql::SqlValue::Float(f) => DbValue::Float(f),
                sql::SqlValue::Text(s) => DbValue::Text(s),
                sql::SqlValue::Bytes(b) => DbValue::Bytes(b),
            }
        }

        fn to_wit_value(v: DbValue) -> sql::SqlValue {
            match v {
                DbValue::Null => sql::SqlValue::Null,
                DbValue::Bool(b) => sql::SqlValue::Boolean(b),
                DbValue::Int(i) => sql::SqlValue::Integer(i),
                DbValue::Float(f) => sql::SqlValue::Float(f),
                DbValue::Text(s) => sql::SqlValue::Text(s),
                DbValue::Bytes(b) => sql::SqlValue::Bytes(b),
            }
        }

        impl sql::Host for RunState {
            async fn open(
                &mut self,
                target: sql::Endpoint,
                cred: Option<Resource<CredentialHandle>>,
            ) -> WitResult<Resource<SqlConnection>> {
                if let Some(c) = &cred {
                    // A handle must be live; the sqlite driver needs none, network drivers will use it.
                    self.table.get(c)?;
                }
                let (engine, charge) = match target.driver {
                    sql::Driver::Sqlite => ("sqlite", crate::capabilities::sql::SQLITE_CONNECTION_BYTES),
                    sql::Driver::Postgres => ("postgres", crate::capabilities::sql::SESSION_BYTES),
                    sql::Driver::Mysql => ("mysql", crate::capabilities::sql::SESSION_BYTES),
                };
                // Caps first: a plugin over them costs no secret resolution and no login.
                if let Err(message) = self.admit_sql(engine) {
                    return Ok(Err(types::Error::Limit(message)));
                }
                let reservation = match self.sql.budget.try_reserve(charge, "an open SQL connection") {
                    Ok(r) => r,
                    Err(message) => return Ok(Err(types::Error::Limit(message))),
                };
                if let Err(message) = self.take_handle("a SQL connection") {
                    return Ok(Err(types::Error::Limit(message)));
                }
                let conn = match open_sql(self, target, cred).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(e)) => {
                        self.release_handle();
                        return Ok(Err(e));
                    }
                    Err(trap) => {
                        self.release_handle();
                        return Err(trap);
                    }
                };
                let resource = self.table.push(conn)?;
                *self.sql_open.entry(engine).or_insert(0) += 1;
                self.sql_charges.insert(resource.rep(), reservation);
                Ok(Ok(resource))
            }
        }

        /// Opens the connection `sql.open` asked for (the caller checked the caps).
        async fn open_sql(
            this: &mut RunState,
            target: sql::Endpoint,
            cred: Option<Resource<CredentialHandle>>,
        ) -> WitResult<SqlConnection> {
            {
                let conn = match target.driver {
                    sql::Driver::Sqlite => {
                        let (path, verified) = match this.sql.open_sqlite_file(&target.address) {
                            Ok(p) => p,
                            Err(e) => return Ok(Err(wit_error(&this.inbound, &target.address, e))),
                        };
                        match crate::capabilities::sql::sqlite::SqliteDb::open(&path, &verified, &this.sql.grants) {
                            Ok(db) => SqlConnection::Sqlite(db),
                            Err(e) => return Ok(Err(wit_error(&this.inbound, &target.address, e))),
                        }
                    }
                    sql::Driver::Postgres | sql::Driver::Mysql => {
                        let driver = if matches!(target.driver, sql::Driver::Postgres) {
                            NetworkDriver::Postgres
                        } else {
                            NetworkDriver::Mysql
                        };
                        let Some(c) = &cred else {
                            return Ok(Err(types::Error::Denied(
                                "a network source needs a credential handle (credentials.get(\"source\"))"
                                    .into(),
                            )));
                        };
                        let slot = this.table.get(c)?.slot.clone();
                        let (Some(binding), Some(login)) =
                            (this.credentials.binding(&slot).cloned(), this.login.clone())
                        else {
                            return Ok(Err(types::Error::Denied(format!(
                                "no credential is bound to slot `{slot}`"
                            ))));
                        };
                        match login
                            .open(
                                &binding,
                                driver,
                                &target.address,
                                target.database.as_deref(),
                            )
                            .await
                        {
                            Ok(conn) => conn,
                            Err(e) => return Ok(Err(wit_error(&this.inbound, &target.address, e))),
                        }
                    }
                };
                Ok(Ok(conn))
            }
        }

        impl sql::HostConnection for RunState {
            async fn query(
                &mut self,
                this: Resource<SqlConnection>,
                statement: String,
                params: Vec<sql::SqlValue>,
            ) -> WitResult<Resource<SqlRows>> {
                let params = params.into_iter().map(from_wit_value).collect();
                let policy = self.sql.clone();
                let conn = self.table.get(&this)?;
                let destination = conn.destination();
                match conn.query(&policy, statement, params).await {
                    Ok(rows) => {
                        let bytes = rows.buffered_bytes();
                        let held: usize = self.sql_held.values().sum();
                        if held.saturating_add(bytes) > policy.result_bytes {
                            return Ok(Err(types::Error::Limit(format!(
                                "the query results this plugin holds open would take {} MiB of host memory; the limit is {} MiB: read and drop rows before running another query",
                                held.saturating_add(bytes) >> 20,
                                policy.result_bytes >> 20
                            ))));
                        }
                        if let Err(message) = self.take_handle("a result set") {
                            return Ok(Err(types::Error::Limit(message)));
                        }
                        let rows = self.table.push(rows)?;
                        if bytes > 0 {
                            self.sql_held.insert(rows.rep(), bytes);
                        }
                        Ok(Ok(rows))
                    }
                    Err(e) => Ok(Err(wit_error(&self.inbound, &destination, e))),
                }
            }

            async fn drop(&mut self, this: Resource<SqlConnection>) -> wasmtime::Result<()> {
                let rep = this.rep();
                let conn = self.table.delete(this)?;
                if let Some(n) = self.sql_open.get_mut(conn.engine()) {
                    *n = n.saturating_sub(1);
                }
                self.sql_charges.remove(&rep);
                self.release_handle();
                Ok(())
            }
        }

        impl sql::HostRows for RunState {
            async fn columns(&mut self, this: Resource<SqlRows>) -> wasmtime::Result<Vec<sql::ColumnInfo>> {
                let rows = self.table.get(&this)?;
                // Column names are chosen by the statement (`AS ...`) and may quote what the
                // server holds: they pass the inbound filter like the values (this call has no
                // error channel; in `fail` mode the run fails at its end).
                let f = |t: &String| {
                    self.inbound
                        .text(t.clone(), "sql columns", &rows.destination)
                        .unwrap_or_else(|_| crate::pipeline::scan::WITHHELD.to_string())
                };
                Ok(rows
                    .columns
                    .iter()
                    .map(|(name, type_name)| sql::ColumnInfo {
                        name: f(name),
                        type_name: f(type_name),
                    })
                    .collect())
            }

            async fn next_batch(
                &mut self,
                this: Resource<SqlRows>,
                max: u32,
            ) -> WitResult<Option<Vec<Vec<sql::SqlValue>>>> {
                let call_bytes = self.call_bytes;
                let inbound = self.inbound.clone();
                let rows = self.table.get_mut(&this)?;
                let destination = rows.destination.clone();
                Ok(match rows.next_batch(max, call_bytes).await {
                    Ok(None) => Ok(None),
                    Ok(Some(batch)) => {
                        let converted: Result<Vec<Vec<sql::SqlValue>>, String> = batch
                            .into_iter()
                            .map(|row| {
                                row.into_iter()
                                    .map(|v| inbound_value(&inbound, &destination, v))
                                    .collect()
                            })
                            .collect();
                        converted.map(Some).map_err(types::Error::Denied)
                    }
                    Err(e) => Err(wit_error(&inbound, &destination, e)),
                })
            }

            async fn drop(&mut self, this: Resource<SqlRows>) -> wasmtime::Result<()> {
                self.sql_held.remove(&this.rep());
                self.table.delete(this)?;
                self.release_handle();
                Ok(())
            }
        }

        fn kind_from_wit(k: types::AssetKind) -> AssetKind {
            match k {
                types::AssetKind::Database => AssetKind::Database,
                types::AssetKind::Schema => AssetKind::Schema,
                types::AssetKind::Table => AssetKind::Table,
                types::AssetKind::View => AssetKind::View,
                types::AssetKind::MaterializedView => AssetKind::MaterializedView,
                types::AssetKind::Column => AssetKind::Column,
                types::AssetKind::PrimaryKey => AssetKind::PrimaryKey,
                types::AssetKind::UniqueKey => AssetKind::UniqueKey,
                types::AssetKind::ForeignKey => AssetKind::ForeignKey,
                types::AssetKind::CheckConstraint => AssetKind::CheckConstraint,
                types::AssetKind::Index => AssetKind::Index,
                types::AssetKind::Trigger => AssetKind::Trigger,
                types::AssetKind::Partition => AssetKind::Partition,
                types::AssetKind::Function => AssetKind::Function,
                types::AssetKind::Procedure => AssetKind::Procedure,
                types::AssetKind::Sequence => AssetKind::Sequence,
            }
        }

        /// Converts the WIT asset kind for code outside this module (plugin descriptions).
        pub(crate) fn asset_kind(k: types::AssetKind) -> AssetKind {
            kind_from_wit(k)
        }

        impl emit::Host for RunState {
            async fn emit(&mut self, batch: Vec<types::Asset>) -> WitResult<()> {
                let Some(pipeline) = self.pipeline.as_mut() else {
                    return Ok(Err(types::Error::Denied(
                        "emitting is not allowed while the plugin is only being described".into(),
                    )));
                };
                if let Some(a) = batch
                    .iter()
                    .find(|a| json_nesting_exceeds(&a.attributes_json, MAX_ATTRIBUTE_NESTING))
                {
                    let name = crate::pipeline::asset::qualified_name(&a.path);
                    let name: String = name.chars().take(256).collect();
                    let e = PipelineError::Invalid(format!(
                        "{} {name}: attributes are nested deeper than {MAX_ATTRIBUTE_NESTING} levels",
                        kind_from_wit(a.kind)
                    ));
                    return Err(self.fail(HostFailure::Pipeline(e)));
                }
                let batch = batch
                    .into_iter()
                    .map(|a| EmittedAsset {
                        kind: kind_from_wit(a.kind),
                        path: a.path,
                        attributes_json: a.attributes_json,
                    })
                    .collect();
                match pipeline.accept(batch) {
                    Ok(()) => Ok(Ok(())),
                    Err(PipelineError::Limit(l)) => Err(self.fail(HostFailure::Limit(l))),
                    Err(e) => Err(self.fail(HostFailure::Pipeline(e))),
                }
            }
        }

        impl log::Host for RunState {
            async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    log::Level::Trace => LogLevel::Trace,
                    log::Level::Debug => LogLevel::Debug,
                    log::Level::Info => LogLevel::Info,
                    log::Level::Warn => LogLevel::Warn,
                    log::Level::Error => LogLevel::Error,
                };
                self.log.line(level, &message);
                Ok(())
            }

            async fn progress(&mut self, done: u64, total: Option<u64>) -> wasmtime::Result<()> {
                self.log.progress(done, total);
                Ok(())
            }
        }

        /// Deepest nesting of arrays and objects accepted in attributes. Deeper lines would be
        /// published but refused by common JSON parsers (serde_json stops at 128 levels).
        const MAX_ATTRIBUTE_NESTING: usize = 64;

        /// Whether `json` nests arrays and objects deeper than `max` (strings are skipped).
        fn json_nesting_exceeds(json: &str, max: usize) -> bool {
            let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
            for b in json.bytes() {
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > max {
                            return true;
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            false
        }

        /// Maps a plugin's WIT error to the host's plugin error.
        pub(crate) fn plugin_error(e: types::Error) -> (&'static str, String) {
            match e {
                types::Error::InvalidConfig(m) => ("invalid-config", m),
                types::Error::Denied(m) => ("denied", m),
                types::Error::Unavailable(m) => ("unavailable", m),
                types::Error::Source(m) => ("source", m),
                types::Error::Limit(m) => ("limit", m),
            }
        }

    };
}

pub(crate) use shared_host_impl;
