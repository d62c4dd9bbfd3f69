//! Encrypted records: the chain holds where the ciphertext is, its hash, who holds it and
//! who it is about (a pseudonym), with the patient's signature. Never the content.

use super::actor::{Actor, resolve};
use super::audit::{self, Event};
use super::identity::patient_public_key;
use super::{Env, Outcome, Overlay, invalid, unauthorized};
use crate::ledger::ChainCtx;
use medledger_api::crypto::HASH_LEN;
use medledger_api::emr::{record_claim, valid_id};
use medledger_api::pb::RegisterRecord;
use serde::{Deserialize, Serialize};

/// Sensitivity levels: 1 normal, 2 sensitive, 3 highly sensitive (no break-glass),
/// 4 restricted (no break-glass, no research).
pub const MAX_SENSITIVITY: u32 = 4;
pub const NO_BREAK_GLASS_FROM: u32 = 3;
pub const NO_RESEARCH_FROM: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRec {
    pub record_id: String,
    pub patient: String,
    pub custodian: String,
    pub cid: String,
    pub content_hash: Vec<u8>,
    pub sensitivity: u32,
    pub category: String,
    pub size: u64,
    pub custody_key: Vec<u8>,
    pub height: u64,
    pub registered_by: Vec<u8>,
}

pub fn record_key(id: &str) -> String {
    format!("record/{id}")
}

pub fn get(ov: &Overlay<'_>, id: &str) -> Option<RecordRec> {
    ov.get(&record_key(id))
}

pub fn register(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    r: &RegisterRecord,
) -> Outcome {
    // The custodian is the hospital of the signer: its administrator or a clinician it
    // registered. A hospital can only register records it holds itself.
    let custodian = match resolve(ctx, ov, signer) {
        Some(Actor::Member(m)) => m,
        Some(Actor::Participant(p)) if p.role == "clinician" => p.member,
        _ => {
            return Err(unauthorized(
                "only a member administrator or a clinician may register records",
            ));
        }
    };
    if !valid_id(&r.record_id) {
        return Err(invalid(
            "record_id must be 1-128 letters, digits, '.', '_' or '-'",
        ));
    }
    if get(ov, &r.record_id).is_some() {
        return Err(invalid(format!(
            "record {} already exists: records are immutable, register a new id",
            r.record_id
        )));
    }
    let Some(patient_key) = patient_public_key(ov, &r.patient) else {
        return Err(invalid(format!(
            "patient {:?} is not registered: register the patient first",
            r.patient
        )));
    };
    if r.cid.is_empty() || r.cid.len() > 128 {
        return Err(invalid("cid must be 1-128 characters"));
    }
    if r.content_hash.len() != HASH_LEN {
        return Err(invalid(format!(
            "content_hash must be {HASH_LEN} bytes ({} of the encrypted blob)",
            if ctx.suite == medledger_api::crypto::Suite::Sm {
                "SM3"
            } else {
                "SHA-256"
            }
        )));
    }
    if !(1..=MAX_SENSITIVITY).contains(&r.sensitivity) {
        return Err(invalid(format!(
            "sensitivity must be 1 to {MAX_SENSITIVITY}"
        )));
    }
    if r.category.is_empty() || r.category.len() > 64 {
        return Err(invalid("category must be 1-64 characters"));
    }
    if r.custody_key.is_empty() || r.custody_key.len() > 1024 {
        return Err(invalid(
            "custody_key (the data key wrapped to the custodian node) is missing or too long",
        ));
    }
    let claim = record_claim(&ctx.chain_id, &custodian, r);
    if ctx
        .suite
        .verify(&patient_key, &claim, &r.patient_signature)
        .is_err()
    {
        return Err(unauthorized(
            "the patient's signature does not cover this record (custodian, cid, hash, sensitivity, category)",
        ));
    }
    ov.put(
        record_key(&r.record_id),
        &RecordRec {
            record_id: r.record_id.clone(),
            patient: r.patient.clone(),
            custodian: custodian.clone(),
            cid: r.cid.clone(),
            content_hash: r.content_hash.clone(),
            sensitivity: r.sensitivity,
            category: r.category.clone(),
            size: r.size,
            custody_key: r.custody_key.clone(),
            height: env.height,
            registered_by: signer.to_vec(),
        },
    );
    audit::record(
        ov,
        env,
        &r.patient,
        Event {
            kind: "record-registered",
            actor: signer,
            actor_role: "custodian",
            record_id: &r.record_id,
            detail: format!("held by {custodian}, category {}", r.category),
            ..Default::default()
        },
    );
    Ok(())
}
