//! The workflow log: what one run did, as JSON Lines an operator reads to see why a run ended
//! the way it did — when it started and ended, each connection to a source or a secret backend
//! and its outcome (from the audit trail), the plugin, counts, warnings, denials and the error.
//!
//! Every string in an event passes through the redactor when it is recorded, and every line is
//! checked by the run's outbound scanner when the log is written, so a secret the run resolved
//! (in any encoding the scanner knows) never reaches a log file: such a line is replaced by a
//! `withheld` event. The log is bounded ([`MAX_EVENTS`] events, [`MAX_BYTES`] bytes); what does
//! not fit is counted in a closing `log-truncated` event.
//!
//! A complete run publishes its log as `run-log.jsonl`, listed and hashed in the manifest. A
//! failed run's log stays in the home (`logs/<run-id>.jsonl`) and goes beside the sink's runs
//! (`failed/<run-id>.jsonl`), never inside them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::pipeline::scan::OutboundScanner;
use crate::state::{AuditEntry, AuditTap};

/// The published log's file name inside a run.
pub const LOG_FILE: &str = "run-log.jsonl";
/// At most this many events are kept ...
pub const MAX_EVENTS: usize = 2000;
/// ... of at most this many bytes in all.
pub const MAX_BYTES: usize = 512 << 10;
/// One string value in an event is clipped to this many characters.
const MAX_VALUE_CHARS: usize = 2048;

/// Who reads a rendering of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// It leaves the host with the run (published, or beside the sink's runs). Only what the
    /// operator configured or the host decided goes out: credential GUIDs, audit details, the
    /// destinations of refused requests and the error message are left out, because a plugin
    /// chooses those strings (a refused statement's relation, a denied host, its own error) and
    /// the log must not carry around the filters what they keep out.
    Public,
    /// It stays in the home, readable by the operator only: everything the audit log has.
    Operator,
}

/// The log of one run; cheap to clone, shared with the audit tap.
#[derive(Clone, Default)]
pub struct RunLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    events: Vec<(String, Map<String, Value>)>,
    bytes: usize,
    dropped: u64,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.lock().map(|i| i.events.len()).unwrap_or(0);
        f.debug_struct("RunLog").field("events", &n).finish()
    }
}

impl RunLog {
    /// An empty log.
    pub fn new() -> Self {
        RunLog::default()
    }

    /// Records event `name` with `fields` (a JSON object; anything else is recorded empty).
    /// String values are redacted and clipped.
    pub fn event(&self, name: &str, fields: Value) {
        let mut fields = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        fields.retain(|_, v| !v.is_null());
        let mut clean = Value::Object(fields);
        clean_strings(&mut clean);
        let Value::Object(mut fields) = clean else {
            return;
        };
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        fields.insert("event".into(), Value::String(name.to_string()));
        let size = serde_json::to_vec(&fields).map(|v| v.len()).unwrap_or(0) + at.len() + 10;
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.events.len() >= MAX_EVENTS || inner.bytes + size > MAX_BYTES {
            inner.dropped += 1;
            return;
        }
        inner.bytes += size;
        inner.events.push((at, fields));
    }

    /// The number of events kept.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.events.len()).unwrap_or(0)
    }

    /// Whether no event was kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The log as JSON Lines for `audience`, each line checked by `scanner` (a line holding a
    /// secret of the run is replaced by a `withheld` event).
    pub fn render(&self, audience: Audience, scanner: Option<&OutboundScanner>) -> Vec<u8> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(inner.bytes + 256);
        for (at, fields) in &inner.events {
            let mut line = Map::new();
            line.insert("at".into(), Value::String(at.clone()));
            for (k, v) in fields {
                if audience == Audience::Operator || goes_out(fields, k) {
                    line.insert(k.clone(), v.clone());
                }
            }
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            if let Some(encoding) = scanner.and_then(|s| s.find(&bytes)) {
                bytes = serde_json::to_vec(&serde_json::json!({
                    "at": at,
                    "event": "withheld",
                    "reason": format!("this event held a secret this run resolved ({encoding} form)"),
                }))
                .unwrap_or_default();
            }
            out.extend_from_slice(&bytes);
            out.push(b'\n');
        }
        if inner.dropped > 0 {
            let line = serde_json::json!({
                "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "event": "log-truncated",
                "dropped": inner.dropped,
                "reason": format!("the log keeps at most {MAX_EVENTS} events and {} KiB", MAX_BYTES >> 10),
            });
            out.extend_from_slice(&serde_json::to_vec(&line).unwrap_or_default());
            out.push(b'\n');
        }
        out
    }
}

impl AuditTap for RunLog {
    fn audited(&self, entry: &AuditEntry) {
        self.event(
            "audit",
            serde_json::json!({
                "action": entry.action,
                "outcome": entry.outcome,
                "credential": entry.credential,
                "destination": entry.destination,
                "detail": entry.detail,
            }),
        );
    }
}

/// Whether field `key` of an event goes into the public rendering (see [`Audience::Public`]).
fn goes_out(fields: &Map<String, Value>, key: &str) -> bool {
    let event = fields
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (event, key) {
        (_, "credential") => false,
        ("audit", "detail") => false,
        // An allowed destination is the operator's; a refused one may be the plugin's.
        ("audit", "destination") => fields.get("outcome").and_then(Value::as_str) == Some("ok"),
        ("run-failed", "error") => false,
        _ => true,
    }
}

fn clean_strings(v: &mut Value) {
    match v {
        Value::String(s) => {
            let mut text = super::redacted(&crate::capabilities::log::clean_line(s));
            if text.chars().count() > MAX_VALUE_CHARS {
                text = text.chars().take(MAX_VALUE_CHARS).collect::<String>() + "…";
            }
            *s = text;
        }
        Value::Array(a) => a.iter_mut().for_each(clean_strings),
        Value::Object(m) => m.values_mut().for_each(clean_strings),
        _ => {}
    }
}

/// Where a failed run's log is kept in the home.
pub fn home_log_path(home: &crate::home::Home, run_id: &str) -> PathBuf {
    home.dir().join("logs").join(format!("{run_id}.jsonl"))
}

/// Writes `bytes` to `path` (its directory created, mode 0700) readable by the owner only,
/// synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn events_render_in_order_and_public_drops_guids() {
        let log = RunLog::new();
        log.event("run-started", serde_json::json!({"run_id": "r1"}));
        log.audited(&AuditEntry {
            at: String::new(),
            run_id: None,
            workflow_id: None,
            plugin_sha256: None,
            credential: Some("guid-1".into()),
            destination: Some("db:5432".into()),
            action: "login".into(),
            outcome: "ok".into(),
            detail: None,
        });
        let public = lines(&log.render(Audience::Public, None));
        assert_eq!(public.len(), 2);
        assert_eq!(public[0]["event"], "run-started");
        assert_eq!(public[1]["action"], "login");
        assert_eq!(public[1]["destination"], "db:5432");
        assert!(public[1].get("credential").is_none());
        log.audited(&AuditEntry {
            at: String::new(),
            run_id: None,
            workflow_id: None,
            plugin_sha256: None,
            credential: None,
            destination: Some("exfil.plugin-chosen.example:443".into()),
            action: "network".into(),
            outcome: "denied".into(),
            detail: Some("GET /plugin-chosen-path".into()),
        });
        log.event(
            "run-failed",
            serde_json::json!({"kind": "plugin-error", "error": "plugin text"}),
        );
        let text = String::from_utf8(log.render(Audience::Public, None)).unwrap();
        for plugin_chosen in [
            "exfil.plugin",
            "plugin-chosen-path",
            "plugin text",
            "guid-1",
        ] {
            assert!(!text.contains(plugin_chosen), "{plugin_chosen} in {text}");
        }
        assert!(text.contains("\"plugin-error\""), "{text}");
        let operator = lines(&log.render(Audience::Operator, None));
        assert_eq!(operator[1]["credential"], "guid-1");
        assert_eq!(operator[2]["detail"], "GET /plugin-chosen-path");
        assert_eq!(operator[3]["error"], "plugin text");
    }

    #[test]
    fn a_line_with_a_resolved_secret_is_withheld() {
        let scanner = OutboundScanner::new();
        scanner.register_bytes(b"Canary-Secret-4711");
        let log = RunLog::new();
        log.event("note", serde_json::json!({"text": "ok"}));
        // Base64 of the secret: the redactor does not know this form, the scanner does.
        log.event(
            "note",
            serde_json::json!({"text": "Q2FuYXJ5LVNlY3JldC00NzEx"}),
        );
        let out = log.render(Audience::Operator, Some(&scanner));
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("Q2FuYXJ5LVNlY3JldC00NzEx"), "{text}");
        let out = lines(&out);
        assert_eq!(out[0]["text"], "ok");
        assert_eq!(out[1]["event"], "withheld");
    }

    #[test]
    fn the_log_is_bounded_and_says_so() {
        let log = RunLog::new();
        for i in 0..(MAX_EVENTS + 5) {
            log.event("n", serde_json::json!({ "i": i }));
        }
        assert_eq!(log.len(), MAX_EVENTS);
        let out = lines(&log.render(Audience::Public, None));
        assert_eq!(out.len(), MAX_EVENTS + 1);
        assert_eq!(out[MAX_EVENTS]["event"], "log-truncated");
        assert_eq!(out[MAX_EVENTS]["dropped"], 5);
        let big = RunLog::new();
        let value = "x".repeat(MAX_VALUE_CHARS * 2);
        for _ in 0..1000 {
            big.event("n", serde_json::json!({ "v": value }));
        }
        assert!(big.render(Audience::Public, None).len() < MAX_BYTES + 4096);
    }
}
