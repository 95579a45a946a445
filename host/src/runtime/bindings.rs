//! Host bindings, one module per frozen WIT version (`wit/vX.Y.Z`).

/// Bindings of `airlock:connector@0.1.0`.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/v0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "airlock:connector/credentials.credential": crate::capabilities::credentials::CredentialHandle,
            "airlock:connector/sql.connection": crate::capabilities::sql::SqlConnection,
            "airlock:connector/sql.rows": crate::capabilities::sql::SqlRows,
        },
    });
}

/// WIT versions this host serves, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];
