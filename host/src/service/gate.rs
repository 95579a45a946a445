//! Publishing a trigger at most once, across retries and workers.
//!
//! Every attempt of one Temporal workflow execution has the same trigger key. Right before it
//! publishes, a run claims the key in the shared state store (an atomic insert): the first
//! claim wins. A later attempt finds the claim and
//! - reports the claimer's run if that run completed (it published; nothing is published
//!   twice),
//! - or takes the claim over (compare-and-set) if the claimer did not complete — it died or
//!   failed between its claim and the end of its publish — so the trigger still publishes
//!   once.
//!
//! A publish that fails after its claim gives the claim back.

use std::sync::Arc;

use crate::run::{PublishGate, RunError};
use crate::state::{PublishClaim, RunRecord, StateStore};

/// The gate of one trigger.
pub struct TriggerGate {
    state: Arc<StateStore>,
    key: String,
}

impl TriggerGate {
    /// The gate for `key` (`temporal:<workflow id>:<run id>`).
    pub fn new(state: Arc<StateStore>, key: String) -> Self {
        TriggerGate { state, key }
    }

    /// The run that published this trigger, if one did.
    pub fn published(&self) -> Result<Option<RunRecord>, String> {
        self.state
            .published_run(&self.key)
            .map_err(|e| format!("state store: {e}"))
    }
}

impl PublishGate for TriggerGate {
    fn claim(&self, run_id: &str) -> Result<(), RunError> {
        let failed = |e: crate::state::StateError| {
            RunError::Runtime(format!("cannot claim the trigger in the state store: {e}"))
        };
        match self
            .state
            .claim_publish(&self.key, run_id)
            .map_err(failed)?
        {
            PublishClaim::Won => Ok(()),
            PublishClaim::Held { run_id: holder, .. } if holder == run_id => Ok(()),
            PublishClaim::Held {
                run_id: holder,
                status,
            } => {
                if status.as_deref() == Some("complete") {
                    return Err(RunError::AlreadyPublished(holder));
                }
                if self
                    .state
                    .take_over_publish(&self.key, &holder, run_id)
                    .map_err(failed)?
                {
                    tracing::warn!(
                        "run {holder} claimed this trigger but did not complete; run {run_id} \
                         publishes in its place"
                    );
                    Ok(())
                } else {
                    // Someone else took it over meanwhile.
                    match self.published() {
                        Ok(Some(run)) => Err(RunError::AlreadyPublished(run.id)),
                        _ => Err(RunError::Runtime(
                            "another attempt claimed this trigger at the same time; this \
                             attempt publishes nothing"
                                .into(),
                        )),
                    }
                }
            }
        }
    }

    fn release(&self, run_id: &str) {
        if let Err(e) = self.state.release_publish(&self.key, run_id) {
            tracing::warn!("cannot give back the claim of run {run_id}: {e}");
        }
    }
}
