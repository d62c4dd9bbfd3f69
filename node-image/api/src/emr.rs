//! Shared EMR formats: patient pseudonyms and the exact bytes a patient or requester signs.
//! Both the contracts (which verify) and the CLI (which signs) build them here, so the two
//! can never disagree on an encoding.

use crate::crypto::Suite;
use crate::pb::{KeyRequestClaim, RecordClaim, RegisterRecord};
use prost::Message;

/// A patient's on-chain identity: "p-" and the first 16 bytes of the hash of their public
/// key. It names no person; only someone holding the key can act as that patient.
pub fn pseudonym(suite: Suite, patient_key: &[u8]) -> String {
    format!("p-{}", hex::encode(&suite.hash(patient_key)[..16]))
}

/// The bytes a patient signs to consent to a record being registered about them.
pub fn record_claim(chain_id: &str, custodian: &str, r: &RegisterRecord) -> Vec<u8> {
    RecordClaim {
        chain_id: chain_id.to_string(),
        record_id: r.record_id.clone(),
        patient: r.patient.clone(),
        custodian: custodian.to_string(),
        cid: r.cid.clone(),
        content_hash: r.content_hash.clone(),
        sensitivity: r.sensitivity,
        category: r.category.clone(),
    }
    .encode_to_vec()
}

/// The bytes a requester signs to ask a custodian node for a record's key.
pub fn key_request_claim(chain_id: &str, request_id: &str, record_id: &str, at_ms: i64) -> Vec<u8> {
    KeyRequestClaim {
        chain_id: chain_id.to_string(),
        request_id: request_id.to_string(),
        record_id: record_id.to_string(),
        at_ms,
    }
    .encode_to_vec()
}

/// Identifiers chosen by clients (records, requests, proposals): 1 to 128 characters from
/// letters, digits, '.', '_' and '-'.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_and_reveal_nothing_but_the_key_hash() {
        let k = [7u8; 32];
        let p = pseudonym(Suite::Ed25519, &k);
        assert_eq!(p, pseudonym(Suite::Ed25519, &k));
        assert_eq!(p.len(), 2 + 32);
        assert_ne!(p, pseudonym(Suite::Sm, &k));
    }

    #[test]
    fn ids() {
        assert!(valid_id("rec-2026.11_a"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(129)));
    }
}
