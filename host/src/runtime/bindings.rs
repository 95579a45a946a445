//! Host bindings, one module per frozen WIT version (`wit/vX.Y.Z`). Both share the host's
//! resource types, so a handle means the same thing whichever version a plugin speaks.

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

/// Bindings of `airlock:connector@0.2.0` (adds the `http` interface).
pub mod v0_2_0 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/v0.2.0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "airlock:connector/credentials.credential": crate::capabilities::credentials::CredentialHandle,
            "airlock:connector/sql.connection": crate::capabilities::sql::SqlConnection,
            "airlock:connector/sql.rows": crate::capabilities::sql::SqlRows,
            "airlock:connector/http.client": crate::capabilities::http::HttpClient,
            "airlock:connector/http.body": crate::capabilities::http::HttpBody,
        },
    });
}

/// WIT versions this host serves, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];
