//! The catalogs' own tools, installed by `scripts/setup-catalogs` into virtual environments
//! of their own: the real DataHub CLI (`acryl-datahub`: `datahub ingest` runs recipes, and
//! what a DataHub file holds is read back for comparison), and OpenMetadata's generated models
//! (`openmetadata-ingestion`), which `tests/catalogs/openmetadata_validate.py` validates create
//! requests with.
//!
//! Every DataHub run gets a home of its own (`HOME`), telemetry off, so nothing is written
//! outside the test's directory and nothing is sent anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The DataHub CLI version `scripts/setup-catalogs` installs.
pub const VERSION: &str = "1.7.0.17";
/// The openmetadata-ingestion version `scripts/setup-catalogs` installs.
pub const OPENMETADATA_VERSION: &str = "1.13.6.3";

/// The virtual environment `$<var>` names, else `~/.cache/airlock/<default>`; it must hold
/// `bin/<tool>` and the marker of a finished install.
fn venv(var: &str, default: &str, tool: &str) -> PathBuf {
    let venv = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/airlock")
            .join(default)
    });
    assert!(
        venv.join("bin").join(tool).is_file() && venv.join(".installed").exists(),
        "{} is not installed in {}: run ./scripts/setup-catalogs",
        tool,
        venv.display()
    );
    venv
}

/// Validates an OpenMetadata requests file with OpenMetadata's own models (and the server's
/// column rules, and every FQN reference resolving inside the file); returns the validator's
/// output and whether it passed.
pub fn openmetadata_validate(file: &Path) -> (bool, String) {
    let venv = venv(
        "AIRLOCK_OPENMETADATA_VENV",
        &format!("openmetadata-{OPENMETADATA_VERSION}"),
        "python",
    );
    let script = crate::workspace_root().join("tests/catalogs/openmetadata_validate.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(file)
        .arg("--check-refs")
        .output()
        .expect("the OpenMetadata validator runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The DataHub CLI of the test virtual environment.
pub struct Datahub {
    bin: PathBuf,
}

impl Datahub {
    /// Finds the CLI at `$AIRLOCK_DATAHUB_VENV/bin/datahub`, else in
    /// `~/.cache/airlock/datahub-<VERSION>`.
    pub fn find() -> Datahub {
        let venv = venv(
            "AIRLOCK_DATAHUB_VENV",
            &format!("datahub-{VERSION}"),
            "datahub",
        );
        Datahub {
            bin: venv.join("bin/datahub"),
        }
    }

    /// Runs `datahub ingest -c <recipe>` with `home` as its home directory.
    pub fn ingest(&self, recipe: &str, home: &Path) -> Output {
        std::fs::create_dir_all(home).unwrap();
        let path = home.join(format!("recipe-{}.yml", uuid_like()));
        std::fs::write(&path, recipe).unwrap();
        Command::new(&self.bin)
            .arg("ingest")
            .arg("-c")
            .arg(&path)
            .env("HOME", home)
            .env("DATAHUB_TELEMETRY_ENABLED", "false")
            .env("DATAHUB_SUPPRESS_LOGGING_MANAGER", "1")
            .output()
            .expect("datahub runs")
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a DataHub file says: entity URNs by type, and the field paths of each dataset.
#[derive(Debug, Default, PartialEq)]
pub struct Entities {
    /// `entityType` -> URNs.
    pub urns: BTreeMap<String, BTreeSet<String>>,
    /// Dataset URN -> its schemaMetadata field paths, in order.
    pub fields: BTreeMap<String, Vec<String>>,
    /// Dataset URNs whose `status` says removed.
    pub removed: BTreeSet<String>,
}

impl Entities {
    /// Reads a DataHub file: change proposals (`aspect.json`) and snapshots
    /// (`proposedSnapshot`) alike.
    pub fn read(path: &Path) -> Entities {
        let text = std::fs::read_to_string(path).unwrap();
        let records: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a JSON array: {e}", path.display()));
        let mut e = Entities::default();
        for r in records {
            if let Some(snapshot) = r.get("proposedSnapshot") {
                let (kind, body) = snapshot.as_object().unwrap().iter().next().unwrap();
                let urn = body["urn"].as_str().unwrap().to_string();
                let entity = if kind.ends_with("DatasetSnapshot") {
                    "dataset"
                } else {
                    "other"
                };
                e.urns.entry(entity.into()).or_default().insert(urn.clone());
                for aspect in body["aspects"].as_array().unwrap() {
                    let (name, value) = aspect.as_object().unwrap().iter().next().unwrap();
                    if name.ends_with("SchemaMetadata") {
                        e.fields.insert(urn.clone(), field_paths(value));
                    }
                }
                continue;
            }
            let entity = r["entityType"].as_str().unwrap().to_string();
            let urn = r["entityUrn"].as_str().unwrap().to_string();
            let aspect = &r["aspect"]["json"];
            match r["aspectName"].as_str() {
                Some("schemaMetadata") => {
                    e.fields.insert(urn.clone(), field_paths(aspect));
                }
                Some("status") if aspect["removed"] == true => {
                    e.removed.insert(urn.clone());
                }
                _ => {}
            }
            e.urns.entry(entity).or_default().insert(urn);
        }
        e
    }

    /// The URNs of one entity type.
    pub fn of(&self, entity: &str) -> BTreeSet<String> {
        self.urns.get(entity).cloned().unwrap_or_default()
    }
}

fn field_paths(schema: &Value) -> Vec<String> {
    schema["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| f["fieldPath"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}
