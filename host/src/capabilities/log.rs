//! Plugin log lines and progress: capped, stripped of control characters, then handed to the
//! run's observer.

use std::sync::Arc;

use crate::run::RunObserver;

/// Longest log line kept; the rest is cut.
const MAX_LINE_CHARS: usize = 2048;

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The per-run plugin log.
pub struct PluginLog {
    observer: Arc<dyn RunObserver>,
    max_lines: u64,
    lines: u64,
    dropped: u64,
}

impl PluginLog {
    /// A log that forwards at most `max_lines` lines to `observer`.
    pub fn new(observer: Arc<dyn RunObserver>, max_lines: u64) -> Self {
        PluginLog {
            observer,
            max_lines,
            lines: 0,
            dropped: 0,
        }
    }

    /// Records one line from the plugin.
    pub fn line(&mut self, level: LogLevel, message: &str) {
        if self.lines >= self.max_lines {
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        let line = clean_line(message);
        let line = crate::secrets::redact::Redactor::global().redact(&line);
        self.observer.plugin_log(level, &line);
    }

    /// Reports progress.
    pub fn progress(&self, done: u64, total: Option<u64>) {
        self.observer.progress(done, total);
    }

    /// Lines dropped after the cap.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Cuts a line to a bounded length and replaces control characters, so a plugin cannot forge
/// log lines or terminal escapes.
pub fn clean_line(message: &str) -> String {
    let mut out: String = message
        .chars()
        .take(MAX_LINE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if message.chars().nth(MAX_LINE_CHARS).is_some() {
        out.push_str(" [cut]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cleaned_and_cut() {
        assert_eq!(clean_line("a\nb\x1b[31m"), "a b [31m");
        let long = "x".repeat(5000);
        let c = clean_line(&long);
        assert!(c.ends_with("[cut]") && c.len() < 2100);
    }
}
