//! The local directory sink: each run is staged in `<dir>/.partial-<run-id>/` and renamed to
//! `<dir>/<run-id>/` only after every file and the manifest are written and synced, so a run
//! directory appears complete or not at all.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pipeline::manifest::Manifest;

/// A local output directory.
#[derive(Debug, Clone)]
pub struct LocalSink {
    dir: PathBuf,
}

/// A run being written; removed on drop unless published.
#[derive(Debug)]
pub struct StagedRun {
    staging: PathBuf,
    target: PathBuf,
    published: bool,
}

impl LocalSink {
    /// A sink writing into `dir` (created when missing).
    pub fn new(dir: PathBuf) -> Self {
        LocalSink { dir }
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the staging directory of `run_id`.
    pub fn stage(&self, run_id: &str) -> std::io::Result<StagedRun> {
        fs::create_dir_all(&self.dir)?;
        let staging = self.dir.join(format!(".partial-{run_id}"));
        let target = self.dir.join(run_id);
        if target.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("run directory {} already exists", target.display()),
            ));
        }
        fs::create_dir(&staging)?;
        Ok(StagedRun {
            staging,
            target,
            published: false,
        })
    }
}

impl LocalSink {
    /// Removes all but the newest `keep` published runs: directories named by a run id (UUIDv7,
    /// so names sort by start time) that hold a manifest. Staging directories and anything else
    /// are left alone. Returns the removed run ids.
    pub fn prune(&self, keep: usize) -> std::io::Result<Vec<String>> {
        let mut runs: Vec<String> = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if uuid::Uuid::parse_str(&name).is_ok()
                && entry.file_type()?.is_dir()
                && entry.path().join("manifest.json").is_file()
            {
                runs.push(name);
            }
        }
        runs.sort();
        let excess = runs.len().saturating_sub(keep);
        let removed: Vec<String> = runs.into_iter().take(excess).collect();
        for run in &removed {
            fs::remove_dir_all(self.dir.join(run))?;
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}

impl StagedRun {
    /// The staging directory files are spooled into.
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Writes the manifest last, syncs, and renames the staging directory into place.
    pub fn publish(mut self, manifest: &Manifest) -> std::io::Result<PathBuf> {
        let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
        let path = self.staging.join("manifest.json");
        let mut f = fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        sync_dir(&self.staging)?;
        fs::rename(&self.staging, &self.target)?;
        if let Some(parent) = self.target.parent() {
            sync_dir(parent)?;
        }
        self.published = true;
        Ok(self.target.clone())
    }
}

impl Drop for StagedRun {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a leftover `.partial-*` directory is never mistaken for a run.
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_stage_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().join("out"));
        let staged = sink.stage("r1").unwrap();
        fs::write(staged.dir().join("table.jsonl"), "{}\n").unwrap();
        drop(staged);
        assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
    }

    #[test]
    fn prune_keeps_the_newest_published_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LocalSink::new(dir.path().to_path_buf());
        let ids: Vec<String> = (0..4)
            .map(|i| format!("0190a1b2-000{i}-7000-8000-000000000000"))
            .collect();
        for id in &ids {
            fs::create_dir(dir.path().join(id)).unwrap();
            fs::write(dir.path().join(id).join("manifest.json"), "{}").unwrap();
        }
        // not runs: a staging dir, a run-named dir without manifest, another file
        fs::create_dir(dir.path().join(format!(".partial-{}", ids[0]))).unwrap();
        fs::create_dir(dir.path().join("0190a1b1-0000-7000-8000-000000000000")).unwrap();
        fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let removed = sink.prune(2).unwrap();
        assert_eq!(removed, ids[..2].to_vec());
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            format!(".partial-{}", ids[0]),
            "0190a1b1-0000-7000-8000-000000000000".to_string(),
            ids[2].clone(),
            ids[3].clone(),
            "notes.txt".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        assert!(sink.prune(2).unwrap().is_empty());
    }
}
