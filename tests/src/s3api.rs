//! Reading what a run put into an S3 bucket (moto on 127.0.0.1), independently of the sink:
//! creating the bucket, listing keys, fetching objects, and checking an uploaded run against
//! its manifest.

use sha2::Digest;

/// moto's base URL and a client for it.
pub struct S3Api {
    pub base: String,
    pub client: reqwest::Client,
    pub bucket: String,
}

impl S3Api {
    /// The API at `base` (e.g. moto's endpoint) for `bucket`.
    pub fn new(base: &str, bucket: &str) -> S3Api {
        Self::build(base, bucket, None)
    }

    /// The API over HTTPS trusting only `ca_pem`.
    pub fn with_ca(base: &str, bucket: &str, ca_pem: &[u8]) -> S3Api {
        Self::build(base, bucket, Some(ca_pem))
    }

    fn build(base: &str, bucket: &str, ca_pem: Option<&[u8]>) -> S3Api {
        // moto ignores signatures but treats requests without credentials as anonymous.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "authorization",
            reqwest::header::HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            ),
        );
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers);
        if let Some(pem) = ca_pem {
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(pem).expect("CA PEM"));
        }
        let client = builder.build().expect("client");
        S3Api {
            base: base.to_string(),
            client,
            bucket: bucket.to_string(),
        }
    }

    /// Creates the bucket.
    pub async fn create_bucket(&self) {
        let resp = self
            .client
            .put(format!("{}/{}", self.base, self.bucket))
            .send()
            .await
            .expect("moto answers");
        assert!(
            resp.status().is_success(),
            "CreateBucket: {}",
            resp.status()
        );
    }

    /// Every key under `prefix`, sorted.
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let resp = self
            .client
            .get(format!(
                "{}/{}?list-type=2&prefix={prefix}",
                self.base, self.bucket
            ))
            .send()
            .await
            .expect("moto answers");
        assert!(
            resp.status().is_success(),
            "ListObjectsV2: {}",
            resp.status()
        );
        let text = resp.text().await.expect("list body");
        assert!(text.contains("<ListBucketResult"), "{text}");
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    /// The object's bytes and ETag.
    pub async fn get_object(&self, key: &str) -> (Vec<u8>, String) {
        let resp = self
            .client
            .get(format!("{}/{}/{key}", self.base, self.bucket))
            .send()
            .await
            .expect("moto answers");
        assert!(resp.status().is_success(), "GET {key}: {}", resp.status());
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_string();
        (resp.bytes().await.expect("body").to_vec(), etag)
    }

    /// Checks the run uploaded under `<prefix>/<run_id>/`: exactly the manifest's files plus
    /// the manifest, each object's size, SHA-256 and record count equal to the manifest's;
    /// returns the manifest.
    pub async fn verify_uploaded(&self, prefix: &str, run_id: &str) -> serde_json::Value {
        let base = format!("{prefix}/{run_id}/");
        let (bytes, _) = self.get_object(&format!("{base}manifest.json")).await;
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest is JSON");
        let objects = crate::listed_files(&manifest)
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect::<Vec<_>>();
        let mut fetched = Vec::new();
        for name in &objects {
            fetched.push(self.get_object(&format!("{base}{name}")).await.0);
        }
        verify_run_objects(&manifest, run_id, &fetched);
        let mut expected: Vec<String> = objects.iter().map(|n| format!("{base}{n}")).collect();
        expected.push(format!("{base}manifest.json"));
        expected.sort();
        assert_eq!(self.list_keys(&base).await, expected);
        manifest
    }
}

/// Checks uploaded objects against their manifest: status complete, the run id, and for each
/// file (in the manifest's order) the size, SHA-256 and number of records (lines).
pub fn verify_run_objects(manifest: &serde_json::Value, run_id: &str, objects: &[Vec<u8>]) {
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["run_id"], run_id);
    let files = crate::listed_files(manifest);
    assert_eq!(files.len(), objects.len());
    for (f, body) in files.iter().zip(objects) {
        let name = f["path"].as_str().unwrap();
        assert_eq!(body.len() as u64, f["bytes"].as_u64().unwrap(), "{name}");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(body)),
            f["sha256"].as_str().unwrap(),
            "{name} sha256"
        );
        if f["kind"] == "datahub" || f["kind"] == "openmetadata" {
            // A catalog export: one JSON document, its records are not lines.
            serde_json::from_slice::<serde_json::Value>(body).expect("an export is JSON");
            continue;
        }
        let lines = body.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!(lines, f["records"].as_u64().unwrap(), "{name} records");
    }
}
