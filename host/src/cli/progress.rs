//! Progress display: a bar on a terminal, plain lines otherwise.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::capabilities::log::LogLevel;
use crate::run::{Phase, RunObserver};

/// A progress bar on stderr.
pub struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        TerminalProgress { bar }
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl RunObserver for TerminalProgress {
    fn phase(&self, phase: Phase) {
        self.bar.set_message(match phase {
            Phase::Loading => "loading plugin",
            Phase::Extracting => "extracting",
            Phase::Publishing => "publishing",
        });
    }

    fn progress(&self, done: u64, total: Option<u64>) {
        if let Some(total) = total {
            if self.bar.length() != Some(total) {
                self.bar.set_length(total);
                self.bar.set_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
            }
        }
        self.bar.set_position(done);
    }

    fn kept_log(&self, place: &str) {
        self.bar.println(format!("the failed run's log: {place}"));
    }

    fn plugin_log(&self, level: LogLevel, message: &str) {
        if level >= LogLevel::Info {
            self.bar
                .println(format!("plugin {}: {message}", level_name(level)));
        }
    }
}

/// Plain progress lines on stderr (at most one every two seconds); silent in JSON mode except
/// for warnings and errors.
pub struct PlainProgress {
    quiet: bool,
    last: Mutex<Option<Instant>>,
}

impl PlainProgress {
    pub fn new(quiet: bool) -> Self {
        PlainProgress {
            quiet,
            last: Mutex::new(None),
        }
    }
}

impl RunObserver for PlainProgress {
    fn phase(&self, phase: Phase) {
        if !self.quiet {
            eprintln!(
                "{}",
                match phase {
                    Phase::Loading => "loading plugin",
                    Phase::Extracting => "extracting",
                    Phase::Publishing => "publishing",
                }
            );
        }
    }

    fn kept_log(&self, place: &str) {
        // On stderr even under --json: stdout carries only the JSON status.
        eprintln!("the failed run's log: {place}");
    }

    fn progress(&self, done: u64, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let finished = total == Some(done);
        if !finished && last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            return;
        }
        *last = Some(Instant::now());
        match total {
            Some(t) => eprintln!("progress: {done}/{t}"),
            None => eprintln!("progress: {done}"),
        }
    }

    fn plugin_log(&self, level: LogLevel, message: &str) {
        if level >= LogLevel::Warn || (!self.quiet && level >= LogLevel::Info) {
            eprintln!("plugin {}: {message}", level_name(level));
        }
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}
