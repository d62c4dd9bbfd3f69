//! The consortium-wide crypto suite, fixed in the genesis.
//!
//! `ed25519`: Ed25519 signatures, SHA-256 hashes. `sm`: SM2 signatures (with the standard
//! distinguishing id), SM3 hashes. Node transport identities and block-proposal signatures
//! are Ed25519 under both suites, because TLS libraries offer no SM2 (TLCP) handshake; see
//! docs/security.md.

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// Length of every hash in the ledger (SHA-256 and SM3 both give 32 bytes).
pub const HASH_LEN: usize = 32;
pub type Hash = [u8; HASH_LEN];

/// The SM2 distinguishing identifier of GB/T 32918 when none is agreed otherwise.
pub const SM2_DISTID: &str = "1234567812345678";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    #[default]
    Ed25519,
    Sm,
}

impl Suite {
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Ed25519 => "ed25519",
            Suite::Sm => "sm",
        }
    }

    pub fn hash(self, data: &[u8]) -> Hash {
        match self {
            Suite::Ed25519 => sha2::Sha256::digest(data).into(),
            Suite::Sm => sm3::Sm3::digest(data).into(),
        }
    }

    /// Hash of several parts, each length-prefixed so that part boundaries are unambiguous.
    pub fn hash_parts(self, parts: &[&[u8]]) -> Hash {
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
        for p in parts {
            buf.extend_from_slice(&(p.len() as u64).to_be_bytes());
            buf.extend_from_slice(p);
        }
        self.hash(&buf)
    }

    /// Length of a public key of this suite as carried in transactions.
    pub fn public_key_len(self) -> usize {
        match self {
            Suite::Ed25519 => 32,
            Suite::Sm => 33,
        }
    }

    /// Checks a public key's encoding without verifying anything.
    pub fn check_public_key(self, public: &[u8]) -> Result<(), CryptoError> {
        match self {
            Suite::Ed25519 => {
                ed25519_key(public)?;
            }
            Suite::Sm => {
                sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, public)
                    .map_err(|_| CryptoError::BadPublicKey)?;
            }
        }
        Ok(())
    }

    /// Verifies `sig` over `msg` by `public`. Never panics on malformed input.
    pub fn verify(self, public: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        match self {
            Suite::Ed25519 => verify_ed25519(public, msg, sig),
            Suite::Sm => {
                use sm2::dsa::signature::Verifier;
                let vk = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DISTID, public)
                    .map_err(|_| CryptoError::BadPublicKey)?;
                let sig =
                    sm2::dsa::Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
                vk.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}

impl std::str::FromStr for Suite {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ed25519" => Ok(Suite::Ed25519),
            "sm" => Ok(Suite::Sm),
            other => Err(CryptoError::UnknownSuite(other.to_string())),
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn verify_ed25519(public: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let vk = ed25519_key(public)?;
    let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
    vk.verify_strict(msg, &sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// Decoded Ed25519 public keys, by their bytes. Decompressing a key point costs about as much
/// as half a signature check, and the same few signers sign most transactions, each checked
/// at ingress and again by every node when its block is applied.
static ED25519_KEYS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<[u8; 32], ed25519_dalek::VerifyingKey>>,
> = std::sync::LazyLock::new(Default::default);

/// Keys remembered at most; the cache starts over when full (a few MB).
const ED25519_KEYS_MAX: usize = 1 << 16;

/// An Ed25519 public key decoded from its 32 bytes (a valid curve point), cached.
pub fn ed25519_key(public: &[u8]) -> Result<ed25519_dalek::VerifyingKey, CryptoError> {
    let arr: [u8; 32] = public.try_into().map_err(|_| CryptoError::BadPublicKey)?;
    if let Some(k) = ED25519_KEYS
        .lock()
        .map(|m| m.get(&arr).copied())
        .ok()
        .flatten()
    {
        return Ok(k);
    }
    let k = ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|_| CryptoError::BadPublicKey)?;
    if let Ok(mut m) = ED25519_KEYS.lock() {
        if m.len() >= ED25519_KEYS_MAX {
            m.clear();
        }
        m.insert(arr, k);
    }
    Ok(k)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("malformed public key")]
    BadPublicKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed secret key")]
    BadSecretKey,
    #[error("unknown crypto suite {0:?}: use \"ed25519\" or \"sm\"")]
    UnknownSuite(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    #[test]
    fn both_suites_sign_and_verify_and_reject_tampering() {
        for suite in [Suite::Ed25519, Suite::Sm] {
            let k = SigningKey::generate(suite);
            let sig = k.sign(b"hello");
            assert_eq!(k.public().len(), suite.public_key_len());
            suite.check_public_key(&k.public()).unwrap();
            suite.verify(&k.public(), b"hello", &sig).unwrap();
            assert_eq!(
                suite.verify(&k.public(), b"hellO", &sig),
                Err(CryptoError::BadSignature)
            );
            assert!(suite.verify(&[1, 2, 3], b"hello", &sig).is_err());
            assert!(suite.verify(&k.public(), b"hello", &sig[1..]).is_err());
        }
    }

    #[test]
    fn hashes_differ_by_suite_and_are_stable() {
        assert_eq!(
            hex::encode(Suite::Ed25519.hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // GB/T 32905 test vector.
        assert_eq!(
            hex::encode(Suite::Sm.hash(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_ne!(
            Suite::Ed25519.hash_parts(&[b"ab", b"c"]),
            Suite::Ed25519.hash_parts(&[b"a", b"bc"])
        );
    }
}
