//! The Temporal side: connecting, the `airlock-run` workflow and its one activity.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use super::gate::TriggerGate;
use super::ServiceError;
use crate::home::Home;
use crate::run::{PluginDir, RunError, RunObserver};
use crate::runtime::Runtime;

/// The name of the workflow type every trigger and schedule starts.
pub const WORKFLOW_TYPE: &str = "airlock-run";
/// The name of the activity that runs a stored workflow.
pub const ACTIVITY_TYPE: &str = "airlock-run-workflow";
/// How often a running activity heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// After this long without a heartbeat Temporal gives the activity to another worker.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of one trigger before the Temporal workflow fails.
pub const MAX_ATTEMPTS: u32 = 3;

/// Where Temporal is and how to reach it (the `worker`, `trigger` and `schedule` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct TemporalArgs {
    /// The Temporal frontend, `host:port`.
    #[arg(
        long,
        env = "AIRLOCK_TEMPORAL_ADDRESS",
        default_value = "127.0.0.1:7233",
        value_name = "HOST:PORT"
    )]
    pub temporal_address: String,
    /// The Temporal namespace.
    #[arg(long, env = "AIRLOCK_TEMPORAL_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// The task queue the workers poll and triggers start on.
    #[arg(long, env = "AIRLOCK_TEMPORAL_TASK_QUEUE", default_value = "airlock")]
    pub task_queue: String,
    /// Connect with TLS, trusting this PEM file of CA certificates (besides the system roots).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Connect with TLS and present this client certificate: the GUID of a credential whose
    /// secret is the PEM certificate chain followed by its private key, with the Temporal
    /// address among its destinations.
    #[arg(long, value_name = "GUID")]
    pub tls_client_cert: Option<String>,
    /// Connect with TLS (implied by --tls-ca and --tls-client-cert).
    #[arg(long)]
    pub tls: bool,
}

/// What a trigger carries: the id of a stored workflow, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// A workflow stored with `airlock workflow create`.
    pub workflow_id: String,
}

/// What a finished trigger reports (no secret, no asset, only where the run went).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The run that published.
    pub run_id: String,
    /// Where it was published.
    pub output: String,
    /// Assets published.
    pub assets: u64,
    /// Whether an earlier attempt had published it already (this attempt published nothing).
    pub already_published: bool,
}

/// Connects to Temporal as `args` say; a client certificate is resolved from the home's
/// secret store (audited) and registered with the redactor.
pub async fn connect(args: &TemporalArgs, home: Option<&Home>) -> Result<Client, ServiceError> {
    let tls = args.tls || args.tls_ca.is_some() || args.tls_client_cert.is_some();
    let scheme = if tls { "https" } else { "http" };
    let url = Url::from_str(&format!("{scheme}://{}", args.temporal_address)).map_err(|e| {
        ServiceError::Config(format!(
            "--temporal-address `{}` is not HOST:PORT: {e}",
            args.temporal_address
        ))
    })?;
    let mut options = ConnectionOptions::new(url)
        .identity(format!(
            "airlock-{}@{}",
            std::process::id(),
            hostname().unwrap_or_else(|| "localhost".into())
        ))
        .connect_timeout(Duration::from_secs(10))
        .build();
    if tls {
        let mut t = temporalio_client::TlsOptions::default();
        if let Some(ca) = &args.tls_ca {
            t.server_root_ca_cert =
                Some(std::fs::read(ca).map_err(|e| {
                    ServiceError::Config(format!("--tls-ca {}: {e}", ca.display()))
                })?);
        }
        if let Some(guid) = &args.tls_client_cert {
            let Some(home) = home else {
                return Err(ServiceError::Config(
                    "--tls-client-cert needs an airlock home (the secret store holds the key)"
                        .into(),
                ));
            };
            let audit =
                crate::state::RunAudit::new(Some(home.state().clone()), "temporal", None, None);
            let usage = crate::home::CredentialUse {
                guid,
                setting: "--tls-client-cert",
                destination: Some(&args.temporal_address),
                purpose: "Temporal client certificate",
            };
            let (_, pem) = home
                .resolve_for(&usage, &audit, None, |_| Ok(()))
                .await
                .map_err(|e| ServiceError::Config(e.to_string()))?;
            let (cert, key) = split_pem(pem.expose()).ok_or_else(|| {
                ServiceError::Config(format!(
                    "the secret of --tls-client-cert credential {guid} must be the PEM \
                     certificate chain followed by its PEM private key"
                ))
            })?;
            t.client_tls_options = Some(
                temporalio_client::ClientTlsOptions::builder()
                    .client_cert(cert.into_bytes())
                    .client_private_key(key.into_bytes())
                    .build(),
            );
        }
        options.tls_options = Some(t);
    }
    let connection = Connection::connect(options).await.map_err(|e| {
        let check = if tls {
            "check --temporal-address, that the server is up, that --tls-ca holds the CA of \
             the server's certificate and that the server accepts the --tls-client-cert \
             certificate"
        } else {
            "check --temporal-address and that the server is up (with --tls if it expects TLS)"
        };
        ServiceError::Temporal(format!(
            "cannot connect to Temporal at {}: {}; {check}",
            args.temporal_address,
            redacted(&format!("{e:#}"))
        ))
    })?;
    Client::new(
        connection,
        ClientOptions::new(args.namespace.clone()).build(),
    )
    .map_err(|e| ServiceError::Temporal(format!("cannot use namespace {}: {e:#}", args.namespace)))
}

/// Certificates and the private key of a PEM bundle, each as PEM text.
fn split_pem(pem: &str) -> Option<(String, String)> {
    let (mut certs, mut key) = (String::new(), String::new());
    let mut current: Option<&mut String> = None;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(if line.contains("PRIVATE KEY") {
                &mut key
            } else {
                &mut certs
            });
        }
        if let Some(buf) = current.as_deref_mut() {
            buf.push_str(line);
            buf.push('\n');
        }
        if line.starts_with("-----END ") {
            current = None;
        }
    }
    (!certs.is_empty() && !key.is_empty()).then_some((certs, key))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn redacted(text: &str) -> String {
    crate::secrets::redact::Redactor::global()
        .redact(text)
        .into_owned()
}

/// The Temporal workflow every trigger starts: it runs the stored workflow as one activity,
/// retried on any worker, heartbeating.
#[workflow]
#[derive(Default)]
pub struct AirlockRun;

#[workflow_methods]
impl AirlockRun {
    /// Runs the stored workflow `trigger.workflow_id` once.
    #[run(name = "airlock-run")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        trigger: Trigger,
    ) -> WorkflowResult<RunOutcome> {
        let options = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(24 * 3600))
            .heartbeat_timeout(HEARTBEAT_TIMEOUT)
            .retry_policy(
                temporalio_common::RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(1))
                    .maximum_interval(Duration::from_secs(30))
                    .maximum_attempts(MAX_ATTEMPTS)
                    .non_retryable_error_types(["airlock-config"])
                    .build(),
            )
            .build();
        Ok(ctx
            .execute_activity(RunActivities::run_workflow, trigger, options)
            .await?)
    }
}

/// What every activity of a worker shares.
pub struct Shared {
    /// The home: state store (shared with other workers) and secret stores.
    pub home: Home,
    /// The sandbox runtime.
    pub runtime: Arc<Runtime>,
    /// Where plugins are found.
    pub plugins: PluginDir,
    /// Runs in progress on this worker (for `/metrics` and the shutdown).
    pub running: AtomicU64,
    /// What this worker did (for `/metrics`).
    pub metrics: Arc<super::health::Metrics>,
}

/// The activities of an airlock worker.
pub struct RunActivities {
    shared: Arc<Shared>,
}

impl RunActivities {
    /// The activities over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        RunActivities { shared }
    }
}

#[activities]
impl RunActivities {
    /// Runs the stored workflow of `trigger`, as `airlock run --workflow` does, publishing at
    /// most once per trigger however often it is retried.
    #[activity(name = "airlock-run-workflow")]
    pub async fn run_workflow(
        self: Arc<Self>,
        ctx: ActivityContext,
        trigger: Trigger,
    ) -> Result<RunOutcome, ActivityError> {
        let shared = self.shared.clone();
        shared.running.fetch_add(1, Ordering::Relaxed);
        shared.metrics.run_started();
        let started = std::time::Instant::now();
        let (result, recorded) = run_one(&shared, &ctx, &trigger).await;
        match recorded {
            Recorded::Published(report) => shared.metrics.run_published(&report, started.elapsed()),
            Recorded::Outcome(outcome) => shared
                .metrics
                .run_finished(&outcome, Some(started.elapsed())),
        }
        shared.running.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

/// Progress a run reports, sent with every heartbeat.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    phase: AtomicU64,
}

impl RunObserver for Progress {
    fn phase(&self, phase: crate::run::Phase) {
        self.phase.store(phase as u64, Ordering::Relaxed);
    }
    fn progress(&self, done: u64, _total: Option<u64>) {
        self.done.store(done, Ordering::Relaxed);
    }
}

/// What a heartbeat carries: the phase and the plugin's progress, nothing else.
#[derive(Debug, Serialize)]
struct Heartbeat {
    phase: &'static str,
    done: u64,
}

/// What the metrics learn of an attempt.
enum Recorded {
    Published(Box<crate::run::RunReport>),
    Outcome(String),
}

async fn run_one(
    shared: &Arc<Shared>,
    ctx: &ActivityContext,
    trigger: &Trigger,
) -> (Result<RunOutcome, ActivityError>, Recorded) {
    let outcome = |o: &str| Recorded::Outcome(o.to_string());
    let info = ctx.info();
    let key = format!(
        "temporal:{}:{}",
        info.workflow_id.as_deref().unwrap_or(""),
        info.workflow_run_id.as_deref().unwrap_or("")
    );
    let gate = TriggerGate::new(shared.home.state().clone(), key);
    // A retried attempt whose predecessor published already reports that run.
    match gate.published() {
        Ok(Some(run)) => {
            return (
                Ok(RunOutcome {
                    run_id: run.id,
                    output: run.output.unwrap_or_default(),
                    assets: 0,
                    already_published: true,
                }),
                outcome("already-published"),
            )
        }
        Ok(None) => {}
        Err(e) => return (Err(retryable(&e)), outcome("state-store")),
    }
    let cfg = match shared.home.load_workflow(&trigger.workflow_id) {
        Ok(cfg) => cfg,
        Err(e) => {
            return (
                Err(non_retryable(&format!(
                    "workflow {}: {e}",
                    trigger.workflow_id
                ))),
                outcome("config"),
            )
        }
    };
    let progress = Arc::new(Progress::default());
    let stop = crate::run::Stop::new();
    let run = crate::run::run_workflow_gated(
        &shared.runtime,
        &cfg,
        &shared.plugins,
        progress.clone(),
        Some(&shared.home),
        Some(&gate),
        stop.clone(),
    );
    tokio::pin!(run);
    let heartbeats = async {
        loop {
            let phase = match progress.phase.load(Ordering::Relaxed) {
                0 => "loading",
                1 => "extracting",
                _ => "publishing",
            };
            let beat = Heartbeat {
                phase,
                done: progress.done.load(Ordering::Relaxed),
            };
            let _ = ctx
                .record_heartbeat(serde_json::to_value(&beat).unwrap_or_default())
                .await;
            tokio::time::sleep(HEARTBEAT_EVERY).await;
        }
    };
    let result = tokio::select! {
        r = &mut run => r,
        _ = heartbeats => unreachable!("the heartbeat loop never ends"),
        _ = ctx.cancelled() => {
            // A run still before publishing stops where it is and publishes nothing; it keeps
            // its log and is recorded as interrupted before the activity reports the
            // cancellation. A run already publishing finishes, and is reported as published.
            stop.stop("Temporal cancelled the activity (the workflow was cancelled or the worker is shutting down)");
            match run.await {
                Err(RunError::Interrupted(_)) => {
                    return (Err(ActivityError::cancelled()), outcome("cancelled"))
                }
                other => other,
            }
        }
    };
    match result {
        Ok(report) => (
            Ok(RunOutcome {
                run_id: report.manifest.run_id.clone(),
                output: report.output_dir.display().to_string(),
                assets: report.manifest.totals.kept,
                already_published: false,
            }),
            Recorded::Published(Box::new(report)),
        ),
        Err(RunError::AlreadyPublished(run_id)) => {
            let output = gate
                .published()
                .ok()
                .flatten()
                .and_then(|r| r.output)
                .unwrap_or_default();
            (
                Ok(RunOutcome {
                    run_id,
                    output,
                    assets: 0,
                    already_published: true,
                }),
                outcome("already-published"),
            )
        }
        Err(e) => {
            let message = format!("{}: {}", e.kind(), redacted(&e.to_string()));
            let error = if e.exit_code() == 2 {
                non_retryable(&message)
            } else {
                retryable(&message)
            };
            (Err(error), outcome(e.kind()))
        }
    }
}

fn non_retryable(message: &str) -> ActivityError {
    ActivityError::application(
        temporalio_sdk::ApplicationFailure::builder(redacted(message))
            .type_name("airlock-config".to_string())
            .non_retryable(true)
            .build(),
    )
}

fn retryable(message: &str) -> ActivityError {
    ActivityError::application(temporalio_sdk::ApplicationFailure::new(redacted(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_splits_into_certificates_and_key() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nKKK\n-----END PRIVATE KEY-----\n";
        let (certs, key) = split_pem(pem).unwrap();
        assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(key.contains("KKK") && !key.contains("AAA"));
        assert!(
            split_pem("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n").is_none()
        );
    }

    #[test]
    fn a_trigger_is_the_workflow_id_alone() {
        let t: Trigger = serde_json::from_str(r#"{"workflow_id":"wf-1"}"#).unwrap();
        assert_eq!(t.workflow_id, "wf-1");
        assert!(serde_json::from_str::<Trigger>(r#"{"workflow_id":"a","extra":1}"#).is_err());
    }
}
