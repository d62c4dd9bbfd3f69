//! Access to records: request -> approvals per policy -> grant with expiry; revoke;
//! break-glass; and the key-release audit entry a custodian node must commit before it
//! hands out a data key.

use super::actor::{Actor, active_member, members, resolve};
use super::audit::{self, Event};
use super::identity::patient_public_key;
use super::records::{self, NO_BREAK_GLASS_FROM, NO_RESEARCH_FROM, RecordRec};
use super::{Env, Outcome, Overlay, invalid, unauthorized};
use crate::ledger::ChainCtx;
use medledger_api::emr::valid_id;
use medledger_api::pb::{
    ApproveAccess, BreakGlass, KeyReleased, RequestAccess, RevokeAccess, TxResult,
};
use medledger_api::policy::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The longest grant a request may ask for.
pub const MAX_GRANT_MS: i64 = 90 * 24 * 3600 * 1000;
/// How long a break-glass grant lasts.
pub const BREAK_GLASS_MS: i64 = 24 * 3600 * 1000;

pub const PURPOSES: [&str; 3] = ["treatment", "research", "audit"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessState {
    Pending,
    Granted,
    Revoked,
}

impl AccessState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessState::Pending => "pending",
            AccessState::Granted => "granted",
            AccessState::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRec {
    pub request_id: String,
    pub requester: Vec<u8>,
    pub requester_role: String,
    /// Empty for a request covering every record of `patient` held by `custodian`.
    pub record_id: String,
    pub patient: String,
    pub custodian: String,
    pub purpose: String,
    pub expires_at_ms: i64,
    pub policy: String,
    pub approvals: BTreeSet<String>,
    pub state: AccessState,
    pub break_glass: bool,
    pub granted_at_ms: i64,
    pub granted_height: u64,
    pub reason: String,
}

impl AccessRec {
    /// Whether the grant lets its requester read `record` at `now_ms`.
    pub fn covers(&self, record: &RecordRec, now_ms: i64) -> Result<(), String> {
        if self.state != AccessState::Granted {
            return Err(format!(
                "access {} is {}, not granted",
                self.request_id,
                self.state.as_str()
            ));
        }
        if now_ms >= self.expires_at_ms {
            return Err(format!("access {} has expired", self.request_id));
        }
        let in_scope = if self.record_id.is_empty() {
            record.patient == self.patient && record.custodian == self.custodian
        } else {
            record.record_id == self.record_id
        };
        if !in_scope {
            return Err(format!(
                "access {} does not cover record {}",
                self.request_id, record.record_id
            ));
        }
        Ok(())
    }
}

pub fn access_key(id: &str) -> String {
    format!("access/{id}")
}

pub fn get(ov: &Overlay<'_>, id: &str) -> Option<AccessRec> {
    ov.get(&access_key(id))
}

/// What a request or break-glass targets: (record id or "", patient, custodian).
fn target(
    ctx: &ChainCtx,
    ov: &Overlay<'_>,
    record_id: &str,
    patient: &str,
    custodian: &str,
) -> Result<(Option<RecordRec>, String, String), TxResult> {
    if !record_id.is_empty() {
        let r = records::get(ov, record_id)
            .ok_or_else(|| invalid(format!("record {record_id} does not exist")))?;
        let (p, c) = (r.patient.clone(), r.custodian.clone());
        return Ok((Some(r), p, c));
    }
    if patient_public_key(ov, patient).is_none() {
        return Err(invalid(format!(
            "name a record_id, or a registered patient and a custodian (patient {patient:?} is unknown)"
        )));
    }
    if active_member(&members(ctx, ov), custodian).is_none() {
        return Err(invalid(format!(
            "custodian {custodian:?} is not a current member"
        )));
    }
    Ok((None, patient.to_string(), custodian.to_string()))
}

pub fn request(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    r: &RequestAccess,
) -> Outcome {
    let Some(Actor::Participant(who)) = resolve(ctx, ov, signer) else {
        return Err(unauthorized(
            "only registered clinicians, researchers and auditors may request access",
        ));
    };
    let allowed = match r.purpose.as_str() {
        "treatment" => who.role == "clinician",
        "research" => who.role == "researcher" || who.role == "clinician",
        "audit" => who.role == "auditor",
        _ => {
            return Err(invalid(format!(
                "purpose {:?} is not one of {PURPOSES:?}",
                r.purpose
            )));
        }
    };
    if !allowed {
        return Err(unauthorized(format!(
            "a {} may not request access for {}",
            who.role, r.purpose
        )));
    }
    if !valid_id(&r.request_id) {
        return Err(invalid(
            "request_id must be 1-128 letters, digits, '.', '_' or '-'",
        ));
    }
    if get(ov, &r.request_id).is_some() {
        return Err(invalid(format!(
            "request {} already exists: use a new id",
            r.request_id
        )));
    }
    if r.expires_at_ms <= env.now_ms || r.expires_at_ms > env.now_ms + MAX_GRANT_MS {
        return Err(invalid(
            "expires_at_ms must be in the future and at most 90 days ahead",
        ));
    }
    let (record, patient, custodian) = target(ctx, ov, &r.record_id, &r.patient, &r.custodian)?;
    if r.purpose == "research"
        && record
            .as_ref()
            .is_some_and(|rec| rec.sensitivity >= NO_RESEARCH_FROM)
    {
        return Err(unauthorized(
            "this record is restricted (sensitivity 4): it is never released for research",
        ));
    }
    let policies = &ctx.genesis.policies;
    let policy = if r.purpose == "research" {
        policies.research_access_policy()
    } else {
        policies.record_access_policy()
    };
    let rec = AccessRec {
        request_id: r.request_id.clone(),
        requester: signer.to_vec(),
        requester_role: who.role.clone(),
        record_id: r.record_id.clone(),
        patient: patient.clone(),
        custodian,
        purpose: r.purpose.clone(),
        expires_at_ms: r.expires_at_ms,
        policy: policy.to_string(),
        approvals: BTreeSet::new(),
        state: AccessState::Pending,
        break_glass: false,
        granted_at_ms: 0,
        granted_height: 0,
        reason: String::new(),
    };
    audit::record(
        ov,
        env,
        &patient,
        Event {
            kind: "access-requested",
            actor: signer,
            actor_role: &who.role,
            record_id: &rec.record_id,
            request_id: &rec.request_id,
            purpose: &rec.purpose,
            detail: format!("policy {}", rec.policy),
            ..Default::default()
        },
    );
    ov.put(access_key(&r.request_id), &rec);
    Ok(())
}

/// The principals of an access policy that `signer` embodies for `rec`.
fn principals_of(
    ctx: &ChainCtx,
    ov: &Overlay<'_>,
    signer: &[u8],
    rec: &AccessRec,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if patient_public_key(ov, &rec.patient).as_deref() == Some(signer) {
        out.insert("patient".to_string());
    }
    match resolve(ctx, ov, signer) {
        Some(Actor::Member(m)) => {
            if m == rec.custodian {
                out.insert("custodian".to_string());
            }
            out.insert(format!("member:{m}"));
        }
        Some(Actor::Participant(p)) if p.role == "ethics" && p.member == rec.custodian => {
            out.insert("ethics".to_string());
        }
        _ => {}
    }
    out
}

pub fn approve(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    a: &ApproveAccess,
) -> Outcome {
    let Some(mut rec) = get(ov, &a.request_id) else {
        return Err(invalid(format!("request {} does not exist", a.request_id)));
    };
    if rec.state != AccessState::Pending {
        return Err(invalid(format!(
            "request {} is already {}",
            rec.request_id,
            rec.state.as_str()
        )));
    }
    if env.now_ms >= rec.expires_at_ms {
        return Err(invalid(format!(
            "request {} expired before it was approved: request again",
            rec.request_id
        )));
    }
    let policy = Policy::parse(&rec.policy).expect("stored policies parse");
    let named = policy.principals();
    let mine: BTreeSet<String> = principals_of(ctx, ov, signer, &rec)
        .into_iter()
        .filter(|p| named.contains(p))
        .collect();
    if mine.is_empty() {
        return Err(unauthorized(format!(
            "the signer is none of the principals of this request's policy {}",
            rec.policy
        )));
    }
    if mine.is_subset(&rec.approvals) {
        return Err(invalid(format!(
            "already approved as {}",
            mine.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let role = mine.iter().next().cloned().unwrap_or_default();
    rec.approvals.extend(mine.iter().cloned());
    let member_names = members(ctx, ov)
        .into_iter()
        .filter(|m| m.active)
        .map(|m| m.name)
        .collect();
    audit::record(
        ov,
        env,
        &rec.patient.clone(),
        Event {
            kind: "access-approved",
            actor: signer,
            actor_role: &role,
            record_id: &rec.record_id,
            request_id: &rec.request_id,
            purpose: &rec.purpose,
            detail: format!(
                "approved as {}",
                mine.into_iter().collect::<Vec<_>>().join(", ")
            ),
            ..Default::default()
        },
    );
    if policy.satisfied(&rec.approvals, &member_names) {
        rec.state = AccessState::Granted;
        rec.granted_at_ms = env.now_ms;
        rec.granted_height = env.height;
        // A sharing record: who got access to what, for what, until when.
        audit::record(
            ov,
            env,
            &rec.patient.clone(),
            Event {
                kind: "access-granted",
                actor: &rec.requester.clone(),
                actor_role: &rec.requester_role.clone(),
                record_id: &rec.record_id,
                request_id: &rec.request_id,
                purpose: &rec.purpose,
                detail: format!("until {} ms; policy {}", rec.expires_at_ms, rec.policy),
                ..Default::default()
            },
        );
    }
    ov.put(access_key(&rec.request_id), &rec);
    Ok(())
}

pub fn revoke(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    r: &RevokeAccess,
) -> Outcome {
    let Some(mut rec) = get(ov, &r.request_id) else {
        return Err(invalid(format!("request {} does not exist", r.request_id)));
    };
    if rec.state == AccessState::Revoked {
        return Err(invalid(format!(
            "request {} is already revoked",
            r.request_id
        )));
    }
    let p = principals_of(ctx, ov, signer, &rec);
    let role = if p.contains("patient") {
        "patient"
    } else if p.contains("custodian") {
        "custodian"
    } else if rec.requester == signer {
        "requester"
    } else {
        return Err(unauthorized(
            "only the patient, the custodian or the requester may revoke access",
        ));
    };
    rec.state = AccessState::Revoked;
    rec.reason = r.reason.chars().take(256).collect();
    audit::record(
        ov,
        env,
        &rec.patient.clone(),
        Event {
            kind: "access-revoked",
            actor: signer,
            actor_role: role,
            record_id: &rec.record_id,
            request_id: &rec.request_id,
            purpose: &rec.purpose,
            break_glass: rec.break_glass,
            detail: rec.reason.clone(),
        },
    );
    ov.put(access_key(&rec.request_id), &rec);
    Ok(())
}

pub fn break_glass(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    b: &BreakGlass,
) -> Outcome {
    let who = match resolve(ctx, ov, signer) {
        Some(Actor::Participant(p)) if p.role == "clinician" => p,
        _ => {
            return Err(unauthorized(
                "only a registered clinician may break the glass",
            ));
        }
    };
    if b.reason.trim().len() < 10 {
        return Err(invalid(
            "break-glass needs a reason of at least 10 characters: it is shown to the patient",
        ));
    }
    if !valid_id(&b.request_id) || get(ov, &b.request_id).is_some() {
        return Err(invalid(
            "request_id must be a new id of 1-128 letters, digits, '.', '_' or '-'",
        ));
    }
    let (record, patient, custodian) = target(ctx, ov, &b.record_id, &b.patient, &b.custodian)?;
    if record
        .as_ref()
        .is_some_and(|r| r.sensitivity >= NO_BREAK_GLASS_FROM)
    {
        return Err(unauthorized(
            "this record is highly sensitive (level 3 or more): break-glass does not apply; ask the patient and custodian",
        ));
    }
    let rec = AccessRec {
        request_id: b.request_id.clone(),
        requester: signer.to_vec(),
        requester_role: who.role.clone(),
        record_id: b.record_id.clone(),
        patient: patient.clone(),
        custodian,
        purpose: "treatment".into(),
        expires_at_ms: env.now_ms + BREAK_GLASS_MS,
        policy: "break-glass".into(),
        approvals: BTreeSet::new(),
        state: AccessState::Granted,
        break_glass: true,
        granted_at_ms: env.now_ms,
        granted_height: env.height,
        reason: b.reason.chars().take(256).collect(),
    };
    audit::record(
        ov,
        env,
        &patient,
        Event {
            kind: "break-glass",
            actor: signer,
            actor_role: &who.role,
            record_id: &rec.record_id,
            request_id: &rec.request_id,
            purpose: "treatment",
            break_glass: true,
            detail: rec.reason.clone(),
        },
    );
    ov.put(access_key(&rec.request_id), &rec);
    Ok(())
}

/// The retrieval record. Signed by the custodian's validator node, and valid only while the
/// grant covers the record: a node that tried to release a key without a grant would get
/// this transaction rejected, and a node releases only after it committed with OK.
pub fn key_released(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    k: &KeyReleased,
) -> Outcome {
    let Some(record) = records::get(ov, &k.record_id) else {
        return Err(invalid(format!("record {} does not exist", k.record_id)));
    };
    match resolve(ctx, ov, signer) {
        Some(Actor::Node(m)) if m == record.custodian => {}
        _ => {
            return Err(unauthorized(format!(
                "only the custodian's node ({}) releases this record's key",
                record.custodian
            )));
        }
    }
    let Some(rec) = get(ov, &k.request_id) else {
        return Err(invalid(format!("request {} does not exist", k.request_id)));
    };
    if rec.requester != k.requester {
        return Err(unauthorized(
            "the key is asked for by someone other than the requester",
        ));
    }
    rec.covers(&record, env.now_ms).map_err(unauthorized)?;
    audit::record(
        ov,
        env,
        &record.patient,
        Event {
            kind: "key-released",
            actor: &rec.requester,
            actor_role: &rec.requester_role,
            record_id: &record.record_id,
            request_id: &rec.request_id,
            purpose: &rec.purpose,
            break_glass: rec.break_glass,
            detail: format!("released by {}", record.custodian),
        },
    );
    Ok(())
}
