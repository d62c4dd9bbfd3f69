//! The client side of the EMR flows, shared by the CLI, the demo, the EMR benchmark and the
//! tests: records are encrypted here, before anything leaves the caller's process.

use super::client::{channel, next_nonce, submit};
use crate::blob::{BlobBackend, BlobStore};
use crate::envelope::{self, DataKey};
use crate::metrics::code_name;
use anyhow::{Result, anyhow, bail};
use medledger_api::crypto::Suite;
use medledger_api::emr::{key_request_claim, pseudonym, record_claim};
use medledger_api::keys::SigningKey;
use medledger_api::pb::{
    AccessInfo, ApproveAccess, AuditEvent, BreakGlass, GetAccessRequest, ListAuditRequest,
    ListMembersRequest, MemberInfo, RecordInfo, RegisterParticipant, RegisterRecord,
    ReleaseKeyRequest, RequestAccess, RevokeAccess, StatusRequest, SubmitTxResponse,
    emr_client::EmrClient, ledger_client::LedgerClient, tx_body::Op,
};
use tonic::transport::Channel;

/// A connection to one node, with the chain facts every flow needs.
pub struct Emr {
    pub ledger: LedgerClient<Channel>,
    pub emr: EmrClient<Channel>,
    pub chain_id: String,
    pub suite: Suite,
    /// The member (hospital) whose node this is.
    pub member: String,
}

/// What `put_record` registered.
#[derive(Debug, Clone)]
pub struct PutRecord {
    pub record_id: String,
    pub cid: String,
    pub height: u64,
    pub size: u64,
}

fn rpc(s: tonic::Status) -> anyhow::Error {
    anyhow!("{}", s.message())
}

impl Emr {
    pub async fn connect(url: &str) -> Result<Emr> {
        let ch = channel(url).await?;
        let mut ledger = LedgerClient::new(ch.clone()).max_decoding_message_size(64 << 20);
        let s = ledger
            .status(StatusRequest {})
            .await
            .map_err(rpc)?
            .into_inner();
        let suite = match s.suite.as_str() {
            "sm" => Suite::Sm,
            _ => Suite::Ed25519,
        };
        Ok(Emr {
            ledger,
            emr: EmrClient::new(ch).max_decoding_message_size(64 << 20),
            chain_id: s.chain_id,
            suite,
            member: s.member,
        })
    }

    /// Signs `op` with the signer's next nonce and waits for it to commit. A rejection is an
    /// error carrying the ledger's reason.
    pub async fn submit(&mut self, key: &SigningKey, op: Op) -> Result<SubmitTxResponse> {
        let nonce = next_nonce(&mut self.ledger, key).await?;
        let tx = medledger_api::tx::build(key, &self.chain_id, nonce, op);
        let r = submit(&mut self.ledger, tx, 20).await?;
        if r.code != 0 {
            bail!("rejected: {} — {}", code_name(r.code), r.reason);
        }
        self.wait_height(r.height).await?;
        Ok(r)
    }

    /// Read-your-writes: waits until the connected node has applied `height` (a follower
    /// answers a forwarded submission once the leader applied it, and may lag a moment).
    pub async fn wait_height(&mut self, height: u64) -> Result<()> {
        for _ in 0..200 {
            let s = self
                .ledger
                .status(StatusRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            if s.height >= height {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        bail!("the node has not applied height {height} after 5 s")
    }

    /// Registers a participant key; returns the patient pseudonym for patients, else "".
    pub async fn register_participant(
        &mut self,
        admin: &SigningKey,
        public_key: Vec<u8>,
        role: &str,
        department: &str,
    ) -> Result<String> {
        let p = if role == "patient" {
            pseudonym(self.suite, &public_key)
        } else {
            String::new()
        };
        self.submit(
            admin,
            Op::RegisterParticipant(RegisterParticipant {
                public_key,
                role: role.into(),
                department: department.into(),
            }),
        )
        .await?;
        Ok(p)
    }

    pub async fn members(&mut self) -> Result<Vec<MemberInfo>> {
        Ok(self
            .emr
            .list_members(ListMembersRequest {})
            .await
            .map_err(rpc)?
            .into_inner()
            .members)
    }

    /// Encrypts `plaintext` under a fresh data key, stores the ciphertext, wraps the data key
    /// to this node's hospital (the custodian) and registers the record with the patient's
    /// signature. `signer` is the custodian's administrator or one of its clinicians.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_record(
        &mut self,
        store: &BlobBackend,
        signer: &SigningKey,
        patient: &SigningKey,
        record_id: &str,
        plaintext: &[u8],
        sensitivity: u32,
        category: &str,
    ) -> Result<PutRecord> {
        let custodian = self.member.clone();
        let node_key = self
            .members()
            .await?
            .into_iter()
            .find(|m| m.name == custodian && m.active)
            .map(|m| m.node_key)
            .ok_or_else(|| anyhow!("{custodian} is not an active member"))?;
        let node_key = hex::decode(node_key)?;
        let data_key = DataKey::generate();
        let sealed = envelope::seal(self.suite, &data_key, plaintext, record_id.as_bytes())?;
        let blob = store.put(sealed).await?;
        let custody_key = envelope::wrap_for(
            Suite::Ed25519,
            &node_key,
            &data_key,
            &envelope::custody_context(record_id),
        )?;
        let mut rec = RegisterRecord {
            record_id: record_id.into(),
            patient: pseudonym(self.suite, &patient.public()),
            cid: blob.cid.clone(),
            content_hash: blob.hash.to_vec(),
            sensitivity,
            category: category.into(),
            size: plaintext.len() as u64,
            custody_key,
            patient_signature: vec![],
        };
        rec.patient_signature = patient.sign(&record_claim(&self.chain_id, &custodian, &rec));
        let r = self.submit(signer, Op::RegisterRecord(rec)).await?;
        Ok(PutRecord {
            record_id: record_id.into(),
            cid: blob.cid,
            height: r.height,
            size: plaintext.len() as u64,
        })
    }

    /// Asks this node (the record's custodian) for the data key under a grant, fetches the
    /// ciphertext, checks its hash and decrypts it.
    pub async fn get_record(
        &mut self,
        store: &BlobBackend,
        requester: &SigningKey,
        request_id: &str,
        record_id: &str,
    ) -> Result<(Vec<u8>, RecordInfo)> {
        let claim = key_request_claim(
            &self.chain_id,
            request_id,
            record_id,
            crate::service::submit::now_ms(),
        );
        let r = self
            .emr
            .release_key(ReleaseKeyRequest {
                signature: requester.sign(&claim),
                claim,
                requester: requester.public(),
            })
            .await
            .map_err(rpc)?
            .into_inner();
        let info = r.record.ok_or_else(|| anyhow!("the node sent no record"))?;
        let data_key = envelope::unwrap_with(
            requester,
            &r.wrapped_key,
            &envelope::wrap_context(record_id, request_id),
        )?;
        let hash: [u8; 32] = info
            .content_hash
            .as_slice()
            .try_into()
            .map_err(|_| anyhow!("content hash on chain is not 32 bytes"))?;
        let sealed = store.get(&info.cid, &hash).await?;
        let plain = envelope::open(self.suite, &data_key, &sealed, record_id.as_bytes())?;
        Ok((plain, info))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn request_access(
        &mut self,
        requester: &SigningKey,
        request_id: &str,
        record_id: &str,
        patient: &str,
        custodian: &str,
        purpose: &str,
        expires_at_ms: i64,
    ) -> Result<SubmitTxResponse> {
        self.submit(
            requester,
            Op::RequestAccess(RequestAccess {
                request_id: request_id.into(),
                record_id: record_id.into(),
                patient: patient.into(),
                custodian: custodian.into(),
                purpose: purpose.into(),
                expires_at_ms,
            }),
        )
        .await
    }

    pub async fn approve(
        &mut self,
        key: &SigningKey,
        request_id: &str,
    ) -> Result<SubmitTxResponse> {
        self.submit(
            key,
            Op::ApproveAccess(ApproveAccess {
                request_id: request_id.into(),
            }),
        )
        .await
    }

    pub async fn revoke(
        &mut self,
        key: &SigningKey,
        request_id: &str,
        reason: &str,
    ) -> Result<SubmitTxResponse> {
        self.submit(
            key,
            Op::RevokeAccess(RevokeAccess {
                request_id: request_id.into(),
                reason: reason.into(),
            }),
        )
        .await
    }

    pub async fn break_glass(
        &mut self,
        key: &SigningKey,
        request_id: &str,
        record_id: &str,
        reason: &str,
    ) -> Result<SubmitTxResponse> {
        self.submit(
            key,
            Op::BreakGlass(BreakGlass {
                request_id: request_id.into(),
                record_id: record_id.into(),
                reason: reason.into(),
                ..Default::default()
            }),
        )
        .await
    }

    pub async fn access(&mut self, request_id: &str) -> Result<AccessInfo> {
        Ok(self
            .emr
            .get_access(GetAccessRequest {
                request_id: request_id.into(),
            })
            .await
            .map_err(rpc)?
            .into_inner())
    }

    pub async fn audit(&mut self, patient: &str) -> Result<Vec<AuditEvent>> {
        Ok(self
            .emr
            .list_audit(ListAuditRequest {
                patient: patient.into(),
            })
            .await
            .map_err(rpc)?
            .into_inner()
            .events)
    }
}
