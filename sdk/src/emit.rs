//! Batched asset emission.

use crate::__private::airlock::connector::emit as wit;
use crate::__private::wit_types::Asset;
use crate::{AssetKind, Error};

/// Assets per boundary crossing; the host accepts far more, this keeps plugin memory flat.
const MAX_BATCH_ASSETS: usize = 512;
/// Bytes one batch may carry: under the smallest per-call copy limit a host accepts
/// (`limits.call_bytes` >= 64 KiB), so a batch never exceeds it unless one asset alone does.
const MAX_BATCH_BYTES: usize = 48 << 10;

/// Collects assets and hands them to the host in batches.
pub struct Emitter {
    batch: Vec<Asset>,
    batch_bytes: usize,
    emitted: u64,
    warnings: Vec<String>,
}

impl Emitter {
    pub(crate) fn new() -> Self {
        Emitter {
            batch: Vec::with_capacity(MAX_BATCH_ASSETS),
            batch_bytes: 0,
            emitted: 0,
            warnings: Vec::new(),
        }
    }

    /// Emits one asset. `path` is the asset's location (its shape depends on `kind`, e.g.
    /// `[database, schema, table]` for a table); `attributes` must serialize to a JSON object.
    pub fn emit<P, A>(&mut self, kind: AssetKind, path: P, attributes: A) -> Result<(), Error>
    where
        P: IntoIterator,
        P::Item: AsRef<str>,
        A: serde::Serialize,
    {
        let attributes_json = serde_json::to_string(&attributes)
            .map_err(|e| Error::Source(format!("attributes do not serialize: {e}")))?;
        let path: Vec<String> = path.into_iter().map(|s| s.as_ref().to_string()).collect();
        let bytes = attributes_json.len() + path.iter().map(String::len).sum::<usize>();
        // Flush first when this asset would take the batch over the byte bound.
        if !self.batch.is_empty() && self.batch_bytes + bytes > MAX_BATCH_BYTES {
            self.flush()?;
        }
        self.batch_bytes += bytes;
        self.batch.push(Asset {
            kind,
            path,
            attributes_json,
        });
        if self.batch.len() >= MAX_BATCH_ASSETS || self.batch_bytes >= MAX_BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Emits a database, schema, table or view the connector could not read in full (the
    /// catalog query for its tables or columns failed, access was denied, ...), with its
    /// attributes and `reason`, instead of failing the run. What is missing below it is not
    /// reported removed: the host keeps the last run's entities under it. `reason` is
    /// published as the asset's `unreadable` attribute (the filters and the secret scan see
    /// it like any other).
    pub fn unreadable<P>(
        &mut self,
        kind: AssetKind,
        path: P,
        mut attributes: serde_json::Map<String, serde_json::Value>,
        reason: &str,
    ) -> Result<(), Error>
    where
        P: IntoIterator,
        P::Item: AsRef<str>,
    {
        attributes.insert("unreadable".into(), reason.into());
        self.warn(format!(
            "could not read everything under an object: {reason}"
        ));
        self.emit(kind, path, attributes)
    }

    /// Sends buffered assets to the host now.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let n = self.batch.len() as u64;
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        wit::emit(&batch)?;
        self.emitted += n;
        Ok(())
    }

    /// Assets handed to the host so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Records a non-fatal problem for the run summary (and logs it).
    pub fn warn(&mut self, message: impl Into<String>) {
        let message = message.into();
        crate::log::warn(&message);
        self.warnings.push(message);
    }

    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}
