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
    let mut lines = Vec::new();
    for file in manifest
        .files
        .iter()
        .filter(|f| KINDS.contains(&f.kind.as_str()))
    {
        let reader = std::io::BufReader::new(
            std::fs::File::open(run_dir.join(&file.path))
                .map_err(|e| format!("{}: {e}", file.path))?,
        );
        for line in reader.lines() {
            let line = line.map_err(|e| format!("{}: {e}", file.path))?;
            lines.push(
                serde_json::from_str::<Line>(&line).map_err(|e| format!("{}: {e}", file.path))?,
            );
        }
    }
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

/// Writes `out` whole or not at all: into a temporary file beside it, synced, then renamed.
fn write_whole(
    out: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<u64>,
) -> Result<u64, String> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let n = {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        let n = write(&mut w).map_err(|e| fail(&e))?;
        std::io::Write::flush(&mut w).map_err(|e| fail(&e))?;
        n
    };
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(out).map_err(|e| fail(&e.error))?;
    Ok(n)
}

/// Writes the published run in `run_dir` as a DataHub file at `out`.
pub fn export_datahub(
    run_dir: &Path,
    options: datahub::DatahubOptions,
    out: &Path,
) -> Result<Exported, String> {
    let (manifest, lines) = load_run(run_dir)?;
    let finished = chrono::DateTime::parse_from_rfc3339(&manifest.finished_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let writer = datahub::Writer::new(&manifest.plugin.name, options, &manifest.run_id, finished)?;
    // Datasets the run's changes say are removed get `status.removed`.
    let removed: Vec<Vec<String>> = removed(&manifest)
        .filter(|(kind, _)| matches!(kind.as_str(), "table" | "view" | "materialized_view"))
        .map(|(_, path)| path)
        .collect();
    let records = write_whole(out, |w| writer.write(&lines, &removed, w))?;
    Ok(Exported {
        run_id: manifest.run_id,
        records,
    })
}

/// Writes the published run in `run_dir` as OpenMetadata create requests at `out`.
pub fn export_openmetadata(
    run_dir: &Path,
    options: openmetadata::OpenMetadataOptions,
    out: &Path,
) -> Result<Exported, String> {
    if options.service.is_empty() {
        return Err("the OpenMetadata database service name is empty (--service)".into());
    }
    let (manifest, lines) = load_run(run_dir)?;
    let mut requests = openmetadata::requests(&manifest.plugin.name, &options, &lines);
    let removed: Vec<(String, Vec<String>)> = removed(&manifest).collect();
    requests.deletions = openmetadata::deletions(&manifest.plugin.name, &options, &removed);
    let n = (requests.databases.len()
        + requests.schemas.len()
        + requests.tables.len()
        + requests.deletions.len()) as u64;
    write_whole(out, |w| {
        serde_json::to_writer_pretty(&mut *w, &requests)?;
        w.write_all(b"\n")?;
        Ok(n)
    })?;
    Ok(Exported {
        run_id: manifest.run_id,
        records: n,
    })
}
