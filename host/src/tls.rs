//! TLS client settings shared by every HTTPS connection the host makes for a run (the HTTP
//! capability, the HTTPS sink): rustls with the ring provider, TLS 1.2 and 1.3 only, the
//! system roots and/or extra PEM CA files, and an optional client identity (mutual TLS) whose
//! PEM comes from the vault. Errors name the setting (`label`) and never quote a PEM. The
//! PostgreSQL clients (the SQL driver, the shared state store) take the roots and, for libpq's
//! `require`, the [`AnyCertificate`] verifier from here too.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::secrets::SecretString;

/// A client certificate chain and its private key, parsed from a credential's PEM secret.
pub struct ClientIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Parses a secret holding the PEM certificate chain followed by its PEM private key.
    /// The error says what is missing, never what the PEM holds.
    pub fn from_pem(pem: &SecretString) -> Result<ClientIdentity, &'static str> {
        let certs = CertificateDer::pem_slice_iter(pem.expose().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "is not valid PEM")?;
        if certs.is_empty() {
            return Err("holds no CERTIFICATE block");
        }
        let key = PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
            .map_err(|_| "holds no readable PRIVATE KEY block")?;
        Ok(ClientIdentity { certs, key })
    }
}

/// Trust anchors: the system store (when `system`) plus every certificate of `ca_files`.
/// `label` names the setting in errors (e.g. `sink.ca_file`).
pub fn roots(
    system: bool,
    ca_files: &[&Path],
    label: &str,
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if system {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    for path in ca_files {
        let shown = path.display();
        let pem =
            std::fs::read(path).map_err(|e| format!("{label} {shown} cannot be read: {e}"))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{label} {shown} is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{label} {shown}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{label} {shown} holds no PEM certificate"));
        }
    }
    Ok(roots)
}

/// Why a client configuration could not be built.
#[derive(Debug)]
pub enum TlsSetupError {
    /// The TLS library refused the settings.
    Setup(String),
    /// The client identity is unusable (the key is not supported or does not match).
    Identity(String),
}

/// A client configuration trusting `roots`, presenting `identity` when the server asks for
/// a client certificate, speaking HTTP/1.1. The identity's DER key copy is wiped once the
/// signing key is built.
pub fn client_config(
    roots: rustls::RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Setup(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(ClientIdentity { certs, mut key }) => {
            let signer = rustls::crypto::ring::sign::any_supported_type(&key);
            // ring keeps its own parsed key; the DER copy is wiped now.
            zeroize::Zeroize::zeroize(&mut key);
            let signer = signer.map_err(|e| {
                TlsSetupError::Identity(format!("the private key cannot be used: {e}"))
            })?;
            let certified = rustls::sign::CertifiedKey::new(certs, signer);
            match certified.keys_match() {
                Ok(())
                | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
                Err(e) => {
                    return Err(TlsSetupError::Identity(format!(
                        "the private key does not belong to the certificate ({e})"
                    )))
                }
            }
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `require`-style TLS: any certificate, but the handshake signatures are still checked, so the
/// session is encrypted to whoever holds the presented certificate's key. Only for clients
/// whose operator chose not to verify the server (libpq's `sslmode=require`).
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration that accepts any server certificate ([`AnyCertificate`]), TLS 1.2
/// and 1.3, no client identity, no ALPN.
pub fn any_certificate_config() -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsSetupError::Setup(format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}
