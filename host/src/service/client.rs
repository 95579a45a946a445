//! Triggers and schedules: what `airlock trigger` and `airlock schedule` ask Temporal to do.
//! The payload of every start is the workflow id alone.

use futures::StreamExt;
use temporalio_client::schedules::{
    CreateScheduleOptions, ListSchedulesOptions, ScheduleAction, ScheduleOverlapPolicy,
    ScheduleSpec,
};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};

use super::temporal::{AirlockRun, RunOutcome, Trigger};
use super::ServiceError;
use crate::home::Home;

/// A started trigger.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Started {
    /// The Temporal workflow id (`airlock-<workflow id>-<uuid>`).
    pub temporal_workflow_id: String,
    /// The Temporal run id.
    pub temporal_run_id: String,
    /// With `--wait`: what the run did.
    pub outcome: Option<RunOutcome>,
}

/// Checks `workflow_id` is stored in `home`, naming the home when it is not (a trigger for a
/// workflow no worker can load would only fail on the worker).
pub fn check_stored(home: &Home, workflow_id: &str) -> Result<(), ServiceError> {
    home.state().workflow(workflow_id).map(|_| ()).map_err(|e| {
        ServiceError::Config(format!(
            "unknown workflow {workflow_id} in the home {} ({e}); create it with `airlock \
             workflow create` or pass --home",
            home.dir().display()
        ))
    })
}

/// Starts the `airlock-run` workflow for `workflow_id` on `task_queue`; with `wait`, waits for
/// its result.
pub async fn trigger(
    client: &Client,
    task_queue: &str,
    workflow_id: &str,
    wait: bool,
) -> Result<Started, ServiceError> {
    let temporal_id = format!("airlock-{workflow_id}-{}", uuid::Uuid::now_v7());
    let handle = client
        .start_workflow(
            AirlockRun::run,
            Trigger {
                workflow_id: workflow_id.to_string(),
            },
            WorkflowStartOptions::new(task_queue.to_string(), temporal_id.clone()).build(),
        )
        .await
        .map_err(|e| ServiceError::Temporal(format!("cannot start the trigger: {e:#}")))?;
    let run_id = handle.run_id().unwrap_or_default().to_string();
    let outcome = if wait {
        Some(
            handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .map_err(|e| {
                    ServiceError::Temporal(format!(
                        "the trigger {temporal_id} failed: {}",
                        crate::run::redacted(&format!("{e:#}"))
                    ))
                })?,
        )
    } else {
        None
    };
    Ok(Started {
        temporal_workflow_id: temporal_id,
        temporal_run_id: run_id,
        outcome,
    })
}

/// A schedule as `airlock schedule list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleLine {
    /// The schedule id.
    pub id: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Its note (why it was paused).
    pub note: Option<String>,
}

/// Creates a schedule `id` that triggers `workflow_id` on `cron` (a standard five-field cron
/// expression), skipping a time when the previous run is still going.
pub async fn create_schedule(
    client: &Client,
    task_queue: &str,
    id: &str,
    workflow_id: &str,
    cron: &str,
) -> Result<(), ServiceError> {
    if !cron.starts_with('@') && cron.split_whitespace().count() < 5 {
        return Err(ServiceError::Config(format!(
            "--cron `{cron}` is not a cron expression (five fields: minute hour day month \
             weekday, e.g. `*/15 * * * *`, or `@hourly`, `@daily`, `@every 30m`)"
        )));
    }
    let options = CreateScheduleOptions::builder()
        .action(ScheduleAction::start_workflow(
            AirlockRun::run,
            Trigger {
                workflow_id: workflow_id.to_string(),
            },
            task_queue.to_string(),
            format!("airlock-{workflow_id}-scheduled"),
        ))
        .spec(
            ScheduleSpec::builder()
                .cron_strings(vec![cron.to_string()])
                .build(),
        )
        .overlap_policy(ScheduleOverlapPolicy::Skip)
        .build();
    client
        .create_schedule(id, options)
        .await
        .map_err(|e| ServiceError::Temporal(format!("cannot create schedule {id}: {e:#}")))?;
    Ok(())
}

/// The schedules of the namespace that start `airlock-run`.
pub async fn list_schedules(client: &Client) -> Result<Vec<ScheduleLine>, ServiceError> {
    let mut out = Vec::new();
    let mut stream = client.list_schedules(ListSchedulesOptions::default());
    while let Some(entry) = stream.next().await {
        let entry =
            entry.map_err(|e| ServiceError::Temporal(format!("cannot list schedules: {e:#}")))?;
        if entry
            .workflow_type()
            .is_some_and(|t| t != super::temporal::WORKFLOW_TYPE)
        {
            continue;
        }
        // The listing comes from the visibility store, which lags behind a pause: the
        // state shown is read from the schedule itself.
        // (If it cannot be described, e.g. deleted in between, the listing's state is shown.)
        let id = entry.schedule_id().to_string();
        let (paused, note) = match client
            .get_schedule_handle(&id)
            .describe(Default::default())
            .await
        {
            Ok(d) => (d.paused(), d.note().map(str::to_string)),
            Err(_) => (entry.paused(), entry.note().map(str::to_string)),
        };
        out.push(ScheduleLine { id, paused, note });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Pauses (or with `resume`, unpauses) schedule `id`.
pub async fn pause_schedule(client: &Client, id: &str, resume: bool) -> Result<(), ServiceError> {
    let handle = client.get_schedule_handle(id);
    let result = if resume {
        handle
            .unpause(
                Some("resumed with airlock schedule pause --resume"),
                Default::default(),
            )
            .await
    } else {
        handle
            .pause(
                Some("paused with airlock schedule pause"),
                Default::default(),
            )
            .await
    };
    result.map_err(|e| ServiceError::Temporal(format!("schedule {id}: {e:#}")))
}

/// Deletes schedule `id`.
pub async fn delete_schedule(client: &Client, id: &str) -> Result<(), ServiceError> {
    client
        .get_schedule_handle(id)
        .delete(Default::default())
        .await
        .map_err(|e| ServiceError::Temporal(format!("schedule {id}: {e:#}")))
}
