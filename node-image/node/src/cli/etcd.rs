//! The reference for the benchmark: a 3-member etcd cluster on loopback (binary from the
//! `etcd-bin-vendored` crate), written through its gRPC KV API with the same payloads and
//! concurrency as the ledger.

use crate::loopback::free_port;
use anyhow::{Context, Result, bail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {}

pub struct EtcdCluster {
    children: Vec<Child>,
    pub client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl EtcdCluster {
    pub async fn start(members: usize) -> Result<EtcdCluster> {
        let bin = etcd_bin_vendored::etcd_bin_path().map_err(|e| anyhow::anyhow!("{e}"))?;
        let dir = tempfile::Builder::new()
            .prefix("medledger-etcd-")
            .tempdir()?;
        let ports: Vec<(u16, u16)> = (0..members)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut children = Vec::new();
        let mut client_urls = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.path().join(format!("e{i}.log")))?;
            let child = Command::new(bin)
                .args(["--name", &format!("e{i}")])
                .args([
                    "--data-dir",
                    &dir.path().join(format!("e{i}")).display().to_string(),
                ])
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new", "--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("cannot start etcd")?;
            children.push(child);
            client_urls.push(format!("http://127.0.0.1:{c}"));
        }
        let cluster = EtcdCluster {
            children,
            client_urls,
            _dir: dir,
        };
        // Ready when a put through the first member commits (needs a quorum and a leader).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut ch) = cluster.channel(0).await
                && put(&mut ch, b"ready".to_vec(), b"1".to_vec()).await.is_ok()
            {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!("etcd cluster did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn channel(&self, i: usize) -> Result<tonic::client::Grpc<Channel>> {
        let ch = tonic::transport::Endpoint::from_shared(self.client_urls[i].clone())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(tonic::client::Grpc::new(ch))
    }
}

pub async fn put(
    grpc: &mut tonic::client::Grpc<Channel>,
    key: Vec<u8>,
    value: Vec<u8>,
) -> Result<(), tonic::Status> {
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
    grpc.unary(tonic::Request::new(PutRequest { key, value }), path, codec)
        .await
        .map(|_| ())
}
