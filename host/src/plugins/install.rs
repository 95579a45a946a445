//! `airlock plugin install`: read the file once, digest it, read what it asks for, check its
//! signature, and — once the operator approved — compile it in a limited child process, copy
//! it into the plugin directory and record the approval. Every refusal is audited.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::compile::{compile_in_child, CompileError, CompileLimits, Compiled};
use super::inspect::{Capabilities, InspectError, MAX_PLUGIN_BYTES};
use super::signature::{self, SignatureError};
use super::{valid_name, PluginPolicy, PolicyError};
use crate::state::{now, AuditEntry, PluginApproval, StateError, StateStore};

/// Why a plugin was not installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The name is not usable.
    #[error("invalid plugin name `{0}`: use lowercase letters, digits, `-` and `_` (at most 64), e.g. --name postgres")]
    Name(String),
    /// The capabilities could not be read.
    #[error("{path}: {source}")]
    Inspect { path: PathBuf, source: InspectError },
    /// The signature is bad or untrusted.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The policy requires a signature and there is none.
    #[error("{path} is not signed, and {policy} requires a signature by a trusted key (`require_signature = true`); ask the author for {sig}, or pass --signature FILE")]
    Unsigned {
        path: PathBuf,
        sig: PathBuf,
        policy: PathBuf,
    },
    /// The operator did not approve.
    #[error("{0}")]
    NotApproved(String),
    /// The policy file is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Compilation failed or hit a limit.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The plugin could not be written into the plugin directory.
    #[error("cannot install into {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A plugin read and checked, waiting for the operator's approval.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// The name it is installed under.
    pub name: String,
    /// The file it was read from.
    pub source: PathBuf,
    /// The bytes read (what gets compiled and installed; the file is not read again).
    pub wasm: Vec<u8>,
    /// Lowercase hex SHA-256 of `wasm`.
    pub sha256: String,
    /// What it asks for.
    pub capabilities: Capabilities,
    /// The trusted key that signed it.
    pub signer: Option<String>,
    /// A note about its signature for the operator (unsigned, untrusted key).
    pub signature_note: Option<String>,
    /// The approval it would replace.
    pub previous: Option<PluginApproval>,
    /// What it asks for that the previous approval did not grant.
    pub new_requests: Vec<String>,
}

impl InstallPlan {
    /// The lines shown to the operator before approval.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![
            format!("plugin {} from {}", self.name, self.source.display()),
            format!("  sha256: {}", self.sha256),
            format!(
                "  WIT: airlock:connector@{}",
                self.capabilities.wit_version.as_deref().unwrap_or("?")
            ),
        ];
        match (&self.signer, &self.signature_note) {
            (Some(k), _) => lines.push(format!("  signed by trusted key {k}")),
            (None, Some(note)) => lines.push(format!("  signature: {note}")),
            (None, None) => lines.push("  signature: none".into()),
        }
        lines.push("  it asks for:".into());
        for l in self.capabilities.describe() {
            lines.push(format!("    {l}"));
        }
        if let Some(prev) = &self.previous {
            if prev.sha256 == self.sha256 {
                lines.push("  this exact file is already approved".into());
            } else {
                lines.push(format!(
                    "  replaces the approved version {} (approved {})",
                    prev.sha256, prev.approved_at
                ));
                for r in &self.new_requests {
                    lines.push(format!("  NEW, not approved before: {r}"));
                }
            }
        }
        lines
    }
}

fn audit(state: &StateStore, sha256: Option<&str>, outcome: &str, detail: &str) {
    let entry = AuditEntry {
        plugin_sha256: sha256.map(str::to_string),
        action: "plugin-install".into(),
        outcome: outcome.into(),
        detail: Some(detail.to_string()),
        ..AuditEntry::default()
    };
    if let Err(e) = state.audit(&entry) {
        tracing::error!("cannot write audit entry (plugin-install {outcome}): {e}");
    }
}

/// Reads `file` once and checks it: digest, capabilities (without compiling), signature
/// (`signature`, else `FILE.sig` when it exists) against the trusted keys of `home_dir`.
/// Refusals are audited in `state`.
pub fn prepare(
    file: &Path,
    name: Option<&str>,
    signature_file: Option<&Path>,
    home_dir: &Path,
    state: &StateStore,
) -> Result<InstallPlan, InstallError> {
    let result = prepare_inner(file, name, signature_file, home_dir, state);
    if let Err(e) = &result {
        let sha = match e {
            InstallError::Read { .. } => None,
            _ => std::fs::read(file)
                .ok()
                .map(|b| hex::encode(Sha256::digest(b))),
        };
        audit(
            state,
            sha.as_deref(),
            "denied",
            &format!("{}: {e}", file.display()),
        );
    }
    result
}

fn prepare_inner(
    file: &Path,
    name: Option<&str>,
    signature_file: Option<&Path>,
    home_dir: &Path,
    state: &StateStore,
) -> Result<InstallPlan, InstallError> {
    let policy = PluginPolicy::load(home_dir)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if !valid_name(&name) {
        return Err(InstallError::Name(name));
    }
    let read = |source| InstallError::Read {
        path: file.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(file).map_err(read)?.len();
    if len > MAX_PLUGIN_BYTES as u64 {
        return Err(InstallError::Inspect {
            path: file.to_path_buf(),
            source: InspectError::TooLarge(len as usize),
        });
    }
    let wasm = std::fs::read(file).map_err(read)?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    let capabilities = Capabilities::read(&wasm).map_err(|source| InstallError::Inspect {
        path: file.to_path_buf(),
        source,
    })?;

    let trusted_dir = PluginPolicy::trusted_keys_dir(home_dir);
    let sig_path = match signature_file {
        Some(p) => Some(p.to_path_buf()),
        None => Some(signature::sig_path_of(file)).filter(|p| p.exists()),
    };
    let (signer, signature_note) = match sig_path {
        Some(sig_path) => {
            let trusted = signature::trusted_keys(&trusted_dir)?;
            match signature::verify(&sig_path, &sha256, &trusted, &trusted_dir) {
                Ok(key) => (Some(key), None),
                Err(SignatureError::Untrusted { key, .. }) if !policy.require_signature => (
                    None,
                    Some(format!(
                        "signed by {key}, which is NOT a trusted key (not in {}); treat it as unsigned",
                        trusted_dir.display()
                    )),
                ),
                Err(e) => return Err(e.into()),
            }
        }
        None if policy.require_signature => {
            return Err(InstallError::Unsigned {
                path: file.to_path_buf(),
                sig: signature::sig_path_of(file),
                policy: PluginPolicy::path_for(home_dir),
            })
        }
        None => (None, Some("none (unsigned)".to_string())),
    };

    let previous = state.plugin_approval(&name)?;
    let new_requests = match &previous {
        Some(prev) => match serde_json::from_str::<Capabilities>(&prev.capabilities) {
            Ok(approved) => capabilities.not_in(&approved),
            Err(_) => vec!["everything (the earlier approval is unreadable)".into()],
        },
        None => Vec::new(),
    };
    Ok(InstallPlan {
        name,
        source: file.to_path_buf(),
        wasm,
        sha256,
        capabilities,
        signer,
        signature_note,
        previous,
        new_requests,
    })
}

/// Records that the operator did not approve `plan`.
pub fn refuse(plan: &InstallPlan, state: &StateStore, reason: &str) -> InstallError {
    audit(
        state,
        Some(&plan.sha256),
        "denied",
        &format!("plugin {}: {reason}", plan.name),
    );
    InstallError::NotApproved(reason.to_string())
}

/// Compiles the approved `plan` in a child process running `program` under `limits` (into
/// `cache_dir`), copies it to `<plugin_dir>/<name>.wasm` and records the approval.
pub async fn complete(
    plan: &InstallPlan,
    state: &StateStore,
    plugin_dir: &Path,
    cache_dir: Option<&Path>,
    program: &Path,
    limits: CompileLimits,
) -> Result<(PluginApproval, Compiled), InstallError> {
    let result = complete_inner(plan, state, plugin_dir, cache_dir, program, limits).await;
    match &result {
        Ok((approval, compiled)) => audit(
            state,
            Some(&plan.sha256),
            "ok",
            &format!(
                "approved plugin {} ({}); imports: {}; destinations: [{}]; signer: {}; compiled in a child process{}",
                plan.name,
                approval.file,
                plan.capabilities.imports.join(", "),
                plan.capabilities.destinations().join(", "),
                plan.signer.as_deref().unwrap_or("none"),
                if compiled.cached { " into the component cache" } else { "" }
            ),
        ),
        Err(e) => audit(
            state,
            Some(&plan.sha256),
            "failed",
            &format!("plugin {}: {e}", plan.name),
        ),
    }
    result
}

async fn complete_inner(
    plan: &InstallPlan,
    state: &StateStore,
    plugin_dir: &Path,
    cache_dir: Option<&Path>,
    program: &Path,
    limits: CompileLimits,
) -> Result<(PluginApproval, Compiled), InstallError> {
    let compiled = compile_in_child(program, &plan.wasm, cache_dir, limits).await?;
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Write { path, source }
    };
    std::fs::create_dir_all(plugin_dir).map_err(write(plugin_dir))?;
    let plugin_dir = std::fs::canonicalize(plugin_dir).map_err(write(plugin_dir))?;
    let target = plugin_dir.join(format!("{}.wasm", plan.name));
    write_atomically(&plugin_dir, &target, &plan.wasm).map_err(write(&target))?;
    let approval = PluginApproval {
        name: plan.name.clone(),
        sha256: plan.sha256.clone(),
        wit_version: plan.capabilities.wit_version.clone(),
        capabilities: serde_json::to_string(&plan.capabilities).unwrap_or_default(),
        signer: plan.signer.clone(),
        file: target.display().to_string(),
        approved_at: now(),
    };
    state.approve_plugin(&approval)?;
    Ok((approval, compiled))
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".install-{}", uuid::Uuid::now_v7()));
    let result = (|| {
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
