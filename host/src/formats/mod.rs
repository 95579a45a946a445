//! Catalog formats a published run can be written in (`airlock export`).

pub mod datahub;
pub mod openmetadata;

use std::io::BufRead;
use std::path::Path;

use crate::pipeline::manifest::Manifest;

/// The kinds a catalog format reads from a run.
const KINDS: &[&str] = &[
    "database",
    "schema",
    "table",
    "view",
    "materialized_view",
    "column",
    "primary_key",
    "unique_key",
    "foreign_key",
];

/// One asset line of a published run.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Line {
    /// Its kind.
    pub kind: String,
    /// Its path.
    pub path: Vec<String>,
    /// Its attributes.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A catalog format a run can be written in beside its own files (`[sink] format`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum CatalogFormat {
    /// DataHub metadata change proposals (one JSON array), `datahub.json`.
    Datahub,
    /// OpenMetadata create requests ({"databases", "schemas", "tables"}), `openmetadata.json`.
    Openmetadata,
}

impl CatalogFormat {
    /// The file the run gets, and its kind in the manifest.
    pub fn file_name(self) -> &'static str {
        match self {
            CatalogFormat::Datahub => "datahub.json",
            CatalogFormat::Openmetadata => "openmetadata.json",
        }
    }

    /// The kind the manifest lists the file under.
    pub fn kind(self) -> &'static str {
        match self {
            CatalogFormat::Datahub => "datahub",
            CatalogFormat::Openmetadata => "openmetadata",
        }
    }
}

/// The `[sink.catalog]` table: options of the catalog format.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogOptions {
    /// DataHub: the environment of the URNs (default `PROD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// DataHub: the platform instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_instance: Option<String>,
    /// DataHub, SQLite: the database path DataHub's recipes use in their connection URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_database: Option<String>,
    /// OpenMetadata: the database service (required for that format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl CatalogOptions {
    /// Checks the options `format` needs.
    pub fn check(&self, format: CatalogFormat) -> Result<(), String> {
        match (format, &self.service) {
            (CatalogFormat::Openmetadata, None) => Err(
                "sink.format = \"openmetadata\" needs [sink.catalog] service = \"<the OpenMetadata database service>\""
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    fn datahub(&self) -> datahub::DatahubOptions {
        datahub::DatahubOptions {
            env: self.env.clone().unwrap_or_else(|| "PROD".into()),
            platform_instance: self.platform_instance.clone(),
            sqlite_database: self.sqlite_database.clone(),
        }
    }

    fn openmetadata(&self) -> openmetadata::OpenMetadataOptions {
        openmetadata::OpenMetadataOptions {
            service: self.service.clone().unwrap_or_default(),
        }
    }
}

/// Renders a run (its manifest and asset lines) in `format`: the file's bytes and its number
/// of records.
pub fn render(
    format: CatalogFormat,
    manifest: &Manifest,
    lines: &[Line],
    options: &CatalogOptions,
) -> Result<(Vec<u8>, u64), String> {
    let mut bytes = Vec::new();
    let n = match format {
        CatalogFormat::Datahub => {
            let finished = chrono::DateTime::parse_from_rfc3339(&manifest.finished_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| chrono::Utc::now().timestamp_millis());
            let writer = datahub::Writer::new(
                &manifest.plugin.name,
                options.datahub(),
                &manifest.run_id,
                finished,
            )?;
            // Datasets the run's changes say are removed get `status.removed`.
            let removed: Vec<Vec<String>> = removed(manifest)
                .filter(|(kind, _)| matches!(kind.as_str(), "table" | "view" | "materialized_view"))
                .map(|(_, path)| path)
                .collect();
            writer
                .write(lines, &removed, &mut bytes)
                .map_err(|e| e.to_string())?
        }
        CatalogFormat::Openmetadata => {
            let options = options.openmetadata();
            if options.service.is_empty() {
                return Err("the OpenMetadata database service name is empty".into());
            }
            let mut requests = openmetadata::requests(&manifest.plugin.name, &options, lines);
            let removed: Vec<(String, Vec<String>)> = removed(manifest).collect();
            requests.deletions = openmetadata::deletions(&manifest.plugin.name, &options, &removed);
            serde_json::to_writer_pretty(&mut bytes, &requests).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            (requests.databases.len()
                + requests.schemas.len()
                + requests.tables.len()
                + requests.deletions.len()) as u64
        }
    };
    Ok((bytes, n))
}

/// Reads the asset lines a catalog format needs from a run's files, through `open` (the
/// published files, or a staging spool that may be encrypted).
pub fn read_lines(
    manifest: &Manifest,
    open: &dyn Fn(&str) -> std::io::Result<Box<dyn std::io::Read + Send>>,
) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for file in manifest
        .files
        .iter()
        .filter(|f| KINDS.contains(&f.kind.as_str()))
    {
        let reader =
            std::io::BufReader::new(open(&file.path).map_err(|e| format!("{}: {e}", file.path))?);
        for line in reader.lines() {
            let line = line.map_err(|e| format!("{}: {e}", file.path))?;
            lines.push(
                serde_json::from_str::<Line>(&line).map_err(|e| format!("{}: {e}", file.path))?,
            );
        }
    }
    Ok(lines)
}

/// What an export wrote.
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    /// The run exported.
    pub run_id: String,
    /// Records (DataHub) or requests (OpenMetadata) written.
    pub records: u64,
}

/// Reads a published run that validates: a catalog is not fed a run that does not.
fn load_run(run_dir: &Path) -> Result<(Manifest, Vec<Line>), String> {
    let validation = crate::validate::validate_run(run_dir, 5);
    if !validation.ok() {
        return Err(format!(
            "{} does not validate (run `airlock validate {}`): {}",
            run_dir.display(),
            run_dir.display(),
            validation.problems.join("; ")
        ));
    }
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(run_dir.join("manifest.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let lines = read_lines(&manifest, &|path| {
        Ok(Box::new(std::fs::File::open(run_dir.join(path))?) as Box<dyn std::io::Read + Send>)
    })?;
    Ok((manifest, lines))
}

/// The entities the run's changes report removed, as (kind, path).
fn removed(manifest: &Manifest) -> impl Iterator<Item = (String, Vec<String>)> + '_ {
    manifest
        .changes
        .iter()
        .flat_map(|c| c.removed.iter())
        .filter_map(|r| {
            crate::pipeline::filter::parse_qualified_name(&r.name)
                .ok()
                .map(|path| (r.kind.clone(), path))
        })
}

/// Writes `bytes` to `out` whole or not at all: into a temporary file beside it, synced,
/// then renamed.
fn write_whole(out: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    tmp.write_all(bytes).map_err(|e| fail(&e))?;
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(out).map_err(|e| fail(&e.error))?;
    Ok(())
}

/// Writes the published run in `run_dir` in `format` at `out`.
pub fn export(
    run_dir: &Path,
    format: CatalogFormat,
    options: &CatalogOptions,
    out: &Path,
) -> Result<Exported, String> {
    let (manifest, lines) = load_run(run_dir)?;
    let (bytes, records) = render(format, &manifest, &lines, options)?;
    write_whole(out, &bytes)?;
    Ok(Exported {
        run_id: manifest.run_id,
        records,
    })
}
