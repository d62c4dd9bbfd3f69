use super::*;

const SUITES: [Suite; 2] = [Suite::Ed25519, Suite::Sm];

#[test]
fn seal_round_trips_on_both_suites() {
    for suite in SUITES {
        let key = DataKey::generate();
        for size in [0, 1, 4096, 100_000] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sealed = seal(suite, &key, &plain, b"record-1").unwrap();
            assert_eq!(sealed.len(), plain.len() + 2 + 12 + 16);
            // 16 bytes, so a chance match (2^-128) cannot make this flaky.
            if size >= 16 {
                assert_ne!(&sealed[14..30], &plain[..16]);
            }
            assert_eq!(open(suite, &key, &sealed, b"record-1").unwrap(), plain);
        }
    }
}

#[test]
fn sealing_twice_gives_different_ciphertexts() {
    let key = DataKey::generate();
    let a = seal(Suite::Ed25519, &key, b"same", b"").unwrap();
    let b = seal(Suite::Ed25519, &key, b"same", b"").unwrap();
    assert_ne!(a, b, "nonces are random");
}

#[test]
fn wrong_key_aad_or_tampering_fails_to_open() {
    for suite in SUITES {
        let key = DataKey::generate();
        let sealed = seal(suite, &key, b"blood type: O-", b"rec").unwrap();
        let other = DataKey::generate();
        assert_eq!(
            open(suite, &other, &sealed, b"rec"),
            Err(EnvelopeError::Decrypt)
        );
        assert_eq!(
            open(suite, &key, &sealed, b"rec2"),
            Err(EnvelopeError::Decrypt)
        );
        for i in [2, 14, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                open(suite, &key, &bad, b"rec"),
                Err(EnvelopeError::Decrypt),
                "{suite}: flipped byte {i}"
            );
        }
        assert!(matches!(
            open(suite, &key, &sealed[..20], b"rec"),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}

#[test]
fn wrong_suite_or_version_fails_clearly() {
    let key = DataKey::generate();
    let sealed = seal(Suite::Sm, &key, b"x", b"").unwrap();
    assert_eq!(
        open(Suite::Ed25519, &key, &sealed, b""),
        Err(EnvelopeError::WrongSuite {
            expected: Suite::Ed25519,
            found: Suite::Sm
        })
    );
    let mut relabelled = sealed.clone();
    relabelled[1] = 1;
    assert_eq!(
        open(Suite::Ed25519, &key, &relabelled, b""),
        Err(EnvelopeError::Decrypt),
        "the header is authenticated"
    );
    let mut future = sealed;
    future[0] = 9;
    assert_eq!(
        open(Suite::Sm, &key, &future, b""),
        Err(EnvelopeError::UnsupportedVersion(9))
    );
    assert!(matches!(
        open(Suite::Sm, &key, &[], b""),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn sm4_key_is_derived_not_truncated() {
    let key = DataKey::from_bytes([7; 32]);
    assert_ne!(key.sm4_key().as_slice(), &[7u8; 16]);
    // Every byte of the data key matters, including the second half.
    let mut other = [7u8; 32];
    other[31] = 8;
    assert_ne!(*key.sm4_key(), *DataKey::from_bytes(other).sm4_key());
}

#[test]
fn wrap_round_trips_on_both_suites() {
    for suite in SUITES {
        let recipient = SigningKey::generate(suite);
        let key = DataKey::generate();
        let ctx = wrap_context("rec-1", "grant-1");
        let wrapped = wrap_for(suite, &recipient.public(), &key, &ctx).unwrap();
        let back = unwrap_with(&recipient, &wrapped, &ctx).unwrap();
        assert_eq!(back, key, "{suite}");
        // Each wrap uses a fresh ephemeral secret.
        assert_ne!(
            wrap_for(suite, &recipient.public(), &key, &ctx).unwrap(),
            wrapped
        );
    }
}

#[test]
fn unwrap_with_the_wrong_key_fails() {
    for suite in SUITES {
        let recipient = SigningKey::generate(suite);
        let other = SigningKey::generate(suite);
        let ctx = wrap_context("rec-1", "grant-1");
        let wrapped = wrap_for(suite, &recipient.public(), &DataKey::generate(), &ctx).unwrap();
        assert_eq!(
            unwrap_with(&other, &wrapped, &ctx),
            Err(EnvelopeError::Unwrap)
        );
    }
}

#[test]
fn unwrap_in_another_context_fails() {
    for suite in SUITES {
        let recipient = SigningKey::generate(suite);
        let wrapped = wrap_for(
            suite,
            &recipient.public(),
            &DataKey::generate(),
            &wrap_context("rec-1", "grant-1"),
        )
        .unwrap();
        for ctx in [
            wrap_context("rec-2", "grant-1"),
            wrap_context("rec-1", "grant-2"),
            wrap_context("rec-1g", "rant-1"),
        ] {
            assert_eq!(
                unwrap_with(&recipient, &wrapped, &ctx),
                Err(EnvelopeError::Unwrap),
                "{suite}"
            );
        }
    }
}

#[test]
fn tampered_wrap_fails() {
    for suite in SUITES {
        let recipient = SigningKey::generate(suite);
        let ctx = b"ctx";
        let wrapped = wrap_for(suite, &recipient.public(), &DataKey::generate(), ctx).unwrap();
        for i in [3, wrapped.len() / 2, wrapped.len() - 1] {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x40;
            assert!(
                unwrap_with(&recipient, &bad, ctx).is_err(),
                "{suite}: flipped byte {i}"
            );
        }
        assert!(unwrap_with(&recipient, &wrapped[..wrapped.len() - 1], ctx).is_err());
    }
}

#[test]
fn wrong_suite_key_or_recipient_is_refused() {
    let ed = SigningKey::generate(Suite::Ed25519);
    let sm = SigningKey::generate(Suite::Sm);
    let key = DataKey::generate();
    let wrapped = wrap_for(Suite::Ed25519, &ed.public(), &key, b"c").unwrap();
    assert_eq!(
        unwrap_with(&sm, &wrapped, b"c"),
        Err(EnvelopeError::WrongSuite {
            expected: Suite::Sm,
            found: Suite::Ed25519
        })
    );
    assert!(matches!(
        wrap_for(Suite::Ed25519, &sm.public(), &key, b"c"),
        Err(EnvelopeError::BadRecipientKey { .. })
    ));
    assert!(matches!(
        wrap_for(Suite::Sm, &ed.public(), &key, b"c"),
        Err(EnvelopeError::BadRecipientKey { .. })
    ));
    // The Ed25519 identity point maps to a small-order X25519 point: no shared secret.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(
        wrap_for(Suite::Ed25519, &identity, &key, b"c"),
        Err(EnvelopeError::BadRecipientKey { .. })
    ));
}

#[test]
fn x25519_conversion_matches_the_signing_key() {
    // The secret side (`to_scalar_bytes`) and the public side (`to_montgomery`) agree.
    let SigningKey::Ed25519(k) = SigningKey::generate(Suite::Ed25519) else {
        unreachable!()
    };
    let secret = x25519_dalek::StaticSecret::from(k.to_scalar_bytes());
    assert_eq!(
        x25519_dalek::PublicKey::from(&secret).to_bytes(),
        k.verifying_key().to_montgomery().to_bytes()
    );
}

#[test]
fn debug_never_shows_key_material() {
    let key = DataKey::from_bytes([0xab; 32]);
    let shown = format!("{key:?}");
    assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
}

#[test]
fn content_hash_follows_the_suite() {
    assert_eq!(
        content_hash(Suite::Ed25519, b"abc"),
        Suite::Ed25519.hash(b"abc")
    );
    assert_eq!(content_hash(Suite::Sm, b"abc"), Suite::Sm.hash(b"abc"));
    assert_ne!(
        content_hash(Suite::Sm, b"abc"),
        content_hash(Suite::Ed25519, b"abc")
    );
}

#[test]
fn rewrap_releases_the_custodians_key_to_a_requester_only() {
    // Node keys are Ed25519 in both suites; requesters follow the consortium suite.
    let node = SigningKey::generate(Suite::Ed25519);
    for suite in SUITES {
        let requester = SigningKey::generate(suite);
        let key = DataKey::generate();
        let held = wrap_for(
            Suite::Ed25519,
            &node.public(),
            &key,
            &custody_context("rec-1"),
        )
        .unwrap();
        let release = wrap_context("rec-1", "grant-9");
        let released = rewrap(
            &node,
            &held,
            &custody_context("rec-1"),
            suite,
            &requester.public(),
            &release,
        )
        .unwrap();
        assert_eq!(unwrap_with(&requester, &released, &release).unwrap(), key);
        // The custodian's copy is not itself a release, and is bound to its record.
        assert!(unwrap_with(&node, &held, &wrap_context("rec-1", "")).is_err());
        assert_eq!(
            rewrap(
                &node,
                &held,
                &custody_context("rec-2"),
                suite,
                &requester.public(),
                &release
            ),
            Err(EnvelopeError::Unwrap)
        );
    }
}

#[test]
fn aes_gcm_output_is_the_standard_one() {
    // Records sealed with the RustCrypto implementation (before ring) must still open, and
    // ring's output must be plain AES-256-GCM: ciphertext then tag, under the same inputs.
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let key = [7u8; 32];
    let nonce = [9u8; 12];
    let (msg, aad) = (b"patient record".as_slice(), b"aad".as_slice());
    let ours = aead_seal(Suite::Ed25519, &key, &nonce, msg, aad).unwrap();
    let reference = aes_gcm::Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .encrypt(&nonce.into(), Payload { msg, aad })
        .unwrap();
    assert_eq!(ours, reference);
    assert_eq!(
        aead_open(Suite::Ed25519, &key, &nonce, &reference, aad).unwrap(),
        msg
    );
    let mut tampered = reference.clone();
    tampered[0] ^= 1;
    assert!(aead_open(Suite::Ed25519, &key, &nonce, &tampered, aad).is_none());
}
