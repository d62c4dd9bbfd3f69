//! The EMR service (`medledger.v1.Emr`): key release by a record's custodian node, and reads
//! of contract state (records, access requests, proposals, members, audit trails).

use crate::contracts::access::{self, AccessState};
use crate::contracts::{Overlay, actor, governance, records};
use crate::envelope;
use crate::node::Shared;
use medledger_api::keys::SigningKey;
use medledger_api::pb::emr_server::Emr;
use medledger_api::pb::{
    AccessInfo, AuditEvent, GetAccessRequest, GetProposalRequest, GetRecordRequest, KeyReleased,
    KeyRequestClaim, ListAuditRequest, ListAuditResponse, ListMembersRequest, ListMembersResponse,
    MemberInfo, ProposalInfo, RecordInfo, ReleaseKeyRequest, ReleaseKeyResponse, ResultCode,
    tx_body::Op,
};
use prost::Message;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// How far a key request's timestamp may be from this node's clock.
const CLAIM_SKEW_MS: i64 = 5 * 60 * 1000;
/// Most audit events one ListAudit answer carries.
const AUDIT_LIMIT: usize = 10_000;

#[derive(Clone)]
pub struct EmrService {
    pub node: Arc<Shared>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

pub fn record_info(r: &records::RecordRec) -> RecordInfo {
    RecordInfo {
        record_id: r.record_id.clone(),
        patient: r.patient.clone(),
        custodian: r.custodian.clone(),
        cid: r.cid.clone(),
        content_hash: r.content_hash.clone(),
        sensitivity: r.sensitivity,
        category: r.category.clone(),
        size: r.size,
        height: r.height,
        registered_by: r.registered_by.clone(),
    }
}

impl Shared {
    /// Waits (bounded) until this node has applied the block at `height`.
    pub async fn wait_applied(&self, height: u64) -> Result<(), Status> {
        let mut head = self.head_rx.clone();
        let wait = head.wait_for(|h| h.height >= height);
        match tokio::time::timeout(std::time::Duration::from_secs(10), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Status::unavailable(format!(
                "this node has not applied height {height} within 10 s; retry"
            ))),
        }
    }

    /// Signs and commits one transaction with this node's own key. Releases are serialized
    /// so nonces commit in order; a nonce already used (after a restart, say) is skipped.
    async fn submit_own(&self, op: Op) -> Result<medledger_api::pb::SubmitTxResponse, Status> {
        let mut next = self.own_nonce.lock().await;
        let key = SigningKey::Ed25519(self.node_key.clone());
        for _ in 0..3 {
            let committed = self
                .store
                .read()
                .and_then(|v| v.try_nonce(&key.public()))
                .map_err(internal)?;
            *next = (*next).max(committed) + 1;
            let raw = medledger_api::tx::build(&key, &self.ctx.chain_id, *next, op.clone());
            let r = self.submit(raw, true).await?;
            if r.code != ResultCode::ReplayedNonce as i32 {
                return Ok(r);
            }
        }
        Err(Status::unavailable(
            "could not find a free nonce for this node's key; retry",
        ))
    }

    async fn release_key(&self, req: ReleaseKeyRequest) -> Result<ReleaseKeyResponse, Status> {
        let ctx = &self.ctx;
        let claim = KeyRequestClaim::decode(req.claim.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("claim is not a KeyRequestClaim: {e}"))
        })?;
        if claim.chain_id != ctx.chain_id {
            return Err(Status::invalid_argument(format!(
                "claim is for chain {:?}, this is {:?}",
                claim.chain_id, ctx.chain_id
            )));
        }
        let now = crate::service::submit::now_ms();
        if (claim.at_ms - now).abs() > CLAIM_SKEW_MS {
            return Err(Status::invalid_argument(
                "the claim's time is more than 5 minutes from this node's clock: sign a fresh claim (and check your clock)",
            ));
        }
        if ctx
            .suite
            .verify(&req.requester, &req.claim, &req.signature)
            .is_err()
        {
            return Err(Status::permission_denied(
                "the claim's signature does not verify for the requester key",
            ));
        }
        // Early answers for what can never change (a record's custodian, a request's
        // requester) or only gets worse (revoked, expired). Whether the grant is active is
        // left to the contract, on the leader's latest state: this node may lag behind.
        {
            let view = self.store.read().map_err(internal)?;
            let ov = Overlay::new(&view);
            if let Some(record) = records::get(&ov, &claim.record_id)
                && record.custodian != self.member
            {
                return Err(Status::failed_precondition(format!(
                    "record {} is held by {}; ask that hospital's node",
                    record.record_id, record.custodian
                )));
            }
            if let Some(grant) = access::get(&ov, &claim.request_id) {
                if grant.requester != req.requester {
                    return Err(Status::permission_denied(
                        "this request belongs to another requester",
                    ));
                }
                if grant.state == AccessState::Revoked || now >= grant.expires_at_ms {
                    return Err(Status::permission_denied(format!(
                        "access {} is revoked or expired",
                        grant.request_id
                    )));
                }
            }
        }
        let audit = self
            .submit_own(Op::KeyReleased(KeyReleased {
                request_id: claim.request_id.clone(),
                record_id: claim.record_id.clone(),
                requester: req.requester.clone(),
            }))
            .await?;
        if audit.code != ResultCode::Ok as i32 {
            return Err(Status::permission_denied(format!(
                "the ledger refused the release: {}",
                audit.reason
            )));
        }
        // Only now, with the retrieval record committed, is the key unwrapped and re-wrapped;
        // the record is read once this node has applied the block holding the release.
        self.wait_applied(audit.height).await?;
        let record = {
            let view = self.store.read().map_err(internal)?;
            records::get(&Overlay::new(&view), &claim.record_id)
                .ok_or_else(|| Status::internal("released record missing from state"))?
        };
        let node_key = SigningKey::Ed25519(self.node_key.clone());
        let wrapped = envelope::rewrap(
            &node_key,
            &record.custody_key,
            &envelope::custody_context(&record.record_id),
            ctx.suite,
            &req.requester,
            &envelope::wrap_context(&record.record_id, &claim.request_id),
        )
        .map_err(|e| {
            Status::data_loss(format!(
                "cannot re-wrap the data key of record {} to the requester: {e}",
                record.record_id
            ))
        })?;
        self.metrics.keys_released.inc();
        Ok(ReleaseKeyResponse {
            wrapped_key: wrapped,
            record: Some(record_info(&record)),
            audit_height: audit.height,
            audit_tx_id: audit.tx_id,
        })
    }
}

#[tonic::async_trait]
impl Emr for EmrService {
    async fn release_key(
        &self,
        request: Request<ReleaseKeyRequest>,
    ) -> Result<Response<ReleaseKeyResponse>, Status> {
        self.node
            .release_key(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<RecordInfo>, Status> {
        let id = request.into_inner().record_id;
        let view = self.node.store.read().map_err(internal)?;
        let r = records::get(&Overlay::new(&view), &id)
            .ok_or_else(|| Status::not_found(format!("record {id} does not exist")))?;
        Ok(Response::new(record_info(&r)))
    }

    async fn get_access(
        &self,
        request: Request<GetAccessRequest>,
    ) -> Result<Response<AccessInfo>, Status> {
        let id = request.into_inner().request_id;
        let view = self.node.store.read().map_err(internal)?;
        let a = access::get(&Overlay::new(&view), &id)
            .ok_or_else(|| Status::not_found(format!("request {id} does not exist")))?;
        Ok(Response::new(AccessInfo {
            request_id: a.request_id,
            requester: a.requester,
            requester_role: a.requester_role,
            record_id: a.record_id,
            patient: a.patient,
            custodian: a.custodian,
            purpose: a.purpose,
            expires_at_ms: a.expires_at_ms,
            policy: a.policy,
            approvals: a.approvals.into_iter().collect(),
            state: match a.state {
                AccessState::Pending => "pending",
                AccessState::Granted => "granted",
                AccessState::Revoked => "revoked",
            }
            .into(),
            break_glass: a.break_glass,
            granted_at_ms: a.granted_at_ms,
            granted_height: a.granted_height,
            reason: a.reason,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let patient = request.into_inner().patient;
        if patient.is_empty() || patient.contains('/') {
            return Err(Status::invalid_argument(
                "give a patient pseudonym (p-...), as printed by `medledger participant register`",
            ));
        }
        let view = self.node.store.read().map_err(internal)?;
        let height = view.head().map_err(internal)?.height;
        let events = view
            .objects_with_prefix(&crate::contracts::audit::prefix(&patient), AUDIT_LIMIT)
            .map_err(internal)?
            .into_iter()
            .filter_map(|(_, v)| AuditEvent::decode(v.as_slice()).ok())
            .collect();
        Ok(Response::new(ListAuditResponse { events, height }))
    }

    async fn get_proposal(
        &self,
        request: Request<GetProposalRequest>,
    ) -> Result<Response<ProposalInfo>, Status> {
        let id = request.into_inner().proposal_id;
        let view = self.node.store.read().map_err(internal)?;
        let p = governance::get(&Overlay::new(&view), &id)
            .ok_or_else(|| Status::not_found(format!("proposal {id} does not exist")))?;
        Ok(Response::new(ProposalInfo {
            proposal_id: p.proposal_id,
            action: p.action,
            name: p.member.name,
            policy: p.policy,
            approvals: p.approvals.into_iter().collect(),
            state: if p.decided_height > 0 {
                "decided"
            } else {
                "pending"
            }
            .into(),
            decided_height: p.decided_height,
        }))
    }

    async fn list_members(
        &self,
        _: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let view = self.node.store.read().map_err(internal)?;
        let members = actor::members(&self.node.ctx, &Overlay::new(&view))
            .into_iter()
            .map(|m| MemberInfo {
                name: m.name,
                node_id: m.node_id,
                node_key: m.node_key,
                endpoint: m.endpoint,
                admin_key: m.admin_key,
                active: m.active,
            })
            .collect();
        Ok(Response::new(ListMembersResponse { members }))
    }
}
