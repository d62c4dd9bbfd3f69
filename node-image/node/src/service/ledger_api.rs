//! The client API (`medledger.v1.Ledger`).

use crate::ledger::execute::{precheck, precheck_stateless};
use crate::metrics::code_name;
use crate::node::Shared;
use crate::service::submit::NotCommitted;
use crate::store::{Head, role_of};
use medledger_api::pb::{self, ledger_server::Ledger, query_request::Query};
use pb::{
    GetBlockRequest, GetBlockResponse, GetTxRequest, GetTxResponse, QueryRequest, QueryResponse,
    ResultCode, StatusRequest, StatusResponse, StreamBlocksRequest, SubmitTxRequest,
    SubmitTxResponse, TxResult,
};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const SUBMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
const NOT_LEADER: &str = "no Raft leader is known right now; retry shortly";

/// The answer of a node that is not (or no longer) the leader, also when forwarded to.
fn is_not_leader(s: &Status) -> bool {
    s.code() == tonic::Code::Unavailable && s.message() == NOT_LEADER
}

#[derive(Clone)]
pub struct LedgerService {
    pub node: Arc<Shared>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl Shared {
    /// Validates, orders and waits for a transaction. `may_forward` is false for requests
    /// that were already forwarded to us, so a confused cluster cannot bounce them around.
    ///
    /// During an election there is briefly no leader, or the node we forwarded to has just
    /// stepped down: the submission waits for the next leader and retries, within the same
    /// overall bound, instead of pushing every client into its own retry loop.
    pub async fn submit(
        &self,
        raw: Vec<u8>,
        may_forward: bool,
    ) -> Result<SubmitTxResponse, Status> {
        let deadline = Instant::now() + SUBMIT_TIMEOUT;
        loop {
            let leader = self.known_leader(may_forward, deadline).await?;
            match self.submit_via(&raw, leader, may_forward).await {
                Err(s) if may_forward && is_not_leader(&s) && Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// The leader as this node knows it, waiting for an election to finish when there is
    /// none. A forwarded request does not wait: the forwarding node retries.
    async fn known_leader(&self, may_wait: bool, deadline: Instant) -> Result<u64, Status> {
        if let Some(l) = self.raft.metrics().borrow().current_leader {
            return Ok(l);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if may_wait
            && !left.is_zero()
            && let Ok(m) = self
                .raft
                .wait(Some(left))
                .metrics(|m| m.current_leader.is_some(), "a known leader")
                .await
            && let Some(l) = m.current_leader
        {
            return Ok(l);
        }
        Err(Status::unavailable(NOT_LEADER))
    }

    async fn submit_via(
        &self,
        raw: &[u8],
        leader: u64,
        may_forward: bool,
    ) -> Result<SubmitTxResponse, Status> {
        let started = Instant::now();
        let raw = raw.to_vec();
        let ctx = &self.ctx;
        // The id under the one rule (`tx::id_of_raw`), from the decoding the checks below
        // do anyway when the bytes decode.
        let raw_id = || medledger_api::tx::id_of_raw(ctx.suite, &raw);
        let leader = Some(leader);
        // Checks that read state run on the leader only: a follower may not have applied a
        // registration or nonce the client was already told is committed.
        let (checked, id) = if leader == Some(self.me) {
            let view = self.store.read().map_err(internal)?;
            match precheck(ctx, &view, &raw) {
                // A transaction already on chain answers with where it committed, even if
                // it would not pass today (its signer was removed since).
                Err(r) => {
                    let id = raw_id();
                    match self.committed_result(&view, &id)? {
                        Some(found) => return Ok(found),
                        None => (Err(r), id),
                    }
                }
                Ok((tx, body)) => {
                    let id = medledger_api::tx::tx_id(ctx.suite, &tx);
                    let last = view.try_nonce(&body.signer).map_err(internal)?;
                    let checked = if body.nonce > last {
                        Ok(())
                    } else if let Some(found) = self.committed_result(&view, &id)? {
                        // Idempotent: a transaction already on chain answers with where it
                        // committed. Only a nonce at or below the signer's last can belong
                        // to one, so only then is the index consulted.
                        return Ok(found);
                    } else {
                        Err(TxResult {
                            code: ResultCode::ReplayedNonce as i32,
                            reason: format!(
                                "nonce {} is not above the signer's last committed nonce {last}",
                                body.nonce
                            ),
                        })
                    };
                    (checked, id)
                }
            }
        } else {
            match precheck_stateless(ctx, &raw) {
                Ok((tx, _)) => (Ok(()), medledger_api::tx::tx_id(ctx.suite, &tx)),
                Err(r) => (Err(r), raw_id()),
            }
        };
        if let Err(r) = checked {
            self.metrics
                .ingress_rejected
                .with_label_values(&[code_name(r.code)])
                .inc();
            return Ok(SubmitTxResponse {
                tx_id: id.to_vec(),
                height: 0,
                index: 0,
                code: r.code,
                reason: r.reason,
            });
        }
        let resp = if leader == Some(self.me) {
            // A leader cut off from its quorum cannot commit; answer rather than hang. The
            // transaction may still commit later, and resubmitting it is safe.
            let c = tokio::time::timeout(SUBMIT_TIMEOUT, self.submitter.submit(raw))
                .await
                .map_err(|_| Status::unavailable("not committed within 10 s (no quorum?); resubmitting the same transaction is safe"))?
                .map_err(|e| match e {
                    NotCommitted::NotLeader => Status::unavailable(NOT_LEADER),
                    NotCommitted::Failed(m) => Status::unavailable(m),
                })?;
            SubmitTxResponse {
                tx_id: c.tx_id.to_vec(),
                height: c.height,
                index: c.index,
                code: c.code,
                reason: c.reason,
            }
        } else if let (Some(l), true) = (leader, may_forward) {
            let mut client = self
                .peers
                .client(l)
                .map_err(|e| Status::unavailable(e.to_string()))?;
            client
                .forward(SubmitTxRequest { tx: raw })
                .await?
                .into_inner()
        } else {
            return Err(Status::unavailable(NOT_LEADER));
        };
        if resp.code == ResultCode::ReplayedNonce as i32 {
            // Our copy lost a race with an earlier copy of the same transaction.
            let view = self.store.read().map_err(internal)?;
            if let Some(found) = self.committed_result(&view, &id)? {
                return Ok(found);
            }
        }
        if resp.height > 0 {
            self.metrics
                .commit_latency
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(resp)
    }

    fn committed_result(
        &self,
        view: &crate::store::ReadView,
        id: &[u8],
    ) -> Result<Option<SubmitTxResponse>, Status> {
        let Some((height, index)) = view.tx_location(id).map_err(internal)? else {
            return Ok(None);
        };
        let block = view
            .block(height)
            .map_err(internal)?
            .ok_or_else(|| Status::internal("indexed block missing"))?;
        let r = block
            .results
            .get(index as usize)
            .cloned()
            .unwrap_or_default();
        if r.code != ResultCode::Ok as i32 {
            return Ok(None);
        }
        Ok(Some(SubmitTxResponse {
            tx_id: id.to_vec(),
            height,
            index,
            code: r.code,
            reason: r.reason,
        }))
    }

    pub async fn query(
        &self,
        req: QueryRequest,
        may_forward: bool,
    ) -> Result<QueryResponse, Status> {
        if req.linearizable {
            let leader = self.raft.metrics().borrow().current_leader;
            if leader == Some(self.me) {
                self.raft.ensure_linearizable().await.map_err(|e| {
                    Status::unavailable(format!("cannot confirm leadership: {e}; retry"))
                })?;
            } else if let (Some(l), true) = (leader, may_forward) {
                let mut client = self
                    .peers
                    .client(l)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                return Ok(client.forward_query(req).await?.into_inner());
            } else {
                return Err(Status::unavailable(NOT_LEADER));
            }
        }
        let view = self.store.read().map_err(internal)?;
        let height = view.head().map_err(internal)?.height;
        let mut out = QueryResponse {
            height,
            ..Default::default()
        };
        match req.query {
            Some(Query::KvKey(k)) => {
                if let Some(v) = view.kv(&k).map_err(internal)? {
                    out.found = true;
                    out.value = v;
                }
            }
            Some(Query::SignerNonce(s)) => {
                out.nonce = view.try_nonce(&s).map_err(internal)?;
                out.found = out.nonce > 0;
            }
            Some(Query::Participant(p)) => {
                if let Some(role) = role_of(&self.ctx, &view, &p).map_err(internal)? {
                    out.found = true;
                    out.role = role;
                }
            }
            None => {
                return Err(Status::invalid_argument(
                    "query is empty: set kv_key, signer_nonce or participant",
                ));
            }
        }
        Ok(out)
    }

    pub fn block_response(&self, height: u64) -> Result<GetBlockResponse, Status> {
        let view = self.store.read().map_err(internal)?;
        let head = view.head().map_err(internal)?;
        let height = if height == 0 { head.height } else { height };
        if height == 0 {
            return Err(Status::not_found("the chain has no blocks yet"));
        }
        if height > head.height {
            return Err(Status::not_found(format!(
                "block {height} does not exist yet; the head is at {}",
                head.height
            )));
        }
        let block = view.block(height).map_err(internal)?.ok_or_else(|| {
            Status::unavailable(format!("block {height} is not on this node yet (back-filling after a snapshot); retry or ask another node"))
        })?;
        let hash = view
            .block_hash(height)
            .map_err(internal)?
            .unwrap_or_default();
        Ok(GetBlockResponse {
            block: Some(block),
            hash: hash.to_vec(),
        })
    }

    pub fn status(&self) -> StatusResponse {
        let m = self.raft.metrics().borrow().clone();
        let head: Head = *self.head_rx.borrow();
        let role = crate::node::role_name(&m.state);
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let last_log = m.last_log_index.unwrap_or(0);
        StatusResponse {
            chain_id: self.ctx.chain_id.clone(),
            genesis_hash: self.ctx.genesis_hash.to_vec(),
            node_id: self.me,
            member: self.member.clone(),
            height: head.height,
            head_hash: head.hash.to_vec(),
            role: role.to_string(),
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            peers_connected: self.peers.connected(),
            validators: m.membership_config.membership().voter_ids().count() as u32,
            in_sync: m.current_leader.is_some() && head.complete() && applied >= last_log,
            committed_index: last_log,
            applied_index: applied,
            suite: self.ctx.suite.to_string(),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
        }
    }
}

type BlockStream = Pin<Box<dyn Stream<Item = Result<GetBlockResponse, Status>> + Send>>;

/// Streams blocks `from..=to` (or following the head when `to` is None).
pub fn block_stream(node: Arc<Shared>, from: u64, to: Option<u64>, follow: bool) -> BlockStream {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut next = from.max(1);
        let mut head_rx = node.head_rx.clone();
        loop {
            let head = head_rx.borrow_and_update().height;
            let last = to.map_or(head, |t| t.min(head));
            while next <= last {
                let item = node.block_response(next);
                let missing = matches!(&item, Err(s) if s.code() == tonic::Code::Unavailable);
                if missing && follow {
                    break; // wait for back-fill
                }
                if tx.send(item).await.is_err() {
                    return;
                }
                next += 1;
            }
            if !follow || to.is_some_and(|t| next > t) {
                return;
            }
            if head_rx.changed().await.is_err() {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn submit_tx(
        &self,
        request: Request<SubmitTxRequest>,
    ) -> Result<Response<SubmitTxResponse>, Status> {
        self.node
            .submit(request.into_inner().tx, true)
            .await
            .map(Response::new)
    }

    async fn get_tx(
        &self,
        request: Request<GetTxRequest>,
    ) -> Result<Response<GetTxResponse>, Status> {
        let id = request.into_inner().tx_id;
        let view = self.node.store.read().map_err(internal)?;
        let (height, index) = view.tx_location(&id).map_err(internal)?.ok_or_else(|| {
            Status::not_found(format!("no transaction {} on this node", hex::encode(&id)))
        })?;
        let block = self.node.block_response(height)?;
        let b = block.block.unwrap_or_default();
        let raw = b.txs.get(index as usize).cloned().unwrap_or_default();
        let tx = prost::Message::decode(raw.as_slice()).ok();
        Ok(Response::new(GetTxResponse {
            tx,
            height,
            index,
            result: b.results.get(index as usize).cloned(),
            block_hash: block.hash,
        }))
    }

    async fn get_block(
        &self,
        request: Request<GetBlockRequest>,
    ) -> Result<Response<GetBlockResponse>, Status> {
        self.node
            .block_response(request.into_inner().height)
            .map(Response::new)
    }

    type StreamBlocksStream = BlockStream;

    async fn stream_blocks(
        &self,
        request: Request<StreamBlocksRequest>,
    ) -> Result<Response<BlockStream>, Status> {
        let r = request.into_inner();
        Ok(Response::new(block_stream(
            self.node.clone(),
            r.from_height,
            None,
            r.follow,
        )))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        self.node
            .query(request.into_inner(), true)
            .await
            .map(Response::new)
    }
}
