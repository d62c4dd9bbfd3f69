//! Participants registered by their hospital: patients (pseudonymous), clinicians (role and
//! department), researchers, auditors, ethics boards. No personal data is ever on chain.

use super::actor::{Actor, resolve};
use super::audit::{self, Event};
use super::{Env, Outcome, Overlay, invalid, unauthorized};
use crate::ledger::ChainCtx;
use medledger_api::emr::pseudonym;
use medledger_api::pb::{Put, RegisterParticipant};
use serde::{Deserialize, Serialize};

/// Roles a member may register. "client" is a plain application key (tests, integrations).
pub const ROLES: [&str; 6] = [
    "patient",
    "clinician",
    "researcher",
    "auditor",
    "ethics",
    "client",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRec {
    pub role: String,
    pub department: String,
    /// The member (hospital) that registered the participant and vouches for it.
    pub member: String,
    /// For patients: their pseudonym.
    pub pseudonym: String,
}

pub fn participant_key(key: &[u8]) -> String {
    format!("participant/{}", hex::encode(key))
}

pub fn patient_key(pseudonym: &str) -> String {
    format!("patient/{pseudonym}")
}

pub fn participant(ov: &Overlay<'_>, key: &[u8]) -> Option<ParticipantRec> {
    let role = ov.role(key)?;
    Some(ov.get(&participant_key(key)).unwrap_or(ParticipantRec {
        role,
        department: String::new(),
        member: String::new(),
        pseudonym: String::new(),
    }))
}

/// The public key of a registered patient.
pub fn patient_public_key(ov: &Overlay<'_>, pseudonym: &str) -> Option<Vec<u8>> {
    ov.get(&patient_key(pseudonym))
}

pub fn register(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    r: &RegisterParticipant,
) -> Outcome {
    let Some(Actor::Member(member)) = resolve(ctx, ov, signer) else {
        return Err(unauthorized(
            "only a member administrator may register participants",
        ));
    };
    if ctx.suite.check_public_key(&r.public_key).is_err() {
        return Err(invalid(format!(
            "participant key is not a {} public key",
            ctx.suite
        )));
    }
    if !ROLES.contains(&r.role.as_str()) {
        return Err(invalid(format!(
            "role {:?} is not one of {ROLES:?}",
            r.role
        )));
    }
    if r.department.len() > 64 {
        return Err(invalid("department is longer than 64 characters"));
    }
    if r.role != "clinician" && !r.department.is_empty() {
        return Err(invalid("only clinicians have a department"));
    }
    if resolve(ctx, ov, &r.public_key).is_some() {
        return Err(invalid("this key is already registered"));
    }
    let pseudonym = if r.role == "patient" {
        pseudonym(ctx.suite, &r.public_key)
    } else {
        String::new()
    };
    ov.changes
        .participants
        .insert(r.public_key.clone(), r.role.clone());
    if !pseudonym.is_empty() {
        ov.put(patient_key(&pseudonym), &r.public_key);
        audit::record(
            ov,
            env,
            &pseudonym,
            Event {
                kind: "patient-registered",
                actor: signer,
                actor_role: "member",
                detail: format!("registered by {member}"),
                ..Default::default()
            },
        );
    }
    ov.put(
        participant_key(&r.public_key),
        &ParticipantRec {
            role: r.role.clone(),
            department: r.department.clone(),
            member,
            pseudonym,
        },
    );
    Ok(())
}

/// A small application record in the signer's own key space.
pub fn put(ov: &mut Overlay<'_>, signer: &[u8], p: &Put) -> Outcome {
    if p.key.is_empty() || p.key.len() > 256 {
        return Err(invalid("key must be 1 to 256 bytes"));
    }
    ov.changes
        .kv
        .insert(kv_key(signer, &p.key), p.value.clone());
    Ok(())
}

/// Where a signer's record `key` is kept. The store derives records from stored blocks with
/// it too (`store::deferred`), so the two must agree.
pub fn kv_key(signer: &[u8], key: &str) -> String {
    format!("{}/{key}", hex::encode(signer))
}
