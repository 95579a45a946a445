//! Log lines and progress, shown to the operator after the host redacts them.

use crate::__private::airlock::connector::log as wit;

/// Logs at debug level.
pub fn debug(message: &str) {
    wit::log(wit::Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    wit::log(wit::Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    wit::log(wit::Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    wit::log(wit::Level::Error, message);
}

/// Reports progress: `done` units of `total` (when known).
pub fn progress(done: u64, total: Option<u64>) {
    wit::progress(done, total);
}
