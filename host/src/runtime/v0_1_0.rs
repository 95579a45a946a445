//! Host implementation of `airlock:connector@0.1.0`: converts WIT types and forwards to the
//! capabilities.

use super::bindings::v0_1_0::airlock::connector::{credentials, emit, log, sql, types};

super::host_impl::shared_host_impl!();
