//! `airlock worker`, `airlock trigger` and `airlock schedule`.

use std::path::Path;

use clap::{Args, Subcommand};

use crate::run::PluginDir;
use crate::service::temporal::{connect, TemporalArgs};
use crate::service::worker::WorkerArgs;
use crate::service::{client, ServiceError};

/// `airlock trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    #[command(flatten)]
    temporal: TemporalArgs,
    /// The stored workflow to run (the trigger's only payload).
    #[arg(long, value_name = "ID")]
    workflow: String,
    /// Wait for the run to finish and print where it was published.
    #[arg(long)]
    wait: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// `airlock schedule`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a Temporal Schedule that triggers a stored workflow on a cron expression
    /// (overlap policy "skip": a time is skipped while the previous run is still going).
    Create {
        #[command(flatten)]
        temporal: TemporalArgs,
        /// The stored workflow to run.
        #[arg(long, value_name = "ID")]
        workflow: String,
        /// Cron expression (UTC): five fields, e.g. `0 3 * * *`, or `@daily`, `@every 30m`.
        #[arg(long, value_name = "EXPR")]
        cron: String,
        /// The schedule's id [default: airlock-<workflow id>].
        #[arg(long)]
        id: Option<String>,
    },
    /// List the schedules that trigger airlock runs.
    List {
        #[command(flatten)]
        temporal: TemporalArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule (or resume it with --resume).
    Pause {
        #[command(flatten)]
        temporal: TemporalArgs,
        /// The schedule's id.
        id: String,
        /// Resume instead.
        #[arg(long)]
        resume: bool,
    },
    /// Delete a schedule.
    Delete {
        #[command(flatten)]
        temporal: TemporalArgs,
        /// The schedule's id.
        id: String,
    },
}

fn fail(e: &ServiceError, json: bool) -> i32 {
    if json {
        println!(
            "{}",
            serde_json::json!({ "status": "failed", "error": { "kind": e.kind(), "message": e.to_string() } })
        );
    }
    eprintln!("error: {}", crate::run::redacted(&e.to_string()));
    e.exit_code()
}

/// `airlock worker`.
pub async fn worker(args: &WorkerArgs, home_dir: &Path) -> i32 {
    let home = match super::open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let runtime = match super::runtime(false) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let plugins = match &args.plugin_dir {
        Some(d) => PluginDir::single(d.clone()),
        None => PluginDir::from_env(),
    };
    match crate::service::worker::run(args, home, runtime, plugins).await {
        Ok(()) => 0,
        Err(e) => fail(&e, false),
    }
}

/// `airlock trigger`.
pub async fn trigger(args: &TriggerArgs, home_dir: &Path) -> i32 {
    let home = match super::open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    if let Err(e) = client::check_stored(&home, &args.workflow) {
        return fail(&e, args.json);
    }
    let result = async {
        let c = connect(&args.temporal, Some(&home)).await?;
        client::trigger(&c, &args.temporal.task_queue, &args.workflow, args.wait).await
    }
    .await;
    match result {
        Ok(started) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(
                        &serde_json::json!({ "status": "started", "trigger": started })
                    )
                    .unwrap_or_default()
                );
            } else {
                println!(
                    "triggered workflow {} as Temporal workflow {} (run {})",
                    args.workflow, started.temporal_workflow_id, started.temporal_run_id
                );
                if let Some(o) = &started.outcome {
                    if o.already_published {
                        println!("run {} had already published to {}", o.run_id, o.output);
                    } else {
                        println!(
                            "run {} published {} assets to {}",
                            o.run_id, o.assets, o.output
                        );
                    }
                }
            }
            0
        }
        Err(e) => fail(&e, args.json),
    }
}

/// `airlock schedule ...`.
pub async fn schedule(cmd: &ScheduleCommand, home_dir: &Path) -> i32 {
    let home = match super::open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let (temporal, json) = match cmd {
        ScheduleCommand::Create { temporal, .. }
        | ScheduleCommand::Pause { temporal, .. }
        | ScheduleCommand::Delete { temporal, .. } => (temporal, false),
        ScheduleCommand::List { temporal, json } => (temporal, *json),
    };
    if let ScheduleCommand::Create { workflow, .. } = cmd {
        if let Err(e) = client::check_stored(&home, workflow) {
            return fail(&e, json);
        }
    }
    let c = match connect(temporal, Some(&home)).await {
        Ok(c) => c,
        Err(e) => return fail(&e, json),
    };
    let result = match cmd {
        ScheduleCommand::Create {
            workflow, cron, id, ..
        } => {
            let id = id.clone().unwrap_or_else(|| format!("airlock-{workflow}"));
            client::create_schedule(&c, &temporal.task_queue, &id, workflow, cron)
                .await
                .map(|()| println!("schedule {id} triggers workflow {workflow} on `{cron}`"))
        }
        ScheduleCommand::List { .. } => client::list_schedules(&c).await.map(|lines| {
            if json {
                println!("{}", serde_json::to_string(&lines).unwrap_or_default());
            } else if lines.is_empty() {
                println!("no schedules");
            } else {
                for l in lines {
                    println!(
                        "{}\t{}{}",
                        l.id,
                        if l.paused { "paused" } else { "active" },
                        l.note.map(|n| format!("\t{n}")).unwrap_or_default()
                    );
                }
            }
        }),
        ScheduleCommand::Pause { id, resume, .. } => {
            client::pause_schedule(&c, id, *resume).await.map(|()| {
                println!(
                    "schedule {id} {}",
                    if *resume { "resumed" } else { "paused" }
                )
            })
        }
        ScheduleCommand::Delete { id, .. } => client::delete_schedule(&c, id)
            .await
            .map(|()| println!("schedule {id} deleted")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => fail(&e, json),
    }
}
