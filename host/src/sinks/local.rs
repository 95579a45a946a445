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
}
