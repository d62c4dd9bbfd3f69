//! Record envelopes: client-side encryption of an EMR under a per-record data key, and
//! wrapping of that data key to a participant's *signing* public key, so a participant needs
//! only the one key file it already has.
//!
//! - Data: AES-256-GCM under the `ed25519` suite, SM4-GCM under `sm`. Sealed layout:
//!   `[version=1][cipher id][12-byte random nonce][ciphertext || 16-byte tag]`; the first two
//!   bytes are authenticated too, so a blob of another suite fails with a clear error instead
//!   of a generic decryption failure.
//! - Key wrapping, `ed25519`: the recipient's Ed25519 key is mapped to X25519 (the birational
//!   map libsodium's `crypto_sign_ed25519_pk_to_curve25519` uses), then ECIES: ephemeral
//!   X25519, HKDF-SHA256, AES-256-GCM. `sm`: SM2 public-key encryption (GM/T 0003.4, C1C3C2)
//!   of a fresh 32-byte secret, HKDF-SM3, SM4-GCM. Both bind a caller `context` (record id +
//!   grant id, see [`wrap_context`]) so a wrapped key cannot be replayed for another record.
//!
//! docs/storage.md gives the security argument.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use hkdf::Hkdf;
use medledger_api::crypto::{Hash, Suite};
use medledger_api::keys::SigningKey;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// SM4 in GCM mode with the standard 96-bit nonce (RFC 8998's SM4-GCM).
type Sm4Gcm = AesGcm<sm4::Sm4, U12>;

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2;
const DATA_KEY_LEN: usize = 32;
/// Domain-separation label for deriving the SM4 key from the 32-byte data key.
const SM4_KEY_INFO: &[u8] = b"medledger/v1/sm4-gcm data key";
const WRAP_INFO_X25519: &[u8] = b"medledger/v1/wrap/x25519-hkdf-sha256-aes256gcm";
const WRAP_INFO_SM2: &[u8] = b"medledger/v1/wrap/sm2-hkdf-sm3-sm4gcm";

/// A per-record symmetric key: 32 random bytes, wiped from memory when dropped.
/// `Debug` never shows it; `==` runs in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for DataKey {}

impl DataKey {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Self {
        let mut k = [0u8; DATA_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        DataKey(k)
    }

    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        DataKey(bytes)
    }

    /// The raw key. Named loudly because the bytes must never reach a log, status or event;
    /// use it only to hand the key to a cipher or a key store.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }

    /// The 128-bit SM4 key: HKDF-SM3 of the whole 256-bit data key with a fixed label,
    /// rather than its first 16 bytes, so every bit of the data key contributes and the
    /// SM4 key is domain-separated from any other use of the same bytes.
    fn sm4_key(&self) -> Zeroizing<[u8; 16]> {
        let mut k = Zeroizing::new([0u8; 16]);
        Hkdf::<sm3::Sm3>::new(None, &self.0)
            .expand(SM4_KEY_INFO, k.as_mut())
            .expect("16 bytes is a valid HKDF-SM3 output length");
        k
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("malformed envelope ({0}): the bytes are not a medledger sealed record or wrapped key")]
    Malformed(&'static str),
    #[error(
        "envelope format version {0} is not supported by this medledger; upgrade it to read this record"
    )]
    UnsupportedVersion(u8),
    #[error(
        "envelope was made under the {found} suite but {expected} was expected; use the consortium's suite (genesis `suite`)"
    )]
    WrongSuite { expected: Suite, found: Suite },
    #[error(
        "cannot decrypt: wrong data key, wrong associated data, or the ciphertext was altered; fetch the record again or ask the custodian for a fresh key release"
    )]
    Decrypt,
    #[error(
        "recipient public key is not a valid {suite} public key ({len} bytes); pass the participant's registered public key"
    )]
    BadRecipientKey { suite: Suite, len: usize },
    #[error(
        "cannot unwrap the data key: it was wrapped for another key, another record or grant, or it was altered; request a new key release"
    )]
    Unwrap,
    #[error("encryption failed: {0}")]
    Encrypt(&'static str),
}

pub type Result<T, E = EnvelopeError> = std::result::Result<T, E>;

/// The content hash the ledger records for a blob: SHA-256 under `ed25519`, SM3 under `sm`.
pub fn content_hash(suite: Suite, bytes: &[u8]) -> Hash {
    suite.hash(bytes)
}

/// The context a data key is wrapped under for a key release: binds the wrap to one record
/// and one grant (length-prefixed, so distinct pairs never collide).
pub fn wrap_context(record_id: &str, grant_id: &str) -> Vec<u8> {
    let mut out = b"medledger/v1/key-release".to_vec();
    for part in [record_id.as_bytes(), grant_id.as_bytes()] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The context of the custodian's own copy of a record's data key (wrapped to its node key
/// when the record is put); distinct from every key-release context.
pub fn custody_context(record_id: &str) -> Vec<u8> {
    let mut out = b"medledger/v1/custody".to_vec();
    out.extend_from_slice(&(record_id.len() as u64).to_be_bytes());
    out.extend_from_slice(record_id.as_bytes());
    out
}

fn suite_id(suite: Suite) -> u8 {
    match suite {
        Suite::Ed25519 => 1,
        Suite::Sm => 2,
    }
}

fn parse_header(bytes: &[u8], expected: Option<Suite>) -> Result<Suite> {
    let [version, id, ..] = bytes else {
        return Err(EnvelopeError::Malformed("shorter than its header"));
    };
    if *version != FORMAT_VERSION {
        return Err(EnvelopeError::UnsupportedVersion(*version));
    }
    let found = match id {
        1 => Suite::Ed25519,
        2 => Suite::Sm,
        _ => return Err(EnvelopeError::Malformed("unknown cipher id")),
    };
    match expected {
        Some(expected) if expected != found => Err(EnvelopeError::WrongSuite { expected, found }),
        _ => Ok(found),
    }
}

fn nonce_of(bytes: &[u8]) -> Option<aes_gcm::Nonce<U12>> {
    <[u8; NONCE_LEN]>::try_from(bytes).ok().map(Into::into)
}

/// AES-256-GCM from `ring` (the TLS stack's own implementation, with the wide AES-NI/VAES
/// and carry-less multiply paths OpenSSL uses; several times faster than the portable
/// RustCrypto one). The output is the standard one: ciphertext, then the 16-byte tag.
mod aes {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    fn key(key: &[u8]) -> Option<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, key)
            .ok()
            .map(LessSafeKey::new)
    }

    /// Encrypts `body` in place and returns the tag.
    pub fn seal_in_place(
        key_bytes: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
        body: &mut [u8],
    ) -> Option<[u8; 16]> {
        let tag = key(key_bytes)?
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), body)
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    /// Decrypts ciphertext-and-tag; `None` on any mismatch.
    pub fn open(key_bytes: &[u8], nonce: &[u8; 12], aad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
        let mut buf = ct.to_vec();
        let len = key(key_bytes)?
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// The suite's AEAD under a 256-bit (AES) key; SM4 keys are derived by the caller.
fn aead_seal(suite: Suite, key: &[u8], nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let nonce_arr = <[u8; NONCE_LEN]>::try_from(nonce)
        .map_err(|_| EnvelopeError::Encrypt("bad nonce length"))?;
    match suite {
        Suite::Ed25519 => {
            let mut out = msg.to_vec();
            let tag = aes::seal_in_place(key, &nonce_arr, aad, &mut out)
                .ok_or(EnvelopeError::Encrypt("bad key length"))?;
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Suite::Sm => Sm4Gcm::new_from_slice(key)
            .map_err(|_| EnvelopeError::Encrypt("bad key length"))?
            .encrypt(&nonce_arr.into(), Payload { msg, aad })
            .map_err(|_| EnvelopeError::Encrypt("plaintext too long for GCM")),
    }
}

fn aead_open(suite: Suite, key: &[u8], nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let nonce_arr = <[u8; NONCE_LEN]>::try_from(nonce).ok()?;
    match suite {
        Suite::Ed25519 => aes::open(key, &nonce_arr, aad, ct),
        Suite::Sm => Sm4Gcm::new_from_slice(key)
            .ok()?
            .decrypt(&nonce_of(nonce)?, Payload { msg: ct, aad })
            .ok(),
    }
}

fn header_aad(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(header.len() + aad.len());
    full.extend_from_slice(header);
    full.extend_from_slice(aad);
    full
}

/// The cipher key `seal`/`open` use for `suite`.
fn record_key(suite: Suite, key: &DataKey) -> Zeroizing<Vec<u8>> {
    match suite {
        Suite::Ed25519 => Zeroizing::new(key.0.to_vec()),
        Suite::Sm => Zeroizing::new(key.sm4_key().to_vec()),
    }
}

/// Encrypts a record under its data key. `aad` (e.g. the record id) is authenticated, not
/// stored: `open` needs the same bytes.
pub fn seal(suite: Suite, key: &DataKey, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(suite, key, &nonce, plaintext, aad)
}

/// `seal` with a caller-chosen nonce, for the benchmark that must not count the random
/// generator. A nonce must never repeat under one key.
pub(crate) fn seal_with_nonce(
    suite: Suite,
    key: &DataKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>> {
    let header = [FORMAT_VERSION, suite_id(suite)];
    // One allocation, encrypted in place: records are up to megabytes.
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    let body = &mut out[HEADER_LEN + NONCE_LEN..];
    let key = record_key(suite, key);
    let aad = header_aad(&header, aad);
    match suite {
        Suite::Ed25519 => {
            let tag = aes::seal_in_place(&key, nonce, &aad, body)
                .ok_or(EnvelopeError::Encrypt("bad key length"))?;
            out.extend_from_slice(&tag);
        }
        Suite::Sm => {
            let tag = Sm4Gcm::new_from_slice(&key)
                .map_err(|_| EnvelopeError::Encrypt("bad key length"))?
                .encrypt_in_place_detached(&aes_gcm::Nonce::from(*nonce), &aad, body)
                .map_err(|_| EnvelopeError::Encrypt("plaintext too long for GCM"))?;
            out.extend_from_slice(&tag);
        }
    }
    Ok(out)
}

/// Decrypts a sealed record; fails on a wrong key, wrong `aad`, wrong suite or any change.
pub fn open(suite: Suite, key: &DataKey, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    parse_header(sealed, Some(suite))?;
    if sealed.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed("shorter than nonce and tag"));
    }
    let (header, rest) = sealed.split_at(HEADER_LEN);
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    aead_open(
        suite,
        &record_key(suite, key),
        nonce,
        ct,
        &header_aad(header, aad),
    )
    .ok_or(EnvelopeError::Decrypt)
}

/// Wraps `key` to a participant's signing public key (as registered on chain) under `suite`,
/// bound to `context` (use [`wrap_context`]). Node keys are Ed25519 under both suites, so a
/// wrap to a node uses `Suite::Ed25519`.
pub fn wrap_for(
    suite: Suite,
    recipient_public: &[u8],
    key: &DataKey,
    context: &[u8],
) -> Result<Vec<u8>> {
    let bad_key = || EnvelopeError::BadRecipientKey {
        suite,
        len: recipient_public.len(),
    };
    if recipient_public.len() != suite.public_key_len()
        || suite.check_public_key(recipient_public).is_err()
    {
        return Err(bad_key());
    }
    match suite {
        Suite::Ed25519 => wrap::wrap_x25519(recipient_public, key, context),
        Suite::Sm => wrap::wrap_sm2(recipient_public, key, context),
    }
}

/// Recovers a data key wrapped by [`wrap_for`] with the recipient's key file and the same
/// `context`.
pub fn unwrap_with(key: &SigningKey, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
    parse_header(wrapped, Some(key.suite()))?;
    match key {
        SigningKey::Ed25519(k) => wrap::unwrap_x25519(k, wrapped, context),
        SigningKey::Sm2(k) => {
            let mut secret = k.to_bytes();
            let key = wrap::unwrap_sm2(&secret, &key.public(), wrapped, context);
            let secret_bytes: &mut [u8] = &mut secret;
            secret_bytes.zeroize();
            key
        }
    }
}

/// Key release in one step: opens the custodian's copy (`held`, wrapped to `custodian`
/// under `held_context`) and wraps the data key to `recipient_public` under
/// `release_context`. The plaintext key exists only inside this call.
pub fn rewrap(
    custodian: &SigningKey,
    held: &[u8],
    held_context: &[u8],
    recipient_suite: Suite,
    recipient_public: &[u8],
    release_context: &[u8],
) -> Result<Vec<u8>> {
    let key = unwrap_with(custodian, held, held_context)?;
    wrap_for(recipient_suite, recipient_public, &key, release_context)
}

mod wrap;

#[cfg(test)]
mod tests;
