//! External secret backends against real servers started here on 127.0.0.1: an OpenBao dev
//! server (KV v2 read, field selection, rotation, a denying policy, a token revoked mid-use,
//! deleted and destroyed versions, AppRole login, a sealed server) and moto's Secrets Manager
//! (JSON fields, plain text, rotation via PutSecretValue, deleted secrets). Errors are checked
//! to be the right kind, to name the place, and never to hold the secret.

use std::path::Path;
use std::time::{Duration, Instant};

use airlock::home::Home;
use airlock::secrets::{SecretStoreError, SecretString};
use airlock_tests::moto::Moto;
use airlock_tests::openbao::OpenBao;

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
