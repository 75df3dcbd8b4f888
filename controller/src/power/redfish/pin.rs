//! Certificate pinning for Redfish BMCs: a rustls [`ServerCertVerifier`]
//! that accepts exactly the certificate whose DER SHA-256 is the pinned
//! fingerprint, and still checks the handshake signature with the
//! aws-lc-rs provider.
//!
//! It owns only the matching rule; it must not accept any other
//! certificate, consult trust roots, or skip the signature check.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Whether `der` is the certificate pinned by `pinned` (hex, any case,
/// colons allowed).
pub fn matches(pinned: &str, der: &[u8]) -> bool {
    let wanted: String = pinned.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    wanted.len() == 64 && wanted == fingerprint(der)
}

/// Accepts the one certificate with the pinned SHA-256.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    fingerprint: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    pub fn new(fingerprint: &str, provider: &CryptoProvider) -> Self {
        PinnedCertVerifier { fingerprint: fingerprint.to_owned(), algorithms: provider.signature_verification_algorithms }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if matches(&self.fingerprint, end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A rustls client configuration that trusts only the pinned certificate.
pub fn client_config(fingerprint: &str) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let verifier = PinnedCertVerifier::new(fingerprint, &provider);
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = b"not really DER, but the verifier only hashes it";

    fn check(verifier: &PinnedCertVerifier, der: &[u8]) -> bool {
        let name = ServerName::try_from("bmc.example").expect("name");
        verifier.verify_server_cert(&CertificateDer::from(der.to_vec()), &[], &name, &[], UnixTime::now()).is_ok()
    }

    #[test]
    fn accepts_exactly_the_pinned_certificate() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let fp = fingerprint(CERT);
        assert_eq!(fp.len(), 64);
        let verifier = PinnedCertVerifier::new(&fp, &provider);
        assert!(check(&verifier, CERT));
        assert!(!check(&verifier, b"another certificate"));
        assert!(!check(&verifier, &[]));
        // Upper case and colon-separated pins match too.
        let colons = fp.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect::<Vec<_>>().join(":");
        assert!(matches(&colons, CERT));
        // A truncated pin never matches.
        assert!(!matches(&fp[..62], CERT));
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn builds_a_client_config() {
        assert!(client_config(&fingerprint(CERT)).is_ok());
    }
}
