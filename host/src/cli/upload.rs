//! `airlock upload --resume RUN`: finishes the upload (S3 or HTTPS sink) of a run whose
//! extraction completed but whose upload did not.

use std::path::Path;

use clap::Args;

use crate::run::redacted;
use crate::sinks::remote;

/// Arguments of `airlock upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The run whose upload to finish: files the spool's journal confirms (same SHA-256) are
    /// skipped, the rest uploaded, and the manifest goes up last.
    #[arg(long, value_name = "RUN")]
    resume: String,
    /// Print a machine-readable JSON summary on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `airlock upload`; returns the exit code.
pub async fn upload(args: &UploadArgs, home_dir: &Path) -> i32 {
    let home = match super::open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let result = tokio::select! {
        r = remote::resume_upload(&home, &args.resume) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted; no manifest was uploaded unless every file was confirmed");
            return 130;
        }
    };
    match result {
        Ok(report) => {
            if let Err(e) =
                home.state()
                    .run_finished(&args.resume, "complete", Some(&report.url), None)
            {
                tracing::warn!("cannot record the run's end: {e}");
            }
            if args.json {
                let v = serde_json::json!({
                    "status": "complete",
                    "run_id": args.resume,
                    "output": report.url,
                    "uploaded": report.uploaded,
                    "skipped": report.skipped,
                });
                println!("{v}");
            } else {
                println!(
                    "run {} uploaded to {}: {} files uploaded, {} already confirmed, manifest last",
                    args.resume,
                    report.url,
                    report.uploaded.len(),
                    report.skipped.len()
                );
            }
            0
        }
        Err(e) => {
            let message = redacted(&e.to_string());
            let code = match e {
                remote::SinkError::Config(_) => 2,
                _ => 1,
            };
            if args.json {
                let v = serde_json::json!({
                    "status": "failed",
                    "error": { "kind": "upload", "message": message },
                    "exit_code": code,
                });
                println!("{v}");
            }
            eprintln!("error: {message}");
            eprintln!(
                "the upload is not complete; run `airlock upload --resume {}` again",
                args.resume
            );
            code
        }
    }
}
