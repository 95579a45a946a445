//! Where published runs go. A sink publishes a run whole or not at all.

pub mod https;
pub mod local;
pub mod remote;
pub mod s3;

use serde::{Deserialize, Serialize};

/// The `[sink]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// A local directory; each run becomes `<dir>/<run-id>/`.
    Local {
        /// Output directory, relative to the config file.
        dir: String,
        /// Keep only the newest this many published runs in `dir` (default: keep all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_runs: Option<u32>,
        /// A catalog format written beside the run's own files (see [`SinkConfig::catalog`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<crate::formats::CatalogFormat>,
        /// Options of that format (`[sink.catalog]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        catalog: Option<crate::formats::CatalogOptions>,
    },
    /// S3-compatible object storage; each run becomes `<prefix>/<run-id>/`.
    S3(s3::S3SinkConfig),
    /// An HTTPS tenant endpoint; each run is PUT to `<url>/runs/<run-id>/`.
    Https(https::HttpsSinkConfig),
}

impl SinkConfig {
    /// The catalog format a run writes beside its own files, with its options.
    pub fn catalog(
        &self,
    ) -> Option<(
        crate::formats::CatalogFormat,
        crate::formats::CatalogOptions,
    )> {
        let (format, options) = match self {
            SinkConfig::Local {
                format, catalog, ..
            } => (format, catalog),
            SinkConfig::S3(s3) => (&s3.format, &s3.catalog),
            SinkConfig::Https(https) => (&https.format, &https.catalog),
        };
        format.map(|f| (f, options.clone().unwrap_or_default()))
    }

    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), String> {
        if let Some((format, options)) = self.catalog() {
            options.check(format)?;
        }
        match self {
            SinkConfig::Local {
                keep_runs: Some(0), ..
            } => Err("sink.keep_runs must be at least 1 (leave it out to keep every run)".into()),
            SinkConfig::Local { .. } => Ok(()),
            SinkConfig::S3(s3) => s3.check(),
            SinkConfig::Https(https) => https.check(),
        }
    }
}
