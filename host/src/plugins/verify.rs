//! The check a run makes on the plugin's bytes before anything compiles or instantiates them:
//! the workflow's pin (`source.plugin_sha256`), the digest approved at install, and the
//! capabilities approved then. Every refusal is audited with the expected and actual digest.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::inspect::Capabilities;
use super::PluginPolicy;
use crate::state::{PluginApproval, RunAudit};

/// A run refused its plugin; the message names the expected and the actual digest and what
/// to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PluginRefused(pub String);

/// Whether `spec` (`source.plugin`) names an installed plugin rather than a path.
pub fn is_name(spec: &str) -> bool {
    !(spec.ends_with(".wasm") || spec.contains('/'))
}

/// Checks the plugin `wasm` read from `path` for `source.plugin = spec` against the pin and
/// the approvals of `home`. Writes a `plugin-verify` audit entry through `audit` (made for
/// this run with the actual digest) when there is something to check.
pub fn check(
    spec: &str,
    path: &Path,
    wasm: &[u8],
    pin: Option<&str>,
    home: Option<&crate::home::Home>,
    audit: &RunAudit,
) -> Result<(), PluginRefused> {
    let actual = hex::encode(Sha256::digest(wasm));
    let refuse = |message: String| {
        audit.record("plugin-verify", "denied", None, None, Some(&message));
        PluginRefused(message)
    };
    let what = if is_name(spec) {
        format!("plugin `{spec}` ({})", path.display())
    } else {
        format!("plugin {}", path.display())
    };
    if let Some(pin) = pin {
        let pin = pin.trim().to_ascii_lowercase();
        if pin != actual {
            return Err(refuse(format!(
                "{what} does not match the workflow's pin: expected sha256 {pin} (source.plugin_sha256), actual sha256 {actual}; the file was changed or replaced. Nothing was compiled or run. If the new version is intended, review and install it (`airlock plugin install FILE --name NAME`) and update source.plugin_sha256"
            )));
        }
    }
    let Some(home) = home else {
        if pin.is_some() {
            audit.record(
                "plugin-verify",
                "ok",
                None,
                None,
                Some("sha256 matches source.plugin_sha256"),
            );
        }
        return Ok(());
    };
    let policy = PluginPolicy::load(home.dir()).map_err(|e| refuse(e.to_string()))?;
    let state = home.state();
    let approval: Option<PluginApproval> = if is_name(spec) {
        state
            .plugin_approval(spec)
            .map_err(|e| refuse(e.to_string()))?
    } else {
        state
            .plugin_approvals()
            .map_err(|e| refuse(e.to_string()))?
            .into_iter()
            .find(|a| a.sha256 == actual)
    };
    let Some(approval) = approval else {
        if policy.require_approval {
            return Err(refuse(format!(
                "{what} (sha256 {actual}) was never approved, and {} requires approval (`require_approval = true`). Nothing was compiled or run. Review and approve it with `airlock plugin install FILE --name NAME`",
                PluginPolicy::path_for(home.dir()).display()
            )));
        }
        if pin.is_some() {
            audit.record(
                "plugin-verify",
                "ok",
                None,
                None,
                Some("sha256 matches source.plugin_sha256"),
            );
        }
        return Ok(());
    };
    let requested = Capabilities::read(wasm);
    let approved: Option<Capabilities> = serde_json::from_str(&approval.capabilities).ok();
    let unapproved: Vec<String> = match (&requested, &approved) {
        (Ok(r), Some(a)) => r.not_in(a),
        (Err(_), _) => Vec::new(),
        (_, None) => vec!["everything (the recorded approval is unreadable)".into()],
    };
    let asks = match &requested {
        Err(e) => format!("; its capabilities cannot be read ({e})"),
        Ok(_) if unapproved.is_empty() => String::new(),
        Ok(_) => format!(
            "; it asks for capabilities that were not approved: {}",
            unapproved.join(", ")
        ),
    };
    if approval.sha256 != actual {
        return Err(refuse(format!(
            "{what} is not the version that was approved: expected sha256 {} (approved {} as `{}`), actual sha256 {actual}{asks}. Nothing was compiled or run. If the new version is intended, review and approve it with `airlock plugin install FILE --name {}`",
            approval.sha256, approval.approved_at, approval.name, approval.name
        )));
    }
    if !unapproved.is_empty() || requested.is_err() {
        return Err(refuse(format!(
            "{what} (sha256 {actual}){asks}. Nothing was compiled or run. Review and approve it with `airlock plugin install FILE --name {}`",
            approval.name
        )));
    }
    audit.record(
        "plugin-verify",
        "ok",
        None,
        None,
        Some(&format!(
            "sha256 and capabilities match the approval of `{}` ({})",
            approval.name, approval.approved_at
        )),
    );
    Ok(())
}
