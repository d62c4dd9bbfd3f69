//! Data-key wrapping to a signing key: ECIES over X25519 for Ed25519 keys, SM2 public-key
//! encryption plus SM4-GCM for SM2 keys. Layouts (after the 2-byte header):
//! - x25519: `[ephemeral X25519 public 32][AES-256-GCM(data key) 32+16]`
//! - sm2:    `[u16 BE length][SM2 ciphertext C1C3C2][SM4-GCM(data key) 32+16]`
//!
//! The AEAD key and nonce come from HKDF over the shared secret, salted with the public
//! ciphertext part and labelled with the scheme, the caller's context and the recipient's
//! signing key, so a wrap opens only for that recipient, that context and that ciphertext.
//! Each wrap has a fresh ephemeral secret, so the derived key is used exactly once and the
//! derived nonce cannot repeat under it.

use super::{
    DATA_KEY_LEN, DataKey, EnvelopeError, FORMAT_VERSION, NONCE_LEN, Result, WRAP_INFO_SM2,
    WRAP_INFO_X25519, aead_open, aead_seal, header_aad, suite_id,
};
use hkdf::Hkdf;
use medledger_api::crypto::Suite;
use zeroize::{Zeroize, Zeroizing};

const X25519_LEN: usize = 32;
const WRAPPED_KEY_LEN: usize = DATA_KEY_LEN + 16;
const AES_KEY_LEN: usize = 32;
const SM4_KEY_LEN: usize = 16;

/// HKDF `info`: scheme label, then context and recipient, each length-prefixed.
fn info(label: &[u8], context: &[u8], recipient: &[u8]) -> Vec<u8> {
    let mut out = label.to_vec();
    for part in [context, recipient] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Derives `key || nonce` for the AEAD protecting the data key.
fn derive_sha256(salt: &[u8], secret: &[u8], info: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut okm = Zeroizing::new(vec![0u8; AES_KEY_LEN + NONCE_LEN]);
    Hkdf::<sha2::Sha256>::new(Some(salt), secret)
        .expand(info, &mut okm)
        .expect("44 bytes is a valid HKDF-SHA256 output length");
    okm
}

fn derive_sm3(salt: &[u8], secret: &[u8], info: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut okm = Zeroizing::new(vec![0u8; SM4_KEY_LEN + NONCE_LEN]);
    Hkdf::<sm3::Sm3>::new(Some(salt), secret)
        .expand(info, &mut okm)
        .expect("28 bytes is a valid HKDF-SM3 output length");
    okm
}

fn data_key_from(mut plain: Vec<u8>) -> Result<DataKey> {
    let key = <[u8; DATA_KEY_LEN]>::try_from(plain.as_slice())
        .map(DataKey::from_bytes)
        .map_err(|_| EnvelopeError::Unwrap);
    plain.zeroize();
    key
}

/// The X25519 form of an Ed25519 public key (the Edwards-to-Montgomery map).
fn montgomery(ed_public: &[u8]) -> Option<x25519_dalek::PublicKey> {
    let arr: [u8; 32] = ed_public.try_into().ok()?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&arr).ok()?;
    Some(x25519_dalek::PublicKey::from(vk.to_montgomery().to_bytes()))
}

pub(super) fn wrap_x25519(recipient: &[u8], key: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
    let bad_key = || EnvelopeError::BadRecipientKey {
        suite: Suite::Ed25519,
        len: recipient.len(),
    };
    let their = montgomery(recipient).ok_or_else(bad_key)?;
    let ephemeral = x25519_dalek::EphemeralSecret::random_from_rng(rand::rngs::OsRng);
    let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(&their);
    // A small-order recipient key gives a predictable shared secret: refuse it.
    if !shared.was_contributory() {
        return Err(bad_key());
    }
    let okm = derive_sha256(
        &[ephemeral_public.as_bytes().as_slice(), their.as_bytes()].concat(),
        shared.as_bytes(),
        &info(WRAP_INFO_X25519, context, recipient),
    );
    let header = [FORMAT_VERSION, suite_id(Suite::Ed25519)];
    let (aead_key, nonce) = okm.split_at(AES_KEY_LEN);
    let ct = aead_seal(
        Suite::Ed25519,
        aead_key,
        nonce,
        key.expose_secret(),
        &header_aad(&header, context),
    )?;
    Ok([&header[..], ephemeral_public.as_bytes(), &ct].concat())
}

pub(super) fn unwrap_x25519(
    key: &ed25519_dalek::SigningKey,
    wrapped: &[u8],
    context: &[u8],
) -> Result<DataKey> {
    if wrapped.len() != 2 + X25519_LEN + WRAPPED_KEY_LEN {
        return Err(EnvelopeError::Malformed("wrong length for an X25519 wrap"));
    }
    let (header, rest) = wrapped.split_at(2);
    let (ephemeral, ct) = rest.split_at(X25519_LEN);
    let ephemeral: [u8; 32] = ephemeral.try_into().expect("split at 32");
    let ephemeral = x25519_dalek::PublicKey::from(ephemeral);
    // The X25519 secret matching `to_montgomery` of the public key: X25519 clamps the
    // same hashed-secret half Ed25519 uses as its scalar.
    let secret = x25519_dalek::StaticSecret::from(*Zeroizing::new(key.to_scalar_bytes()));
    let recipient = key.verifying_key().to_bytes();
    let mine = x25519_dalek::PublicKey::from(key.verifying_key().to_montgomery().to_bytes());
    let shared = secret.diffie_hellman(&ephemeral);
    if !shared.was_contributory() {
        return Err(EnvelopeError::Unwrap);
    }
    let okm = derive_sha256(
        &[ephemeral.as_bytes().as_slice(), mine.as_bytes()].concat(),
        shared.as_bytes(),
        &info(WRAP_INFO_X25519, context, &recipient),
    );
    let (aead_key, nonce) = okm.split_at(AES_KEY_LEN);
    let plain = aead_open(
        Suite::Ed25519,
        aead_key,
        nonce,
        ct,
        &header_aad(header, context),
    )
    .ok_or(EnvelopeError::Unwrap)?;
    data_key_from(plain)
}

pub(super) fn wrap_sm2(recipient: &[u8], key: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
    use sm2_pke::elliptic_curve::common::getrandom::SysRng;
    let encrypting = sm2_pke::pke::EncryptingKey::from_sec1_bytes(recipient).map_err(|_| {
        EnvelopeError::BadRecipientKey {
            suite: Suite::Sm,
            len: recipient.len(),
        }
    })?;
    // KEM/DEM: SM2 carries a fresh secret, SM4-GCM carries the data key bound to the
    // context (SM2 encryption alone has no associated data to bind it to).
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, secret.as_mut());
    let kem = encrypting
        .encrypt(&mut SysRng, secret.as_ref())
        .map_err(|_| EnvelopeError::Encrypt("SM2 encryption failed"))?;
    let kem_len = u16::try_from(kem.len()).expect("an SM2 ciphertext of 32 bytes is small");
    let okm = derive_sm3(
        &kem,
        secret.as_ref(),
        &info(WRAP_INFO_SM2, context, recipient),
    );
    let header = [FORMAT_VERSION, suite_id(Suite::Sm)];
    let (aead_key, nonce) = okm.split_at(SM4_KEY_LEN);
    let ct = aead_seal(
        Suite::Sm,
        aead_key,
        nonce,
        key.expose_secret(),
        &header_aad(&header, context),
    )?;
    Ok([&header[..], &kem_len.to_be_bytes(), &kem, &ct].concat())
}

/// `secret` is the SM2 private scalar, `public` its compressed public key.
pub(super) fn unwrap_sm2(
    secret: &[u8],
    public: &[u8],
    wrapped: &[u8],
    context: &[u8],
) -> Result<DataKey> {
    let (header, rest) = wrapped.split_at(2);
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return Err(EnvelopeError::Malformed("no SM2 ciphertext length"));
    };
    let kem_len = usize::from(u16::from_be_bytes(*len));
    if rest.len() != kem_len + WRAPPED_KEY_LEN {
        return Err(EnvelopeError::Malformed("wrong length for an SM2 wrap"));
    }
    let (kem, ct) = rest.split_at(kem_len);
    let decrypting =
        sm2_pke::pke::DecryptingKey::from_slice(secret).map_err(|_| EnvelopeError::Unwrap)?;
    let shared = Zeroizing::new(decrypting.decrypt(kem).map_err(|_| EnvelopeError::Unwrap)?);
    let okm = derive_sm3(kem, &shared, &info(WRAP_INFO_SM2, context, public));
    let (aead_key, nonce) = okm.split_at(SM4_KEY_LEN);
    let plain = aead_open(Suite::Sm, aead_key, nonce, ct, &header_aad(header, context))
        .ok_or(EnvelopeError::Unwrap)?;
    data_key_from(plain)
}
