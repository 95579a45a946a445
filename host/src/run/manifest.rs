//! What the manifest of a run carries beyond the pipeline's counts: the plugin's warnings,
//! bounded, and (for a preview) the first assets of each kind.

use std::path::Path;

use super::redacted;
use crate::capabilities::log::clean_line;
use crate::pipeline::manifest::Manifest;

/// Plugin warnings kept in the manifest: at most this many ...
pub(super) const MAX_PLUGIN_WARNINGS: usize = 100;
/// ... of at most this many characters each ...
pub(super) const MAX_WARNING_CHARS: usize = 512;
/// ... and this many bytes in all.
pub(super) const MAX_PLUGIN_WARNING_BYTES: usize = 32 << 10;

/// The plugin's warnings as the manifest carries them: control characters replaced, redacted,
/// a warning naming an asset the filters dropped withheld (`dropped`), each clipped, and
/// capped in number and bytes, with closing lines counting what was withheld. (The manifest
/// is then scanned for secrets like every asset.)
pub(super) fn plugin_warnings(
    warnings: &[String],
    dropped: &crate::pipeline::DroppedNames,
) -> Vec<String> {
    let mut kept = Vec::new();
    let mut bytes = 0usize;
    let mut naming_dropped = 0usize;
    let mut withheld = 0usize;
    for w in warnings {
        if kept.len() == MAX_PLUGIN_WARNINGS || bytes >= MAX_PLUGIN_WARNING_BYTES {
            // Past the caps the rest is only counted (not even read).
            withheld += 1;
            continue;
        }
        let mut line = redacted(&clean_line(w));
        if dropped.withholds(&line) || dropped.withholds(w) {
            naming_dropped += 1;
            continue;
        }
        if line.chars().count() > MAX_WARNING_CHARS {
            line = line.chars().take(MAX_WARNING_CHARS).collect::<String>() + "…";
        }
        if bytes + line.len() > MAX_PLUGIN_WARNING_BYTES {
            bytes = MAX_PLUGIN_WARNING_BYTES;
            withheld += 1;
            continue;
        }
        bytes += line.len();
        kept.push(line);
    }
    if naming_dropped > 0 {
        kept.push(format!(
            "{naming_dropped} plugin warnings withheld: they name assets the filters dropped"
        ));
    }
    if withheld > 0 {
        kept.push(format!(
            "{withheld} more plugin warnings withheld (the manifest keeps at most \
             {MAX_PLUGIN_WARNINGS} warnings of {MAX_WARNING_CHARS} characters, \
             {} KiB in all)",
            MAX_PLUGIN_WARNING_BYTES >> 10
        ));
    }
    kept
}

/// The first `n` lines of each spooled file, as JSON.
pub(super) fn read_samples(
    dir: &Path,
    manifest: &Manifest,
    n: usize,
) -> std::io::Result<std::collections::BTreeMap<String, Vec<serde_json::Value>>> {
    use std::io::BufRead;
    let mut out = std::collections::BTreeMap::new();
    for f in &manifest.files {
        let file = std::io::BufReader::new(std::fs::File::open(dir.join(&f.path))?);
        let mut lines = Vec::new();
        for line in file.lines().take(n) {
            lines.push(serde_json::from_str(&line?).map_err(std::io::Error::other)?);
        }
        out.insert(f.kind.clone(), lines);
    }
    Ok(out)
}
