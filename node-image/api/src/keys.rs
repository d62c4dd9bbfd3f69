//! Key files. A key file is JSON: `{"suite": "...", "public_key": "<hex>", "secret_key": "<hex>"}`.
//! It is written with mode 0600 and never printed: `Debug` shows only the public half.

use crate::crypto::{CryptoError, Suite};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A private signing key of either suite.
#[derive(Clone)]
// Boxing the SM2 key keeps the common Ed25519 case inline; the size gap is deliberate.
#[allow(clippy::large_enum_variant)]
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({}, public {})",
            self.suite(),
            hex::encode(self.public())
        )
    }
}

/// A new Ed25519 key from the operating system's randomness: 32 random bytes are the whole
/// secret (RFC 8032), which is what `ed25519_dalek::SigningKey::generate` does too.
pub fn generate_ed25519() -> ed25519_dalek::SigningKey {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

impl SigningKey {
    pub fn generate(suite: Suite) -> Self {
        let mut rng = rand::rngs::OsRng;
        match suite {
            Suite::Ed25519 => SigningKey::Ed25519(generate_ed25519()),
            Suite::Sm => loop {
                let sk = sm2::SecretKey::random(&mut rng);
                if let Ok(k) = sm2::dsa::SigningKey::new(crate::crypto::SM2_DISTID, &sk) {
                    break SigningKey::Sm2(Box::new(k));
                }
            },
        }
    }

    pub fn suite(&self) -> Suite {
        match self {
            SigningKey::Ed25519(_) => Suite::Ed25519,
            SigningKey::Sm2(_) => Suite::Sm,
        }
    }

    /// The public key in the encoding transactions carry.
    pub fn public(&self) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            SigningKey::Sm2(k) => {
                use sm2::elliptic_curve::sec1::ToEncodedPoint;
                k.verifying_key().to_encoded_point(true).as_bytes().to_vec()
            }
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(msg).to_bytes().to_vec()
            }
            SigningKey::Sm2(k) => {
                use sm2::dsa::signature::Signer;
                let sig: sm2::dsa::Signature = k.sign(msg);
                sig.to_bytes().to_vec()
            }
        }
    }

    fn secret_bytes(&self) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(k) => k.to_bytes().to_vec(),
            SigningKey::Sm2(k) => k.to_bytes().to_vec(),
        }
    }

    pub fn from_secret(suite: Suite, secret: &[u8]) -> Result<Self, CryptoError> {
        match suite {
            Suite::Ed25519 => {
                let arr: [u8; 32] = secret.try_into().map_err(|_| CryptoError::BadSecretKey)?;
                Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &arr,
                )))
            }
            Suite::Sm => sm2::dsa::SigningKey::from_slice(crate::crypto::SM2_DISTID, secret)
                .map(|k| SigningKey::Sm2(Box::new(k)))
                .map_err(|_| CryptoError::BadSecretKey),
        }
    }

    /// The Ed25519 key, for node identities (TLS and block proposals).
    pub fn as_ed25519(&self) -> Option<&ed25519_dalek::SigningKey> {
        match self {
            SigningKey::Ed25519(k) => Some(k),
            SigningKey::Sm2(_) => None,
        }
    }

    pub fn to_file(&self) -> KeyFile {
        KeyFile {
            suite: self.suite(),
            public_key: hex::encode(self.public()),
            secret_key: hex::encode(self.secret_bytes()),
        }
    }
}

/// The serialized form of a key pair.
#[derive(Serialize, Deserialize, Clone)]
pub struct KeyFile {
    pub suite: Suite,
    pub public_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("suite", &self.suite)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "key file {path} already exists; refusing to overwrite a key (delete it first if you really mean to replace it)"
    )]
    Exists { path: String },
    #[error("key file {path} is not a medledger key file: {reason}")]
    Invalid { path: String, reason: String },
}

impl KeyFile {
    pub fn signing_key(&self) -> Result<SigningKey, CryptoError> {
        let secret = hex::decode(&self.secret_key).map_err(|_| CryptoError::BadSecretKey)?;
        let key = SigningKey::from_secret(self.suite, &secret)?;
        if hex::encode(key.public()) != self.public_key.to_lowercase() {
            return Err(CryptoError::BadSecretKey);
        }
        Ok(key)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("key file serializes")
    }

    pub fn parse(path: &str, text: &str) -> Result<SigningKey, KeyError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| KeyError::Invalid {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        file.signing_key().map_err(|e| KeyError::Invalid {
            path: path.to_string(),
            reason: format!("{e}; the public key must match the secret key"),
        })
    }
}

/// Reads a key file.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: p.clone(),
        source,
    })?;
    KeyFile::parse(&p, &text)
}

/// Writes a new key file with mode 0600. Never overwrites an existing file.
pub fn save_new(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    use std::io::Write;
    let p = path.display().to_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: p.clone() }
        } else {
            KeyError::Write {
                path: p.clone(),
                source,
            }
        }
    })?;
    f.write_all(key.to_file().to_json().as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|source| KeyError::Write { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_never_overwrite() {
        let dir = std::env::temp_dir().join(format!("mlkeys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for suite in [Suite::Ed25519, Suite::Sm] {
            let path = dir.join(format!("{suite}.key"));
            let _ = std::fs::remove_file(&path);
            let k = SigningKey::generate(suite);
            save_new(&path, &k).unwrap();
            let back = load(&path).unwrap();
            assert_eq!(back.public(), k.public());
            assert!(matches!(
                save_new(&path, &SigningKey::generate(suite)),
                Err(KeyError::Exists { .. })
            ));
            assert_eq!(load(&path).unwrap().public(), k.public());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = SigningKey::generate(Suite::Ed25519);
        let secret = k.to_file().secret_key;
        assert!(!format!("{k:?}").contains(&secret));
        assert!(!format!("{:?}", k.to_file()).contains(&secret));
    }

    #[test]
    fn mismatched_public_key_is_refused() {
        let mut f = SigningKey::generate(Suite::Ed25519).to_file();
        f.public_key = hex::encode(SigningKey::generate(Suite::Ed25519).public());
        assert!(KeyFile::parse("x", &f.to_json()).is_err());
    }
}
