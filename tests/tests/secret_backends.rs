//! External secret backends against real servers started here on 127.0.0.1: an OpenBao dev
//! server (KV v2 read, field selection, rotation, a denying policy, a token revoked mid-use,
//! deleted and destroyed versions, AppRole login, a sealed server) and moto's Secrets Manager
//! (JSON fields, plain text, rotation via PutSecretValue, deleted secrets). Azure Key Vault has
//! no server that runs here: its tests use `airlock_tests::azure`, a loopback HTTPS server that
//! implements the documented Entra ID token and Key Vault get-secret endpoints. Errors are
//! checked to be the right kind, to name the place, and never to hold the secret.

use std::path::Path;
use std::time::{Duration, Instant};

use airlock::home::Home;
use airlock::secrets::{SecretStoreError, SecretString};
use airlock_tests::azure::{AzureKeyVault, TestCa};
use airlock_tests::moto::Moto;
use airlock_tests::openbao::OpenBao;
use airlock_tests::postgres::PgCluster;

fn home_with(dir: &Path, backends: &str) -> Home {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("backends.toml"), backends).unwrap();
    Home::open(&home).expect("home opens with backends.toml")
}

fn bao_config(bao: &OpenBao, token_file: &Path, extra: &str) -> String {
    format!(
        "[openbao]\naddress = \"{}\"\nretries = 1\ntimeout_s = 3\n{extra}\n[openbao.auth]\nmethod = \"token\"\ntoken_file = \"{}\"\n",
        bao.address(),
        token_file.display()
    )
}

async fn resolve(
    home: &Home,
    backend: &str,
    locator: &str,
) -> Result<SecretString, SecretStoreError> {
    home.stores().get(backend).unwrap().resolve(locator).await
}

fn assert_clean(e: &SecretStoreError, secrets: &[&str]) {
    let text = format!("{e} {e:?}");
    for s in secrets {
        assert!(!text.contains(s), "error holds a secret: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_reads_rotates_and_reports_deletion_and_destruction() {
    let bao = OpenBao::start();
    let ws = tempfile::tempdir().unwrap();
    let token = bao.write_file("token", &format!("{}\n", bao.root_token()));
    let home = home_with(ws.path(), &bao_config(&bao, &token, ""));

    bao.put(
        "apps/db",
        &[("username", "app"), ("password", "Canary-bao-1")],
    );
    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-1"
    );
    assert_eq!(
        resolve(&home, "openbao", "apps/db#password")
            .await
            .unwrap()
            .expose(),
        "Canary-bao-1"
    );
    assert_eq!(
        resolve(&home, "openbao", "apps/db#username")
            .await
            .unwrap()
            .expose(),
        "app"
    );
    let e = resolve(&home, "openbao", "apps/db#nope").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");

    // rotation: the latest version is read at each resolution
    bao.put(
        "apps/db",
        &[("username", "app"), ("password", "Canary-bao-2")],
    );
    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-2"
    );

    // never written
    let e = resolve(&home, "openbao", "apps/missing").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("secret/apps/missing"), "{e}");

    // deleted (soft) latest version
    bao.ok(&["kv", "delete", "-mount=secret", "apps/db"], None);
    let e = resolve(&home, "openbao", "apps/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("deleted"), "{e}");

    // destroyed version
    bao.put("apps/db", &[("password", "Canary-bao-3")]);
    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-3"
    );
    bao.ok(
        &["kv", "destroy", "-mount=secret", "-versions=3", "apps/db"],
        None,
    );
    let e = resolve(&home, "openbao", "apps/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("destroyed"), "{e}");
    assert_clean(&e, &["Canary-bao-1", "Canary-bao-2", "Canary-bao-3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_policy_denial_and_token_revoked_mid_use() {
    let bao = OpenBao::start();
    let ws = tempfile::tempdir().unwrap();
    bao.put("apps/db", &[("password", "Canary-bao-pol")]);
    bao.put("other/db", &[("password", "Canary-bao-other")]);
    let reader = bao.token_with_policy(
        "apps-reader",
        "path \"secret/data/apps/*\" { capabilities = [\"read\"] }\n",
    );
    let token = bao.write_file("token", &reader);
    let home = home_with(ws.path(), &bao_config(&bao, &token, ""));

    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-pol"
    );
    let e = resolve(&home, "openbao", "other/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Denied(_)), "{e}");
    assert!(
        e.to_string().contains("denied") && e.to_string().contains("secret/other/db"),
        "{e}"
    );

    // the token is revoked while airlock holds it: the next resolution is denied, clearly
    bao.ok(&["token", "revoke", &reader], None);
    let e = resolve(&home, "openbao", "apps/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Denied(_)), "{e}");
    assert!(e.to_string().contains("revoked"), "{e}");
    assert_clean(&e, &["Canary-bao-pol", &reader]);

    // the operator replaces the token file: picked up without a restart
    let fresh = bao.token_with_policy(
        "apps-reader2",
        "path \"secret/data/apps/*\" { capabilities = [\"read\"] }\n",
    );
    bao.write_file("token", &fresh);
    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-pol"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_approle_login() {
    let bao = OpenBao::start();
    let ws = tempfile::tempdir().unwrap();
    bao.put("apps/db", &[("password", "Canary-bao-approle")]);
    bao.ok(
        &["policy", "write", "apps-reader", "-"],
        Some("path \"secret/data/apps/*\" { capabilities = [\"read\"] }\n"),
    );
    bao.ok(&["auth", "enable", "approle"], None);
    bao.ok(
        &[
            "write",
            "auth/approle/role/airlock",
            "token_policies=apps-reader",
            "token_ttl=60s",
            "token_max_ttl=120s",
        ],
        None,
    );
    let role_id = bao.ok(
        &[
            "read",
            "-field=role_id",
            "auth/approle/role/airlock/role-id",
        ],
        None,
    );
    let secret_id = bao.ok(
        &[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/airlock/secret-id",
        ],
        None,
    );
    let sid = bao.write_file("secret-id", &secret_id);
    let home = home_with(
        ws.path(),
        &format!(
            "[openbao]\naddress = \"{}\"\n[openbao.auth]\nmethod = \"approle\"\nrole_id = \"{role_id}\"\nsecret_id_file = \"{}\"\n",
            bao.address(),
            sid.display()
        ),
    );
    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-approle"
    );
    // a wrong secret id is a clear denial
    bao.write_file("secret-id", "00000000-0000-0000-0000-000000000000");
    let home2 = home_with(
        &ws.path().join("2"),
        &format!(
            "[openbao]\naddress = \"{}\"\n[openbao.auth]\nmethod = \"approle\"\nrole_id = \"{role_id}\"\nsecret_id_file = \"{}\"\n",
            bao.address(),
            sid.display()
        ),
    );
    let e = resolve(&home2, "openbao", "apps/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Denied(_)), "{e}");
    assert!(e.to_string().contains("approle"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openbao_sealed_or_unreachable_is_unavailable_after_bounded_retries() {
    let bao = OpenBao::start();
    let ws = tempfile::tempdir().unwrap();
    bao.put("apps/db", &[("password", "Canary-bao-seal")]);
    let token = bao.write_file("token", bao.root_token());
    let home = home_with(ws.path(), &bao_config(&bao, &token, ""));
    assert_eq!(
        resolve(&home, "openbao", "apps/db").await.unwrap().expose(),
        "Canary-bao-seal"
    );

    bao.seal();
    let started = Instant::now();
    let e = resolve(&home, "openbao", "apps/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Unavailable(_)), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("unavailable:"), "{text}");
    assert!(
        text.contains("503") && text.contains("2 attempts"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    // nothing listens: unavailable too, never a hang
    drop(bao);
    let started = Instant::now();
    let e = resolve(&home, "openbao", "apps/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

fn aws_home(dir: &Path, moto: &Moto) -> Home {
    // moto accepts any key; these are the standard chain's environment variables.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    home_with(
        dir,
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint = \"{}\"\nretries = 1\ntimeout_s = 5\n",
            moto.endpoint()
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_secrets_manager_fields_rotation_and_deletion() {
    let moto = Moto::start();
    let ws = tempfile::tempdir().unwrap();
    let home = aws_home(ws.path(), &moto);

    moto.create_secret("prod/db", r#"{"username":"app","password":"Canary-aws-1"}"#)
        .await;
    moto.create_secret("prod/plain", "Canary-aws-plain").await;
    assert_eq!(
        resolve(&home, "aws", "prod/db").await.unwrap().expose(),
        "Canary-aws-1"
    );
    assert_eq!(
        resolve(&home, "aws", "prod/db#username")
            .await
            .unwrap()
            .expose(),
        "app"
    );
    assert_eq!(
        resolve(&home, "aws", "prod/plain").await.unwrap().expose(),
        "Canary-aws-plain"
    );
    let e = resolve(&home, "aws", "prod/plain#password")
        .await
        .unwrap_err();
    assert!(matches!(e, SecretStoreError::Invalid(_)), "{e}");

    // rotation: PutSecretValue moves AWSCURRENT; the next resolution reads it
    moto.put_secret_value("prod/db", r#"{"username":"app","password":"Canary-aws-2"}"#)
        .await;
    assert_eq!(
        resolve(&home, "aws", "prod/db#password")
            .await
            .unwrap()
            .expose(),
        "Canary-aws-2"
    );

    let e = resolve(&home, "aws", "prod/none").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("prod/none"), "{e}");

    // deleted (scheduled for deletion) and force-deleted
    moto.delete_secret("prod/db", false).await;
    let e = resolve(&home, "aws", "prod/db").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert!(e.to_string().contains("delet"), "{e}");
    moto.delete_secret("prod/plain", true).await;
    let e = resolve(&home, "aws", "prod/plain").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert_clean(&e, &["Canary-aws-1", "Canary-aws-2", "Canary-aws-plain"]);
}

#[test]
fn backends_toml_with_an_unknown_key_names_it_and_its_line() {
    let ws = tempfile::tempdir().unwrap();
    let home = ws.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("backends.toml"),
        "[aws]\nregion = \"us-east-1\"\nendpont = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let err = Home::open(&home).err().expect("refused").to_string();
    assert!(err.contains("endpont") && err.contains("line 3"), "{err}");
}

const AZ_TENANT: &str = "7d1f0c2e-5b4a-4c3d-8e2f-00000000a1b2";
const AZ_CLIENT: &str = "0b8c9d1e-airlock-reader";
const AZ_CLIENT_SECRET: &str = "Canary-az-client~Secret.7Qp";

/// A home whose `[azure]` backend points at `kv` (vault and authority), reading the client
/// secret from `secret_file` and trusting `ca_file`.
fn azure_home(dir: &Path, kv: &AzureKeyVault, secret_file: &Path, ca_file: &Path) -> Home {
    home_with(
        dir,
        &format!(
            "[azure]\nvault_url = \"{url}\"\nauthority = \"{url}\"\ntenant_id = \"{AZ_TENANT}\"\nclient_id = \"{AZ_CLIENT}\"\nclient_secret_file = \"{}\"\nca_file = \"{}\"\nretries = 2\ntimeout_s = 5\n",
            secret_file.display(),
            ca_file.display(),
            url = kv.url(),
        ),
    )
}

fn write_secret_file(dir: &Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("azure-client-secret");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_reads_latest_and_pinned_versions_fields_and_rotation() {
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    let ws = tempfile::tempdir().unwrap();
    let secret_file = write_secret_file(ws.path(), &format!("{AZ_CLIENT_SECRET}\n"));
    let home = azure_home(ws.path(), &kv, &secret_file, &kv.ca_file());

    let v1 = kv.set_secret("db-password", "Canary-az-1");
    kv.set_secret(
        "db-json",
        r#"{"username":"app","password":"Canary-az-json"}"#,
    );
    assert_eq!(
        resolve(&home, "azure", "db-password")
            .await
            .unwrap()
            .expose(),
        "Canary-az-1"
    );
    assert_eq!(
        resolve(&home, "azure", "db-json#password")
            .await
            .unwrap()
            .expose(),
        "Canary-az-json"
    );
    assert_eq!(
        resolve(&home, "azure", "db-json#username")
            .await
            .unwrap()
            .expose(),
        "app"
    );
    let e = resolve(&home, "azure", "db-json#nope").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");

    // rotation: a new version set in the vault is what the next resolution reads; the old
    // version stays readable when the locator pins it
    kv.set_secret("db-password", "Canary-az-2");
    assert_eq!(
        resolve(&home, "azure", "db-password")
            .await
            .unwrap()
            .expose(),
        "Canary-az-2"
    );
    assert_eq!(
        resolve(&home, "azure", &format!("db-password/{v1}"))
            .await
            .unwrap()
            .expose(),
        "Canary-az-1"
    );
    // one token served every read: it is kept in memory until shortly before it expires
    assert_eq!(kv.token_requests(), 1);
    assert_eq!(kv.secret_requests(), 6);

    // a locator that is not NAME[/VERSION][#FIELD] never reaches the vault
    let e = resolve(&home, "azure", "../keys/x").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Invalid(_)), "{e}");
    assert_eq!(kv.secret_requests(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_disabled_deleted_and_missing_secrets_are_not_found() {
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    let ws = tempfile::tempdir().unwrap();
    let secret_file = write_secret_file(ws.path(), AZ_CLIENT_SECRET);
    let home = azure_home(ws.path(), &kv, &secret_file, &kv.ca_file());
    kv.set_secret("db-password", "Canary-az-dis");
    assert!(resolve(&home, "azure", "db-password").await.is_ok());

    kv.set_enabled("db-password", false);
    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("disabled")
            && text.contains("db-password")
            && text.contains("Azure Key Vault"),
        "{text}"
    );
    kv.set_enabled("db-password", true);
    assert!(resolve(&home, "azure", "db-password").await.is_ok());

    // the caller's role does not allow the read: denied, not "not found"
    kv.set_denied("db-password", true);
    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Denied(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("ForbiddenByRbac") && text.contains("db-password"),
        "{text}"
    );
    kv.set_denied("db-password", false);

    kv.delete_secret("db-password");
    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("deleted") && text.contains("SecretNotFound") && text.contains("db-password"),
        "{text}"
    );
    let e = resolve(&home, "azure", "never-created").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::NotFound(_)), "{e}");
    assert_clean(&e, &["Canary-az-dis", AZ_CLIENT_SECRET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_wrong_client_secret_is_a_clear_denial_until_the_file_is_fixed() {
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    let ws = tempfile::tempdir().unwrap();
    let wrong = "Canary-az-wrong-client-secret";
    let secret_file = write_secret_file(ws.path(), wrong);
    let home = azure_home(ws.path(), &kv, &secret_file, &kv.ca_file());
    kv.set_secret("db-password", "Canary-az-401");

    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Denied(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("invalid_client")
            && text.contains("AADSTS7000215")
            && text.contains(AZ_CLIENT),
        "{text}"
    );
    assert!(text.contains("client secret"), "says what to check: {text}");
    // a 401 from the token endpoint is an answer, not an outage: no retries
    assert_eq!(kv.token_requests(), 1);
    assert_eq!(kv.secret_requests(), 0);
    assert_clean(&e, &[wrong, AZ_CLIENT_SECRET, "Canary-az-401"]);

    // the operator fixes the file: picked up at the next token request, no restart
    write_secret_file(ws.path(), AZ_CLIENT_SECRET);
    assert_eq!(
        resolve(&home, "azure", "db-password")
            .await
            .unwrap()
            .expose(),
        "Canary-az-401"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_token_is_fetched_again_when_it_expires_or_is_refused() {
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    let ws = tempfile::tempdir().unwrap();
    let secret_file = write_secret_file(ws.path(), AZ_CLIENT_SECRET);
    let home = azure_home(ws.path(), &kv, &secret_file, &kv.ca_file());
    kv.set_secret("db-password", "Canary-az-exp");

    // a token that lives 2 s: airlock refreshes it ahead of expiry (here after 1 s)
    kv.set_token_lifetime(Duration::from_secs(2));
    assert!(resolve(&home, "azure", "db-password").await.is_ok());
    assert_eq!((kv.token_requests(), kv.secret_requests()), (1, 1));
    // wait until the server itself would refuse the token
    std::thread::sleep(Duration::from_millis(2200));
    assert!(resolve(&home, "azure", "db-password").await.is_ok());
    assert_eq!(
        (kv.token_requests(), kv.secret_requests()),
        (2, 2),
        "an expired token is replaced before use, not after a refusal"
    );

    // the vault stops accepting the token early (revoked): one 401, one new token, success
    kv.set_token_lifetime(Duration::from_secs(3599));
    std::thread::sleep(Duration::from_millis(2200));
    assert!(resolve(&home, "azure", "db-password").await.is_ok());
    let (tokens, reads) = (kv.token_requests(), kv.secret_requests());
    kv.revoke_tokens();
    assert_eq!(
        resolve(&home, "azure", "db-password")
            .await
            .unwrap()
            .expose(),
        "Canary-az-exp"
    );
    assert_eq!(
        (kv.token_requests(), kv.secret_requests()),
        (tokens + 1, reads + 2)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_outage_is_unavailable_after_bounded_retries() {
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    let ws = tempfile::tempdir().unwrap();
    let secret_file = write_secret_file(ws.path(), AZ_CLIENT_SECRET);
    let home = azure_home(ws.path(), &kv, &secret_file, &kv.ca_file());
    kv.set_secret("db-password", "Canary-az-503");
    assert!(resolve(&home, "azure", "db-password").await.is_ok());

    kv.set_outage(Some(503));
    let reads = kv.secret_requests();
    let started = Instant::now();
    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Unavailable(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("503") && text.contains("3 attempts"),
        "{text}"
    );
    assert_eq!(kv.secret_requests(), reads + 3, "retries = 2 in the config");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "never hangs: {:?}",
        started.elapsed()
    );
    // the vault recovers: so does airlock, with no restart
    kv.set_outage(None);
    assert!(resolve(&home, "azure", "db-password").await.is_ok());

    // nothing listens any more: unavailable too, never a hang
    drop(kv);
    let started = Instant::now();
    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "never hangs: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_server_signed_by_another_ca_is_refused() {
    let kv = AzureKeyVault::start(AZ_TENANT, AZ_CLIENT, AZ_CLIENT_SECRET);
    let ws = tempfile::tempdir().unwrap();
    let secret_file = write_secret_file(ws.path(), AZ_CLIENT_SECRET);
    let other = ws.path().join("other-ca.pem");
    std::fs::write(&other, TestCa::new("some other CA").pem).unwrap();
    let home = azure_home(ws.path(), &kv, &secret_file, &other);
    kv.set_secret("db-password", "Canary-az-ca");

    let e = resolve(&home, "azure", "db-password").await.unwrap_err();
    assert!(matches!(e, SecretStoreError::Unavailable(_)), "{e}");
    let text = e.to_string();
    assert!(text.contains("certificate"), "{text}");
    // the client secret never reached the impostor: no request got past the handshake
    assert_eq!((kv.token_requests(), kv.secret_requests()), (0, 0));
    assert_clean(&e, &[AZ_CLIENT_SECRET, "Canary-az-ca"]);
}

/// The optional cache (`[cache] ttl_s`) keeps a resolved secret for a while, but a login the
/// server refuses re-reads the backend: a secret rotated in OpenBao and on the database is
/// picked up by the next login of the same process, through the cache.
#[tokio::test(flavor = "multi_thread")]
async fn cached_secret_is_bypassed_when_the_login_is_refused() {
    use airlock::capabilities::sql::login::test_login;
    use airlock::capabilities::sql::{TlsMode, TlsSettings};
    let pg = PgCluster::start();
    pg.create_user("app", "Canary-cache-1");
    let bao = OpenBao::start();
    bao.put("apps/db", &[("password", "Canary-cache-1")]);
    let ws = tempfile::tempdir().unwrap();
    let token = bao.write_file("token", bao.root_token());
    let home = home_with(
        ws.path(),
        &format!("[cache]\nttl_s = 60\n{}", bao_config(&bao, &token, "")),
    );
    let dest = format!("127.0.0.1:{}", pg.port());
    let guid = home
        .add_credential_at(
            airlock::home::NewCredential {
                kind: "password".into(),
                username: Some("app".into()),
                engine: Some("postgres".into()),
                destinations: vec![dest.clone()],
                description: None,
                privileged: false,
            },
            "openbao",
            "apps/db#password",
        )
        .unwrap();
    let tls = || TlsSettings {
        mode: TlsMode::Disable,
        ca_file: None,
        allow_cleartext_password: true,
    };
    test_login(&home, &guid, None, None, tls()).await.unwrap();

    // rotated in the vault only: the cache still serves the old value (it still works)
    bao.put("apps/db", &[("password", "Canary-cache-2")]);
    assert_eq!(
        resolve(&home, "openbao", "apps/db#password")
            .await
            .unwrap()
            .expose(),
        "Canary-cache-1",
        "within the TTL the cached value is reused"
    );
    // now the database too: the cached value is refused, the login re-reads OpenBao once
    pg.psql("postgres", "ALTER ROLE app PASSWORD 'Canary-cache-2'");
    let ok = test_login(&home, &guid, None, None, tls()).await;
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
    assert_eq!(
        resolve(&home, "openbao", "apps/db#password")
            .await
            .unwrap()
            .expose(),
        "Canary-cache-2"
    );
    let audit = home.state().audit_entries(None, Some(&guid)).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "login" && e.outcome == "failed"),
        "the refused login with the cached value is audited: {audit:?}"
    );
}
