//! The audit trail: every event touching a patient's records, indexed by patient so that
//! `medledger audit --patient` is one ordered scan. Entries are written by the contracts
//! themselves when the event commits, never by a client's say-so.

use super::{Env, Overlay};
use medledger_api::pb::AuditEvent;
use prost::Message;

#[derive(Default)]
pub struct Event<'a> {
    pub kind: &'a str,
    pub actor: &'a [u8],
    pub actor_role: &'a str,
    pub record_id: &'a str,
    pub request_id: &'a str,
    pub purpose: &'a str,
    pub break_glass: bool,
    pub detail: String,
}

pub fn prefix(patient: &str) -> String {
    format!("audit/{patient}/")
}

/// Appends an event to a patient's trail. Keys sort by (height, index, kind) so the trail
/// reads in commit order.
pub fn record(ov: &mut Overlay<'_>, env: &Env, patient: &str, e: Event<'_>) {
    let key = format!(
        "{}{:016x}/{:08x}/{}",
        prefix(patient),
        env.height,
        env.index,
        e.kind
    );
    let ev = AuditEvent {
        height: env.height,
        index: env.index,
        at_ms: env.now_ms,
        kind: e.kind.to_string(),
        actor: e.actor.to_vec(),
        actor_role: e.actor_role.to_string(),
        record_id: e.record_id.to_string(),
        request_id: e.request_id.to_string(),
        purpose: e.purpose.to_string(),
        break_glass: e.break_glass,
        detail: e.detail,
    };
    // Stored as protobuf (not bincode): it is what the audit API returns as is.
    ov.changes.objects.insert(key, ev.encode_to_vec());
}
