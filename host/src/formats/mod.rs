//! Catalog formats a published run can be written in (`airlock export`).

pub mod datahub;

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
    "foreign_key",
];

/// What an export wrote.
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    /// The run exported.
    pub run_id: String,
    /// Records written.
    pub records: u64,
}

/// Writes the published run in `run_dir` as a DataHub file at `out` (replaced whole, never
/// left half written). The run must validate first: a catalog is not fed a run that does not.
pub fn export_datahub(
    run_dir: &Path,
    options: datahub::DatahubOptions,
    out: &Path,
) -> Result<Exported, String> {
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
    let finished = chrono::DateTime::parse_from_rfc3339(&manifest.finished_at)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let writer = datahub::Writer::new(&manifest.plugin.name, options, &manifest.run_id, finished)?;
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
                serde_json::from_str::<datahub::Line>(&line)
                    .map_err(|e| format!("{}: {e}", file.path))?,
            );
        }
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let records = {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        let n = writer
            .write(&lines, &[], &mut w)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        std::io::Write::flush(&mut w).map_err(|e| format!("{}: {e}", out.display()))?;
        n
    };
    tmp.as_file()
        .sync_all()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    tmp.persist(out)
        .map_err(|e| format!("{}: {}", out.display(), e.error))?;
    Ok(Exported {
        run_id: manifest.run_id,
        records,
    })
}
