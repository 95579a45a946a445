//! Secret values in memory: zeroized on drop, never printed.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string (a password, a token). Its bytes are zeroized on drop; `Debug` and
/// `Display` print `[redacted]`. Build it from a pre-sized buffer where possible: growing a
/// `String` leaves copies of the old buffer in freed memory.
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Takes ownership of `value` (which is zeroized when this is dropped).
    pub fn new(value: String) -> Self {
        SecretString(Zeroizing::new(value))
    }

    /// Builds a secret from bytes that must be UTF-8; the input is zeroized either way.
    pub fn from_utf8(mut bytes: Vec<u8>) -> Result<Self, SecretError> {
        match String::from_utf8(std::mem::take(&mut bytes)) {
            Ok(s) => Ok(SecretString::new(s)),
            Err(e) => {
                let mut b = e.into_bytes();
                b.zeroize();
                Err(SecretError("secret is not valid UTF-8".into()))
            }
        }
    }

    /// The secret's text. Only the code that logs in calls this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Clone for SecretString {
    fn clone(&self) -> Self {
        let mut s = String::with_capacity(self.0.len());
        s.push_str(&self.0);
        SecretString::new(s)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret could not be used; the message never holds the secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = SecretString::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
