//! `airlock credential`, `airlock workflow` and `airlock audit`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use zeroize::Zeroizing;

use super::open_home;
use crate::capabilities::sql::{TlsMode, TlsSettings};
use crate::config::LoadedConfig;
use crate::home::NewCredential;
use crate::run::redacted;
use crate::secrets::embedded::MAX_SECRET_BYTES;
use crate::secrets::SecretString;

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Register a credential; prints the new GUID. With the embedded vault (the default) the
    /// secret is read from stdin (or a prompt on a terminal), never from the command line; with
    /// another backend nothing is read: `--locator` says where the secret lives, and it is
    /// resolved at each login.
    Add {
        /// Kind of secret: `password` (SQL logins, HTTP basic), `token` (HTTP bearer / API
        /// key), `aws-access-key` (`--user` is the access key id; HTTP requests are SigV4-signed)
        /// or `oauth2-client` (`--user` is the client id; the host fetches access tokens).
        #[arg(long, default_value = "password", value_parser = ["password", "token", "aws-access-key", "oauth2-client"])]
        kind: String,
        /// User name to log in as.
        #[arg(long)]
        user: String,
        /// HOST:PORT the credential may log in to (repeatable; `*.domain:PORT` and port `*`
        /// are allowed).
        #[arg(long = "destination", value_name = "HOST:PORT", required = true)]
        destinations: Vec<String>,
        /// The engine `credential test` logs in to.
        #[arg(long, value_parser = ["postgres", "mysql"])]
        engine: Option<String>,
        /// Free text for operators.
        #[arg(long)]
        description: Option<String>,
        /// Where the secret lives: `embedded` (the home's vault), or a backend configured in
        /// `<home>/backends.toml`: `openbao` (Vault / OpenBao KV v2), `aws` (Secrets
        /// Manager), `kubernetes` (a mounted secret), `azure` (Key Vault), `env` (development
        /// only).
        #[arg(long, default_value = "embedded", value_name = "NAME")]
        backend: String,
        /// Where the secret is in the backend: `PATH[#FIELD]` for openbao, `NAME-OR-ARN[#FIELD]`
        /// for aws, `KEY` or `SUBDIR/KEY` for kubernetes, `NAME[/VERSION][#FIELD]` for azure, a
        /// variable name for env.
        #[arg(long, value_name = "LOCATOR", required_if_eq_any = [("backend", "openbao"), ("backend", "aws"), ("backend", "kubernetes"), ("backend", "azure"), ("backend", "env")])]
        locator: Option<String>,
        /// Register a privileged login on purpose (PostgreSQL superuser, CREATEROLE,
        /// pg_read_server_files, pg_write_server_files, pg_execute_server_program,
        /// pg_read_all_data; MySQL/MariaDB FILE, SUPER, ALL PRIVILEGES, grant option). Without
        /// it such a login is refused; with it every login is audited and warned about. A
        /// metadata connector never needs one: see the README's "Minimal database roles".
        #[arg(long)]
        privileged: bool,
    },
    /// List credentials (GUIDs, users, destinations; never secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one credential's registry entry.
    Show { guid: String },
    /// Replace a credential's secret (read from stdin or a prompt).
    Rotate { guid: String },
    /// Revoke a credential: runs using it fail and the vault forgets the secret.
    Revoke { guid: String },
    /// Log in to the credential's destination and report success or the reason.
    Test {
        guid: String,
        /// Destination to test [default: the first one without wildcards].
        #[arg(long, value_name = "HOST:PORT")]
        destination: Option<String>,
        /// Engine [default: the one registered with the credential].
        #[arg(long, value_parser = ["postgres", "mysql"])]
        engine: Option<String>,
        /// TLS mode.
        #[arg(long, default_value = "verify-full", value_parser = ["disable", "require", "verify-ca", "verify-full"])]
        tls_mode: String,
        /// Extra CA certificates (PEM).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Allow logging in without TLS.
        #[arg(long)]
        allow_cleartext_password: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Store a workflow config (credentials by GUID only); prints the workflow id.
    Create {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// List stored workflows.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a stored workflow's config (GUIDs only).
    Show { id: String },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries of this run.
    #[arg(long, value_name = "ID")]
    run: Option<String>,
    /// Only entries of this credential.
    #[arg(long, value_name = "GUID")]
    credential: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

/// Reads a secret from a prompt (terminal) or all of stdin (pipe), into buffers sized up
/// front so no reallocation leaves a copy behind. One trailing newline is removed.
fn read_secret(prompt: &str) -> Result<SecretString, String> {
    if std::io::stdin().is_terminal() {
        let s = rpassword::prompt_password(prompt)
            .map_err(|e| format!("cannot read the secret: {e}"))?;
        return Ok(SecretString::new(s));
    }
    let mut buf = Zeroizing::new(vec![0u8; MAX_SECRET_BYTES + 1]);
    let mut len = 0;
    let mut stdin = std::io::stdin().lock();
    loop {
        let n = stdin
            .read(&mut buf[len..])
            .map_err(|e| format!("cannot read the secret from stdin: {e}"))?;
        if n == 0 {
            break;
        }
        len += n;
        if len > MAX_SECRET_BYTES {
            return Err(format!(
                "the secret is larger than {MAX_SECRET_BYTES} bytes"
            ));
        }
    }
    let mut end = len;
    if end > 0 && buf[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && buf[end - 1] == b'\r' {
            end -= 1;
        }
    }
    let text =
        std::str::from_utf8(&buf[..end]).map_err(|_| "the secret is not UTF-8".to_string())?;
    let mut out = String::with_capacity(text.len());
    out.push_str(text);
    Ok(SecretString::new(out))
}

fn err(e: impl std::fmt::Display, code: i32) -> i32 {
    eprintln!("error: {}", redacted(&e.to_string()));
    code
}

pub async fn credential(cmd: CredentialCommand, home_dir: &Path) -> i32 {
    let home = match open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    match cmd {
        CredentialCommand::Add {
            kind,
            user,
            destinations,
            engine,
            description,
            backend,
            locator,
            privileged,
        } => {
            if backend != "embedded" {
                let Some(locator) = locator else {
                    return err(format!("--backend {backend} needs --locator"), 2);
                };
                let spec = NewCredential {
                    kind,
                    username: Some(user),
                    engine,
                    destinations,
                    description,
                    privileged,
                };
                return match home.add_credential_at(spec, &backend, &locator) {
                    Ok(guid) => {
                        println!("{guid}");
                        0
                    }
                    Err(e) => err(e, 2),
                };
            }
            if locator.is_some() {
                return err(
                    "--locator is for external backends; the embedded vault reads the secret from stdin",
                    2,
                );
            }
            let secret = match read_secret(&format!("secret for {user}: ")) {
                Ok(s) => s,
                Err(e) => return err(e, 2),
            };
            let spec = NewCredential {
                kind,
                username: Some(user),
                engine,
                destinations,
                description,
                privileged,
            };
            match home.add_credential(spec, secret) {
                Ok(guid) => {
                    println!("{guid}");
                    0
                }
                Err(e) => err(e, 2),
            }
        }
        CredentialCommand::List { json } => match home.state().credentials() {
            Ok(list) if json => {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
                0
            }
            Ok(list) => {
                println!(
                    "{:<36}  {:<8}  {:<10}  {:<12}  {:<18}  destinations",
                    "guid", "kind", "backend", "user", "state"
                );
                for c in list {
                    let state = if c.revoked_at.is_some() {
                        "revoked"
                    } else if c.privileged {
                        "active, privileged"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<36}  {:<8}  {:<10}  {:<12}  {:<18}  {}",
                        c.guid,
                        c.kind,
                        c.backend,
                        c.username.unwrap_or_default(),
                        state,
                        c.destinations.join(", ")
                    );
                }
                0
            }
            Err(e) => err(e, 1),
        },
        CredentialCommand::Show { guid } => match home.state().credential(&guid) {
            Ok(c) => {
                println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
                0
            }
            Err(e) => err(e, 2),
        },
        CredentialCommand::Rotate { guid } => {
            if let Err(e) = home.state().credential(&guid) {
                return err(e, 2);
            }
            let secret = match read_secret("new secret: ") {
                Ok(s) => s,
                Err(e) => return err(e, 2),
            };
            match home.rotate(&guid, secret) {
                Ok(()) => {
                    println!("rotated {guid}; the next login uses the new secret");
                    0
                }
                Err(e) => err(e, 1),
            }
        }
        CredentialCommand::Revoke { guid } => match home.revoke(&guid) {
            Ok(()) => {
                println!("revoked {guid}");
                0
            }
            Err(e) => err(e, 1),
        },
        CredentialCommand::Test {
            guid,
            destination,
            engine,
            tls_mode,
            ca_file,
            allow_cleartext_password,
        } => {
            let mode = match tls_mode.as_str() {
                "disable" => TlsMode::Disable,
                "require" => TlsMode::Require,
                "verify-ca" => TlsMode::VerifyCa,
                _ => TlsMode::VerifyFull,
            };
            let tls = TlsSettings {
                mode,
                ca_file,
                allow_cleartext_password,
            };
            match crate::capabilities::sql::login::test_login(
                &home,
                &guid,
                destination.as_deref(),
                engine.as_deref(),
                tls,
            )
            .await
            {
                Ok(msg) => {
                    println!("ok: {msg}");
                    0
                }
                Err(e) => err(format!("test failed: {e}"), 1),
            }
        }
    }
}

pub fn workflow(cmd: WorkflowCommand, home_dir: &Path) -> i32 {
    let home = match open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    match cmd {
        WorkflowCommand::Create { config } => {
            let cfg = match LoadedConfig::load(&config) {
                Ok(c) => c,
                Err(e) => return err(e, 2),
            };
            match home.create_workflow(&cfg) {
                Ok(id) => {
                    println!("{id}");
                    0
                }
                Err(e) => err(e, 2),
            }
        }
        WorkflowCommand::List { json } => match home.state().workflows() {
            Ok(list) if json => {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
                0
            }
            Ok(list) => {
                println!("{:<36}  {:<24}  created", "id", "name");
                for w in list {
                    println!(
                        "{:<36}  {:<24}  {}",
                        w.id,
                        w.name.unwrap_or_default(),
                        w.created_at
                    );
                }
                0
            }
            Err(e) => err(e, 1),
        },
        WorkflowCommand::Show { id } => match home.state().workflow(&id) {
            Ok(w) => {
                let config: serde_json::Value =
                    serde_json::from_str(&w.config_json).unwrap_or_default();
                let v = serde_json::json!({
                    "id": w.id, "name": w.name, "created_at": w.created_at,
                    "base_dir": w.base_dir, "config": config,
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                0
            }
            Err(e) => err(e, 2),
        },
    }
}

pub fn audit(args: AuditArgs, home_dir: &Path) -> i32 {
    let home = match open_home(home_dir) {
        Ok(h) => h,
        Err(code) => return code,
    };
    match home
        .state()
        .audit_entries(args.run.as_deref(), args.credential.as_deref())
    {
        Ok(entries) => {
            for e in entries {
                if args.json {
                    println!("{}", serde_json::to_string(&e).unwrap_or_default());
                } else {
                    println!(
                        "{}  {:<8} {:<7} cred={} dest={} run={} {}",
                        e.at,
                        e.action,
                        e.outcome,
                        e.credential.as_deref().unwrap_or("-"),
                        e.destination.as_deref().unwrap_or("-"),
                        e.run_id.as_deref().unwrap_or("-"),
                        e.detail.as_deref().unwrap_or("")
                    );
                }
            }
            0
        }
        Err(e) => err(e, 1),
    }
}
