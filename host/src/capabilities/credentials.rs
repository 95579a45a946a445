//! Credential handles: what a plugin holds instead of a secret.

use std::collections::BTreeMap;

use crate::state::CredentialRecord;

/// The kind of secret behind a handle (mirrors the WIT `credential-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Password,
    Token,
    KeyPair,
    AwsAccessKey,
    Oauth2Client,
}

impl CredentialKind {
    /// The registry's name of a kind.
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "password" => CredentialKind::Password,
            "token" => CredentialKind::Token,
            "key-pair" => CredentialKind::KeyPair,
            "aws-access-key" => CredentialKind::AwsAccessKey,
            "oauth2-client" => CredentialKind::Oauth2Client,
            _ => return None,
        })
    }
}

/// The host side of a plugin's `credential` resource. It names a slot of the workflow and
/// carries no secret, so a plugin holding it learns nothing. The resource table hands the
/// plugin an index that only this run's table resolves: it cannot be forged, and it is gone
/// after drop.
#[derive(Debug, Clone)]
pub struct CredentialHandle {
    /// The workflow's slot name.
    pub slot: String,
    /// The kind of the bound credential.
    pub kind: CredentialKind,
}

/// A credential bound to a slot of the workflow: the registry record (no secret).
#[derive(Debug, Clone)]
pub struct CredentialBinding {
    /// The registry record.
    pub record: CredentialRecord,
    /// Its kind.
    pub kind: CredentialKind,
}

/// The credential slots a workflow binds. Asking for an unbound slot is denied.
#[derive(Debug, Clone, Default)]
pub struct CredentialSlots {
    slots: BTreeMap<String, CredentialBinding>,
}

impl CredentialSlots {
    /// Binds `record` to `slot`.
    pub fn bind(&mut self, slot: &str, record: CredentialRecord) -> Result<(), String> {
        let kind = CredentialKind::parse(&record.kind).ok_or_else(|| {
            format!(
                "credential {} has unknown kind `{}`",
                record.guid, record.kind
            )
        })?;
        self.slots
            .insert(slot.to_string(), CredentialBinding { record, kind });
        Ok(())
    }

    /// Returns a handle for `slot` or explains why not.
    pub fn handle(&self, slot: &str) -> Result<CredentialHandle, String> {
        match self.slots.get(slot) {
            Some(b) => Ok(CredentialHandle {
                slot: slot.to_string(),
                kind: b.kind,
            }),
            None => Err(format!(
                "no credential is bound to slot `{}` in this workflow",
                sanitize_slot(slot)
            )),
        }
    }

    /// The binding behind a slot.
    pub fn binding(&self, slot: &str) -> Option<&CredentialBinding> {
        self.slots.get(slot)
    }
}

/// Slot names come from the plugin: keep error text short and printable.
fn sanitize_slot(slot: &str) -> String {
    slot.chars().filter(|c| !c.is_control()).take(64).collect()
}
