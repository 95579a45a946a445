//! airlock as a service: a Temporal worker that runs stored workflows on triggers and
//! schedules, sharing the home's state store with other workers.
//!
//! A trigger carries only `{"workflow_id": "..."}`. The Temporal workflow `airlock-run`
//! ([`temporal::AirlockRun`]) runs one activity, `airlock-run-workflow`, which calls the same
//! run as `airlock run --workflow` ([`crate::run::run_workflow_gated`]): load the workflow from
//! the state store, verify the plugin, extract with heartbeats carrying progress, publish.
//! A retried attempt (on this worker or another) publishes at most once: right before
//! publishing, the run claims the trigger in the state store ([`gate::TriggerGate`]); an
//! attempt that finds the trigger already published returns that run. Cancelling the Temporal
//! workflow cancels the activity, which drops the run: nothing is published.

pub mod client;
pub mod gate;
pub mod health;
pub mod temporal;
pub mod worker;

/// Why a service command failed. Messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A flag or setting is wrong; the message names it.
    #[error("{0}")]
    Config(String),
    /// Temporal could not be reached or refused the request.
    #[error("{0}")]
    Temporal(String),
    /// The home or its state store failed.
    #[error("{0}")]
    Home(String),
}

impl ServiceError {
    /// Exit code of the CLI: 2 for usage and configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceError::Config(_) => 2,
            _ => 1,
        }
    }

    /// A stable machine-readable kind, for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceError::Config(_) => "config",
            ServiceError::Temporal(_) => "temporal",
            ServiceError::Home(_) => "home",
        }
    }
}
