//! Credential handles: what a plugin holds instead of a secret.

use std::collections::BTreeMap;

/// The kind of secret behind a handle (mirrors the WIT `credential-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Password,
    Token,
    KeyPair,
    AwsAccessKey,
    Oauth2Client,
}

/// The host side of a plugin's `credential` resource. It names a slot of the workflow; it
/// carries no secret, so a plugin holding it learns nothing.
#[derive(Debug, Clone)]
pub struct CredentialHandle {
    /// The workflow's slot name.
    pub slot: String,
    /// The kind of the bound credential.
    pub kind: CredentialKind,
}

/// The credential slots a workflow binds (slot name -> kind). Empty until credentials are
/// configured; asking for an unbound slot is denied.
#[derive(Debug, Clone, Default)]
pub struct CredentialSlots {
    slots: BTreeMap<String, CredentialKind>,
}

impl CredentialSlots {
    /// Returns a handle for `slot` or explains why not.
    pub fn handle(&self, slot: &str) -> Result<CredentialHandle, String> {
        match self.slots.get(slot) {
            Some(kind) => Ok(CredentialHandle {
                slot: slot.to_string(),
                kind: *kind,
            }),
            None => Err(format!(
                "no credential is bound to slot `{}` in this workflow",
                sanitize_slot(slot)
            )),
        }
    }
}

/// Slot names come from the plugin: keep error text short and printable.
fn sanitize_slot(slot: &str) -> String {
    slot.chars().filter(|c| !c.is_control()).take(64).collect()
}
