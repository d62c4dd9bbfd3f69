//! Mutual TLS pinned to Ed25519 node keys. Each node derives a self-signed certificate from
//! its node key at start; a peer is accepted only if its certificate's key is a validator
//! key of the consortium (server side) or exactly the key of the node we dialled (client
//! side). No certificate authority exists, so none can be compromised.

use ed25519_dalek::pkcs8::EncodePrivateKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// The name every node certificate carries; identity comes from the key, not the name.
pub const NODE_CERT_NAME: &str = "medledger-node";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot build the node certificate from the node key: {0}")]
    Cert(String),
    #[error("cannot configure TLS: {0}")]
    Config(#[from] rustls::Error),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for the node key, and the key in the form rustls wants.
pub fn node_certificate(
    key: &ed25519_dalek::SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![NODE_CERT_NAME.to_string()])
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(der)))
}

/// The raw Ed25519 key of a certificate, if it has one.
pub fn ed25519_key_of(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let spki = &parsed.tbs_certificate.subject_pki;
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return None;
    }
    spki.subject_public_key.data.as_ref().try_into().ok()
}

/// The set of node keys allowed to connect; shared so membership changes apply at once.
pub type AllowedKeys = Arc<RwLock<HashSet<[u8; 32]>>>;

#[derive(Debug)]
struct PeerVerifier {
    allowed: AllowedKeys,
    provider: Arc<CryptoProvider>,
}

fn sig12(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls12_signature(m, c, d, &p.signature_verification_algorithms)
}

fn sig13(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature(m, c, d, &p.signature_verification_algorithms)
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = ed25519_key_of(end_entity)
            .ok_or_else(|| rustls::Error::General("peer certificate has no Ed25519 key".into()))?;
        if self
            .allowed
            .read()
            .expect("allowed keys lock")
            .contains(&key)
        {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "node key {} is not a validator of this consortium",
                hex::encode(key)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        sig12(&self.provider, m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        sig13(&self.provider, m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct PinnedServer {
    expected: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match ed25519_key_of(end_entity) {
            Some(k) if k == self.expected => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::General(format!(
                "peer did not present the pinned node key {}",
                hex::encode(self.expected)
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        sig12(&self.provider, m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        sig13(&self.provider, m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS for the peer port: client certificates required and checked against `allowed`.
pub fn server_config(
    key: &ed25519_dalek::SigningKey,
    allowed: AllowedKeys,
) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, der) = node_certificate(key)?;
    let provider = provider();
    let verifier = Arc::new(PeerVerifier {
        allowed,
        provider: provider.clone(),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], der)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// TLS for dialling one peer: presents our certificate, accepts only `expected`'s key.
pub fn client_config(
    key: &ed25519_dalek::SigningKey,
    expected: [u8; 32],
) -> Result<rustls::ClientConfig, TlsError> {
    let (cert, der) = node_certificate(key)?;
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { expected, provider }))
        .with_client_auth_cert(vec![cert], der)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_node_key() {
        let k = medledger_api::keys::generate_ed25519();
        let (cert, _) = node_certificate(&k).unwrap();
        assert_eq!(ed25519_key_of(&cert), Some(k.verifying_key().to_bytes()));
    }
}
