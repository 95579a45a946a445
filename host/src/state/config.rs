//! `<home>/state.toml`: where the state store lives. Without the file (or without `url`) it is
//! the embedded SQLite file `<home>/state.sqlite`; with `url` it is a PostgreSQL database that
//! several workers share. The file never holds a password: `password_file` or `password_env`
//! names where it is, and a URL that carries one is refused. Unknown keys are errors that name
//! the key and its line; no error quotes a line of the file (a mistyped line could hold a
//! password).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::secrets::SecretString;

/// How long a login to the PostgreSQL store may take unless `connect_timeout_s` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most `connect_timeout_s` may be.
const MAX_CONNECT_TIMEOUT_S: u64 = 300;

/// The file as written (no `Debug`: a refused `url` may hold a password).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    url: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    password_env: Option<Spanned<String>>,
    tls: Option<Spanned<StateTls>>,
    ca_file: Option<Spanned<PathBuf>>,
    connect_timeout_s: Option<Spanned<u64>>,
}

/// How the connection to the PostgreSQL store is protected (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateTls {
    /// No TLS: queries, results and (unless the server uses SCRAM) the password in the clear.
    Disable,
    /// TLS, any certificate.
    Require,
    /// TLS; the chain must reach a trusted root and the certificate name the host.
    #[default]
    VerifyFull,
}

/// Where the state store lives.
#[derive(Debug)]
pub enum StateConfig {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A shared PostgreSQL database.
    Postgres(PostgresStateConfig),
}

/// A PostgreSQL state store, as `state.toml` describes it.
#[derive(Debug, Clone)]
pub struct PostgresStateConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// From `password_file` or `password_env`; registered with the redactor when loaded.
    pub password: Option<SecretString>,
    pub tls: StateTls,
    /// Extra trusted roots for `verify-full` (the system's are trusted too).
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl PostgresStateConfig {
    /// `postgres://user@host:port/dbname`, for messages (never with a password).
    pub fn location(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "postgres://{}@{host}:{}/{}",
            self.user, self.port, self.dbname
        )
    }
}

/// `state.toml` is unusable.
#[derive(Debug, thiserror::Error)]
#[error("state config {path}: {message}")]
pub struct StateConfigError {
    pub path: PathBuf,
    pub message: String,
}

impl StateConfig {
    /// `<home>/state.toml`.
    pub fn path_for(home: &Path) -> PathBuf {
        home.join("state.toml")
    }

    /// The state store of the home in `home`: `state.toml` when it names a database, else
    /// `<home>/state.sqlite`. Relative paths in the file resolve against `home`.
    pub fn load(home: &Path) -> Result<StateConfig, StateConfigError> {
        let path = Self::path_for(home);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StateConfig::Sqlite(home.join("state.sqlite")))
            }
            Err(e) => {
                return Err(StateConfigError {
                    path,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        Self::from_toml(&text, &path, home)
    }

    /// Parses the text of `origin`; relative paths resolve against `base`.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        base: &Path,
    ) -> Result<StateConfig, StateConfigError> {
        let fail = |message: String| StateConfigError {
            path: origin.to_path_buf(),
            message,
        };
        let at = |span: std::ops::Range<usize>, message: String| {
            fail(format!("line {}: {message}", line_of(text, span.start)))
        };
        let file: StateFile = toml::from_str(text).map_err(|e| fail(describe(&e, text)))?;
        let Some(url) = file.url else {
            // Settings that only a PostgreSQL store reads are a mistake without one.
            let stray = [
                file.password_file
                    .as_ref()
                    .map(|s| ("password_file", s.span())),
                file.password_env
                    .as_ref()
                    .map(|s| ("password_env", s.span())),
                file.tls.as_ref().map(|s| ("tls", s.span())),
                file.ca_file.as_ref().map(|s| ("ca_file", s.span())),
                file.connect_timeout_s
                    .as_ref()
                    .map(|s| ("connect_timeout_s", s.span())),
            ];
            if let Some((key, span)) = stray.into_iter().flatten().next() {
                return Err(at(
                    span,
                    format!(
                        "{key} is set but url is not; set url = \"postgres://USER@HOST:PORT/DBNAME\" \
                         for a PostgreSQL store, or remove {key} to keep the embedded one"
                    ),
                ));
            }
            return Ok(StateConfig::Sqlite(base.join("state.sqlite")));
        };
        let url_span = url.span();
        let (host, port, user, dbname) =
            parse_url(url.get_ref()).map_err(|m| at(url_span.clone(), format!("url {m}")))?;
        let password = match (file.password_file, file.password_env) {
            (Some(_), Some(env)) => {
                return Err(at(
                    env.span(),
                    "password_file and password_env are both set; keep one".into(),
                ))
            }
            (Some(f), None) => {
                let span = f.span();
                let path = base.join(f.into_inner());
                Some(read_password_file(&path).map_err(|m| at(span, m))?)
            }
            (None, Some(env)) => {
                let span = env.span();
                Some(read_password_env(env.get_ref()).map_err(|m| at(span, m))?)
            }
            (None, None) => None,
        };
        if let Some(p) = &password {
            crate::secrets::redact::Redactor::global().register(p);
        }
        let tls = file.tls.as_ref().map(|t| *t.get_ref()).unwrap_or_default();
        let ca_file = match file.ca_file {
            Some(c) if tls != StateTls::VerifyFull => {
                return Err(at(
                    c.span(),
                    "ca_file is read only with tls = \"verify-full\" (\"require\" accepts any \
                     certificate, \"disable\" uses none); set tls = \"verify-full\" or remove ca_file"
                        .into(),
                ))
            }
            Some(c) => Some(base.join(c.into_inner())),
            None => None,
        };
        let connect_timeout = match file.connect_timeout_s {
            Some(t) if *t.get_ref() == 0 || *t.get_ref() > MAX_CONNECT_TIMEOUT_S => {
                return Err(at(
                    t.span(),
                    format!(
                        "connect_timeout_s must be between 1 and {MAX_CONNECT_TIMEOUT_S} seconds"
                    ),
                ))
            }
            Some(t) => Duration::from_secs(*t.get_ref()),
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        Ok(StateConfig::Postgres(PostgresStateConfig {
            host,
            port,
            user,
            dbname,
            password,
            tls,
            ca_file,
            connect_timeout,
        }))
    }
}

/// Splits `postgres://user@host:port/dbname` into its parts. Messages never quote the URL: a
/// refused one may hold a password.
fn parse_url(text: &str) -> Result<(String, u16, String, String), String> {
    const SHAPE: &str = "postgres://USER@HOST:PORT/DBNAME";
    let url = url::Url::parse(text).map_err(|e| format!("is not a URL ({e}); expected {SHAPE}"))?;
    if url.password().is_some() {
        // It is a secret all the same: keep it out of anything printed later.
        if let Some(p) = url.password() {
            let secret = SecretString::new(percent_decode(p).unwrap_or_else(|| p.to_string()));
            crate::secrets::redact::Redactor::global().register(&secret);
        }
        return Err(format!(
            "holds a password; state.toml never holds one: put it in a file named by \
             password_file (e.g. a Kubernetes Secret mount) or in an environment variable named \
             by password_env, and write the url as {SHAPE}"
        ));
    }
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "has the scheme `{}`; expected {SHAPE}",
            url.scheme()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "has query parameters, which are not read; use the keys tls, ca_file and \
             connect_timeout_s, and write the url as {SHAPE}"
        ));
    }
    let user = percent_decode(url.username())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("names no user; expected {SHAPE}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => {
            percent_decode(d).ok_or_else(|| format!("has an invalid host; expected {SHAPE}"))?
        }
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(format!("names no host; expected {SHAPE}")),
    };
    if host.is_empty() {
        return Err(format!("names no host; expected {SHAPE}"));
    }
    let dbname = percent_decode(url.path().trim_start_matches('/'))
        .filter(|d| !d.is_empty() && !d.contains('/'))
        .ok_or_else(|| format!("names no database (the path); expected {SHAPE}"))?;
    Ok((host, url.port().unwrap_or(5432), user, dbname))
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a password file (a Kubernetes Secret mount, say), without its trailing newline.
fn read_password_file(path: &Path) -> Result<SecretString, String> {
    let shown = path.display();
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("password_file {shown} cannot be read: {e}"))?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    let secret = SecretString::from_utf8(bytes)
        .map_err(|_| format!("password_file {shown} is not UTF-8 text"))?;
    if secret.is_empty() {
        return Err(format!("password_file {shown} is empty"));
    }
    Ok(secret)
}

/// Reads the password from the environment variable `name`.
fn read_password_env(name: &str) -> Result<SecretString, String> {
    if name.is_empty() {
        return Err("password_env is empty; name the variable that holds the password".into());
    }
    let value = std::env::var_os(name)
        .ok_or_else(|| format!("password_env names {name}, which is not set"))?;
    let secret = SecretString::from_utf8(value.into_encoded_bytes())
        .map_err(|_| format!("password_env {name} is not UTF-8 text"))?;
    if secret.is_empty() {
        return Err(format!("password_env {name} is empty"));
    }
    Ok(secret)
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The parser's message and line, without quoting the line.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let mut message = e.message().trim().to_string();
    if message.contains("unknown field `password`") {
        message
            .push_str("; state.toml never holds the password: use password_file or password_env");
    }
    match e.span() {
        Some(span) => format!("line {}: {message}", line_of(text, span.start)),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StateConfig, StateConfigError> {
        StateConfig::from_toml(text, Path::new("/h/state.toml"), Path::new("/h"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn without_url_the_store_is_the_embedded_file() {
        match parse("# nothing yet\n").unwrap() {
            StateConfig::Sqlite(p) => assert_eq!(p, Path::new("/h/state.sqlite")),
            other => panic!("{other:?}"),
        }
        let missing = tempfile::tempdir().unwrap();
        assert!(matches!(
            StateConfig::load(missing.path()).unwrap(),
            StateConfig::Sqlite(_)
        ));
        let e = err("password_env = \"X\"\n");
        assert!(e.contains("password_env") && e.contains("url"), "{e}");
    }

    #[test]
    fn a_url_with_a_password_is_refused_without_quoting_it() {
        let e = err("\nurl = \"postgres://app:canary-Url-Pa55@db:5432/state\"\n");
        assert!(!e.contains("canary-Url-Pa55"), "{e}");
        assert!(
            e.contains("password_file") && e.contains("password_env"),
            "{e}"
        );
        assert!(e.contains("/h/state.toml") && e.contains("line 2"), "{e}");
        assert!(e.contains("url"), "{e}");
        // and the redactor now knows it, should it surface anywhere else
        let r = crate::secrets::redact::Redactor::global();
        assert!(!r.redact("x canary-Url-Pa55 y").contains("canary-Url-Pa55"));
    }

    #[test]
    fn keys_defaults_and_mistakes() {
        let cfg = match parse("url = \"postgres://app@db.internal/state\"\n").unwrap() {
            StateConfig::Postgres(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (cfg.host.as_str(), cfg.port, cfg.user.as_str()),
            ("db.internal", 5432, "app")
        );
        assert_eq!(cfg.dbname, "state");
        assert_eq!(cfg.tls, StateTls::VerifyFull);
        assert_eq!(cfg.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert!(cfg.password.is_none());
        assert_eq!(cfg.location(), "postgres://app@db.internal:5432/state");

        let e = err("url = \"postgres://a@h/d\"\npassword = \"canary-Inline\"\n");
        assert!(e.contains("line 2") && e.contains("password_file"), "{e}");
        assert!(!e.contains("canary-Inline"), "{e}");
        let e = err("url = \"postgres://a@h/d\"\nconnect_timeout = 5\n");
        assert!(e.contains("connect_timeout") && e.contains("line 2"), "{e}");
        let e = err("url = \"postgres://a@h/d\"\ntls = \"verify-ca\"\n");
        assert!(e.contains("verify-ca") && e.contains("line 2"), "{e}");
        let e = err("url = \"postgres://a@h/d\"\npassword_file = \"p\"\npassword_env = \"P\"\n");
        assert!(e.contains("both"), "{e}");
        let e = err("url = \"postgres://a@h/d\"\ntls = \"require\"\nca_file = \"ca.pem\"\n");
        assert!(e.contains("ca_file") && e.contains("line 3"), "{e}");
        let e = err("url = \"postgres://a@h/d\"\nconnect_timeout_s = 0\n");
        assert!(e.contains("connect_timeout_s"), "{e}");
        for bad in [
            "mysql://a@h/d",
            "postgres://h/d",
            "postgres://a@h",
            "postgres://a@h/d?sslmode=disable",
            "not a url",
        ] {
            let e = err(&format!("url = \"{bad}\"\n"));
            assert!(e.contains("url") && e.contains("line 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_password_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "canary-File-Pa55\n").unwrap();
        let cfg = StateConfig::from_toml(
            "url = \"postgres://app@[::1]:6543/state\"\npassword_file = \"pw\"\n",
            &dir.path().join("state.toml"),
            dir.path(),
        )
        .unwrap();
        let StateConfig::Postgres(cfg) = cfg else {
            panic!("not postgres")
        };
        assert_eq!(cfg.password.as_ref().unwrap().expose(), "canary-File-Pa55");
        assert_eq!(cfg.location(), "postgres://app@[::1]:6543/state");
        assert!(!format!("{cfg:?}").contains("canary-File-Pa55"));
        let e = StateConfig::from_toml(
            "url = \"postgres://app@h/state\"\npassword_file = \"absent\"\n",
            &dir.path().join("state.toml"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("absent") && e.contains("line 2"), "{e}");
    }
}
