//! A proposal: the unit the leader replicates through Raft. Each committed batch becomes
//! exactly one block when applied.

use super::ChainCtx;
use medledger_api::block::{proposal_digest, tx_root};
use medledger_api::crypto::Hash;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Batch {
    pub proposer: u64,
    pub timestamp_ms: i64,
    /// Encoded `Transaction`s exactly as clients submitted them.
    #[serde(with = "byte_strings")]
    pub txs: Vec<Vec<u8>>,
    /// The proposer's Ed25519 signature over the proposal digest.
    #[serde(with = "byte_strings::one")]
    pub proposer_sig: Vec<u8>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Batch(proposer {}, {} txs)",
            self.proposer,
            self.txs.len()
        )
    }
}

impl Batch {
    pub fn sign(
        ctx: &ChainCtx,
        proposer: u64,
        key: &ed25519_dalek::SigningKey,
        txs: Vec<Vec<u8>>,
        timestamp_ms: i64,
    ) -> Batch {
        use ed25519_dalek::Signer;
        let root = tx_root(ctx.suite, &txs);
        let digest = proposal_digest(ctx.suite, &ctx.chain_id, proposer, timestamp_ms, &root);
        Batch {
            proposer,
            timestamp_ms,
            txs,
            proposer_sig: key.sign(&digest).to_bytes().to_vec(),
        }
    }
}

/// What applying one Raft entry produced, returned to the proposer's waiting clients.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Height of the block the batch became; 0 for Raft-internal entries.
    pub height: u64,
    pub results: Vec<(i32, String)>,
    pub tx_ids: Vec<Hash>,
}

/// Byte strings as serde "bytes" rather than sequences of `u8`. The encoding bincode produces
/// is the same (a length, then the bytes), but it is copied in one piece instead of visited
/// byte by byte, which was a tenth of a node's CPU under load (every batch is encoded for the
/// Raft log and for each follower, and decoded again on the other side).
mod byte_strings {
    use serde::de::{SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    struct AsBytes<'a>(&'a [u8]);
    impl serde::Serialize for AsBytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Owned(Vec<u8>);
    impl<'de> serde::Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_byte_buf(BytesVisitor).map(Owned)
        }
    }

    struct BytesVisitor;
    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        // Formats that have no byte strings (JSON) hand over a sequence of numbers.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element::<u8>()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&AsBytes(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = Vec<Vec<u8>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of byte strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(Owned(b)) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_seq(ListVisitor)
    }

    pub mod one {
        use super::*;
        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            d.deserialize_byte_buf(BytesVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        Batch {
            proposer: 7,
            timestamp_ms: 1234,
            txs: vec![vec![1, 2, 3], vec![], vec![0xff; 300]],
            proposer_sig: vec![9; 64],
        }
    }

    #[test]
    fn bincode_encoding_is_unchanged_and_round_trips() {
        // The same bytes as the derived encoding of plain `Vec<u8>` fields, so logs and peers
        // written before the change still decode.
        #[derive(Serialize)]
        struct Plain {
            proposer: u64,
            timestamp_ms: i64,
            txs: Vec<Vec<u8>>,
            proposer_sig: Vec<u8>,
        }
        let b = sample();
        let plain = Plain {
            proposer: b.proposer,
            timestamp_ms: b.timestamp_ms,
            txs: b.txs.clone(),
            proposer_sig: b.proposer_sig.clone(),
        };
        let bytes = bincode::serialize(&b).unwrap();
        assert_eq!(bytes, bincode::serialize(&plain).unwrap());
        assert_eq!(bincode::deserialize::<Batch>(&bytes).unwrap(), b);
    }

    #[test]
    fn json_round_trips() {
        let b = sample();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Batch>(&json).unwrap(), b);
    }
}
