//! The worker's endpoints: `/healthz` (the process is alive), `/readyz` (Temporal, the state
//! store and the plugin directory are reachable, and the worker is not shutting down) and
//! `/metrics` (Prometheus text format, `prometheus-client`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::run::RunReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResolutionLabel {
    backend: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabel {
    action: String,
    outcome: String,
}

/// What a worker counts.
pub struct Metrics {
    registry: Mutex<Registry>,
    runs: Family<OutcomeLabel, Counter>,
    duration: Histogram,
    assets: Family<KindLabel, Counter>,
    dropped: Family<KindLabel, Counter>,
    bytes: Counter,
    secrets_withheld: Counter,
    plugin_memory: Histogram,
    plugin_cpu: Histogram,
    audit: Family<AuditLabel, Counter>,
    resolutions: Family<ResolutionLabel, Counter>,
    slots_in_use: Gauge<i64, AtomicI64>,
    slots: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// Empty metrics for a worker of `slots` concurrent runs.
    pub fn new(slots: usize) -> Self {
        let runs = Family::<OutcomeLabel, Counter>::default();
        let duration = Histogram::new([
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        ]);
        let assets = Family::<KindLabel, Counter>::default();
        let dropped = Family::<KindLabel, Counter>::default();
        let bytes = Counter::default();
        let secrets_withheld = Counter::default();
        let plugin_memory = Histogram::new(
            [1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0].map(|mb| mb * 1048576.0),
        );
        let plugin_cpu = Histogram::new([0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 1800.0]);
        let audit = Family::<AuditLabel, Counter>::default();
        let resolutions = Family::<ResolutionLabel, Counter>::default();
        let slots_in_use = Gauge::<i64, AtomicI64>::default();
        let slots_gauge = Gauge::<i64, AtomicI64>::default();
        slots_gauge.set(slots as i64);
        let mut registry = Registry::with_prefix("airlock");
        registry.register(
            "runs",
            "Runs finished by this worker, by outcome (complete, already-published, cancelled, or the error kind)",
            runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Wall time of runs on this worker",
            duration.clone(),
        );
        registry.register(
            "assets_published",
            "Assets published, by kind",
            assets.clone(),
        );
        registry.register(
            "assets_dropped_by_filter",
            "Assets the filters dropped, by kind",
            dropped.clone(),
        );
        registry.register(
            "published_bytes",
            "Bytes of assets published",
            bytes.clone(),
        );
        registry.register(
            "secrets_withheld",
            "Secrets a source sent back, withheld from plugins",
            secrets_withheld.clone(),
        );
        registry.register(
            "plugin_peak_memory_bytes",
            "Largest linear memory a plugin grew to, per published run",
            plugin_memory.clone(),
        );
        registry.register(
            "plugin_cpu_seconds",
            "CPU time a plugin computed, per published run",
            plugin_cpu.clone(),
        );
        registry.register(
            "audit_events",
            "Audit events of this worker's runs by action and outcome: secret resolutions \
             (resolve), logins, network and SQL denials, reflected secrets, plugin checks",
            audit.clone(),
        );
        registry.register(
            "secret_resolutions",
            "Secrets read from their backend for this worker's runs and its own client \
             certificate, by backend and outcome (ok, not-found, denied, unavailable, invalid)",
            resolutions.clone(),
        );
        registry.register(
            "worker_slots_in_use",
            "Runs in progress on this worker",
            slots_in_use.clone(),
        );
        registry.register(
            "worker_slots",
            "Runs this worker may run at once",
            slots_gauge.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            runs,
            duration,
            assets,
            dropped,
            bytes,
            secrets_withheld,
            plugin_memory,
            plugin_cpu,
            audit,
            resolutions,
            slots_in_use,
            slots: slots_gauge,
        }
    }

    /// A run started.
    pub fn run_started(&self) {
        self.slots_in_use.inc();
    }

    /// A run ended with `outcome` (it published nothing).
    pub fn run_finished(&self, outcome: &str, took: Option<Duration>) {
        self.slots_in_use.dec();
        self.runs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        if let Some(t) = took {
            self.duration.observe(t.as_secs_f64());
        }
    }

    /// A run published.
    pub fn run_published(&self, report: &RunReport, took: Duration) {
        self.run_finished("complete", Some(took));
        for (kind, c) in &report.manifest.counts {
            let label = KindLabel { kind: kind.clone() };
            self.assets.get_or_create(&label).inc_by(c.kept);
            self.dropped.get_or_create(&label).inc_by(c.dropped_filter);
        }
        let bytes: u64 = report.manifest.files.iter().map(|f| f.bytes).sum();
        self.bytes.inc_by(bytes);
        self.secrets_withheld
            .inc_by(report.manifest.secrets_withheld);
        self.plugin_memory
            .observe(report.plugin_usage.peak_memory_bytes as f64);
        self.plugin_cpu
            .observe(report.plugin_usage.cpu_ms as f64 / 1000.0);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        for ((action, outcome), n) in crate::state::audit_event_counts() {
            let counter = self.audit.get_or_create(&AuditLabel { action, outcome });
            let seen = counter.get();
            if n > seen {
                counter.inc_by(n - seen);
            }
        }
        for ((backend, outcome), n) in crate::secrets::resolution_counts() {
            let counter = self.resolutions.get_or_create(&ResolutionLabel {
                backend: backend.to_string(),
                outcome: outcome.to_string(),
            });
            let seen = counter.get();
            if n > seen {
                counter.inc_by(n - seen);
            }
        }
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }

    /// Runs this worker may run at once.
    pub fn slots(&self) -> i64 {
        self.slots.get()
    }
}

/// Whether the worker is ready, checked when `/readyz` is asked.
pub trait Readiness: Send + Sync {
    /// `Ok` or what is not ready.
    fn check(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
}

/// Serves the endpoints on `addr` for as long as the process runs; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<dyn Readiness>,
    draining: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Request, Response, StatusCode};

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, ready, draining) = (metrics.clone(), ready.clone(), draining.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (metrics, ready, draining) =
                            (metrics.clone(), ready.clone(), draining.clone());
                        async move {
                            let (status, content_type, body) = match (
                                req.method().as_str(),
                                req.uri().path(),
                            ) {
                                ("GET", "/healthz") => {
                                    (StatusCode::OK, "text/plain", "ok\n".to_string())
                                }
                                ("GET", "/readyz") if draining.load(Ordering::Relaxed) => (
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "text/plain",
                                    "not ready: shutting down\n".to_string(),
                                ),
                                ("GET", "/readyz") => match tokio::time::timeout(
                                    Duration::from_secs(5),
                                    ready.check(),
                                )
                                .await
                                {
                                    Ok(Ok(())) => {
                                        (StatusCode::OK, "text/plain", "ready\n".to_string())
                                    }
                                    Ok(Err(why)) => (
                                        StatusCode::SERVICE_UNAVAILABLE,
                                        "text/plain",
                                        format!("not ready: {why}\n"),
                                    ),
                                    Err(_) => (
                                        StatusCode::SERVICE_UNAVAILABLE,
                                        "text/plain",
                                        "not ready: the checks did not answer within 5 s\n"
                                            .to_string(),
                                    ),
                                },
                                ("GET", "/metrics") => (
                                    StatusCode::OK,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                    metrics.encode(),
                                ),
                                _ => (
                                    StatusCode::NOT_FOUND,
                                    "text/plain",
                                    "not found\n".to_string(),
                                ),
                            };
                            Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(body)))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(bound)
}
