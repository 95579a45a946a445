//! `airlock worker`: polls a Temporal task queue and runs triggered workflows, a bounded
//! number at once, serving its health and metrics; SIGTERM stops polling, lets running runs
//! finish within a grace period, then cancels them (a cancelled run publishes nothing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use temporalio_sdk::{Worker, WorkerOptions};

use super::health::{Metrics, Readiness};
use super::temporal::{connect, AirlockRun, RunActivities, Shared, TemporalArgs};
use super::ServiceError;
use crate::home::Home;
use crate::run::PluginDir;
use crate::runtime::Runtime;

/// `airlock worker` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub temporal: TemporalArgs,
    /// Runs this worker runs at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub max_concurrent: u16,
    /// Serve /healthz, /readyz and /metrics here.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// After SIGTERM, how long running runs may take to finish before they are cancelled.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub shutdown_grace_s: u64,
    /// Directory to look up plugin names in (default: $AIRLOCK_PLUGIN_DIR, then
    /// ~/.local/share/airlock/plugins).
    #[arg(long)]
    pub plugin_dir: Option<PathBuf>,
}

struct Ready {
    client: temporalio_client::Client,
    address: String,
    namespace: String,
    shared: Arc<Shared>,
    plugin_dirs: Vec<PathBuf>,
}

impl Readiness for Ready {
    fn check(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            self.shared
                .home
                .state()
                .workflows()
                .map_err(|e| format!("the state store: {e}"))?;
            if !self.plugin_dirs.iter().any(|d| d.is_dir()) {
                return Err(format!(
                    "no plugin directory exists ({})",
                    self.plugin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            // DescribeNamespace is answered from the frontend's cache: it says that Temporal
            // answers and that the namespace exists, without a query on the visibility store
            // (slow on a loaded server, and not what readiness is about).
            use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
            let request = DescribeNamespaceRequest {
                namespace: self.namespace.clone(),
                ..Default::default()
            };
            let mut service = self.client.connection().workflow_service();
            // The client retries a lost connection on its own: bound the wait, so that a
            // Temporal that is down reads as "not ready" rather than as a slow answer.
            match tokio::time::timeout(
                Duration::from_secs(3),
                service.describe_namespace(temporalio_client::tonic::Request::new(request)),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("Temporal at {}: {e}", self.address)),
                Err(_) => Err(format!(
                    "Temporal at {} did not answer within 3 s",
                    self.address
                )),
            }
        })
    }
}

/// Runs a worker until SIGTERM or SIGINT.
pub async fn run(
    args: &WorkerArgs,
    home: Home,
    runtime: Runtime,
    plugins: PluginDir,
) -> Result<(), ServiceError> {
    let client = connect(&args.temporal, Some(&home)).await?;
    let slots = args.max_concurrent as usize;
    let metrics = Arc::new(Metrics::new(slots));
    let plugin_dirs = plugins.0.clone();
    let shared = Arc::new(Shared {
        home,
        runtime: Arc::new(runtime),
        plugins,
        running: AtomicU64::new(0),
        metrics: metrics.clone(),
    });
    let draining = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Ready {
        client: client.clone(),
        address: args.temporal.temporal_address.clone(),
        namespace: args.temporal.namespace.clone(),
        shared: shared.clone(),
        plugin_dirs,
    });
    let bound = super::health::serve(args.listen, metrics.clone(), ready, draining.clone())
        .await
        .map_err(|e| ServiceError::Config(format!("--listen {}: {e}", args.listen)))?;
    tracing::info!(
        task_queue = %args.temporal.task_queue,
        namespace = %args.temporal.namespace,
        temporal = %args.temporal.temporal_address,
        slots,
        "airlock worker: health and metrics on http://{bound}"
    );

    let sdk_runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
        .map_err(|e| ServiceError::Temporal(format!("cannot start the Temporal runtime: {e:#}")))?;
    let options = WorkerOptions::new(args.temporal.task_queue.clone())
        .register_workflow::<AirlockRun>()
        .map_err(|e| ServiceError::Temporal(format!("{e:#}")))?
        .register_activities(RunActivities::new(shared.clone()))
        .tuner({
            use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
            TunerHolder::builder()
                .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(slots * 2))
                .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
                .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .build()
        })
        .graceful_shutdown_period(Duration::from_secs(args.shutdown_grace_s))
        .build();
    let mut worker = Worker::new(&sdk_runtime, client, options)
        .map_err(|e| ServiceError::Temporal(format!("cannot create the worker: {e:#}")))?;
    let shutdown = worker.shutdown_handle();
    let grace = args.shutdown_grace_s;
    tokio::spawn(async move {
        wait_for_termination().await;
        draining.store(true, Ordering::Relaxed);
        tracing::info!(
            "airlock worker: stopping: no new runs; running runs have {grace} s to finish"
        );
        shutdown();
    });
    worker
        .run()
        .await
        .map_err(|e| ServiceError::Temporal(format!("the worker stopped: {e:#}")))?;
    tracing::info!("airlock worker: stopped");
    Ok(())
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
