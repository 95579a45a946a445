//! Host capabilities, one module per WIT interface. Each holds version-independent logic; the
//! per-version glue in `runtime::v0_1_0` converts WIT types and forwards here.

pub mod credentials;
pub mod http;
pub mod inbound;
pub mod log;
pub mod sql;
