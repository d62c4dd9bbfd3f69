//! The peer API (`medledger.v1.Peer`), served only behind mutual TLS.

use super::ledger_api::block_stream;
use crate::node::Shared;
use medledger_api::pb::{self, peer_server::Peer};
use pb::{
    FetchBlocksRequest, GetBlockResponse, QueryRequest, QueryResponse, RaftMessage,
    SubmitTxRequest, SubmitTxResponse,
};
use serde::{Serialize, de::DeserializeOwned};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct PeerService {
    pub node: Arc<Shared>,
}

fn decode<T: DeserializeOwned>(m: RaftMessage) -> Result<T, Status> {
    bincode::deserialize(&m.payload)
        .map_err(|e| Status::invalid_argument(format!("bad Raft payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    bincode::serialize(v)
        .map(|payload| Response::new(RaftMessage { payload }))
        .map_err(|e| Status::internal(e.to_string()))
}

impl PeerService {
    fn check(&self) -> Result<(), Status> {
        if self.node.peers.isolated.load(Ordering::Relaxed) {
            return Err(Status::unavailable("transport blocked (fault injection)"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check()?;
        let req = decode(request.into_inner())?;
        encode(&self.node.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check()?;
        let req = decode(request.into_inner())?;
        encode(&self.node.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check()?;
        let req = decode(request.into_inner())?;
        encode(&self.node.raft.install_snapshot(req).await)
    }

    async fn forward(
        &self,
        request: Request<SubmitTxRequest>,
    ) -> Result<Response<SubmitTxResponse>, Status> {
        self.check()?;
        self.node
            .submit(request.into_inner().tx, false)
            .await
            .map(Response::new)
    }

    async fn forward_query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        self.check()?;
        self.node
            .query(request.into_inner(), false)
            .await
            .map(Response::new)
    }

    type FetchBlocksStream = Pin<Box<dyn Stream<Item = Result<GetBlockResponse, Status>> + Send>>;

    async fn fetch_blocks(
        &self,
        request: Request<FetchBlocksRequest>,
    ) -> Result<Response<Self::FetchBlocksStream>, Status> {
        self.check()?;
        let r = request.into_inner();
        Ok(Response::new(block_stream(
            self.node.clone(),
            r.from_height,
            Some(r.to_height),
            false,
        )))
    }
}
