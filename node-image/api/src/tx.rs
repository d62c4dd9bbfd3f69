//! Building, identifying and decoding signed transactions.

use crate::crypto::{Hash, Suite};
use crate::keys::SigningKey;
use crate::pb::{Transaction, TxBody, tx_body::Op};
use prost::Message;

/// Signs `op` as `key` for `chain_id` with `nonce` and returns the encoded transaction.
pub fn build(key: &SigningKey, chain_id: &str, nonce: u64, op: Op) -> Vec<u8> {
    let body = TxBody {
        chain_id: chain_id.to_string(),
        signer: key.public(),
        nonce,
        op: Some(op),
    }
    .encode_to_vec();
    let signature = key.sign(&body);
    Transaction { body, signature }.encode_to_vec()
}

/// The id of a transaction: the hash of its body (signer and nonce make it unique).
pub fn tx_id(suite: Suite, tx: &Transaction) -> Hash {
    suite.hash(&tx.body)
}

/// The id of submitted bytes, under the one rule every part of a node uses (ingress, block
/// execution, index back-fill): [`tx_id`] when they decode, else the hash of the bytes, so
/// even a malformed submission has an id under which its rejection can be looked up.
pub fn id_of_raw(suite: Suite, raw: &[u8]) -> Hash {
    match decode(raw) {
        Ok((tx, _)) => tx_id(suite, &tx),
        Err(_) => suite.hash(raw),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("transaction bytes are not a medledger Transaction: {0}")]
    Envelope(String),
    #[error("transaction body is not a medledger TxBody: {0}")]
    Body(String),
    #[error("transaction has no operation")]
    NoOp,
}

/// Decodes a transaction envelope and its body.
pub fn decode(bytes: &[u8]) -> Result<(Transaction, TxBody), DecodeError> {
    let tx = Transaction::decode(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    let body = TxBody::decode(tx.body.as_slice()).map_err(|e| DecodeError::Body(e.to_string()))?;
    if body.op.is_none() {
        return Err(DecodeError::NoOp);
    }
    Ok((tx, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::Put;

    #[test]
    fn build_decode_verify() {
        let k = SigningKey::generate(Suite::Ed25519);
        let bytes = build(
            &k,
            "c",
            7,
            Op::Put(Put {
                key: "k".into(),
                value: b"v".to_vec(),
            }),
        );
        let (tx, body) = decode(&bytes).unwrap();
        assert_eq!(body.nonce, 7);
        assert_eq!(body.signer, k.public());
        Suite::Ed25519
            .verify(&body.signer, &tx.body, &tx.signature)
            .unwrap();
        assert!(decode(b"\xff\xff garbage").is_err());
    }
}
