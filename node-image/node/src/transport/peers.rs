//! Outbound connections to the other validators, one lazily connected gRPC channel each.

use super::tls::{NODE_CERT_NAME, client_config};
use hyper_util::rt::TokioIo;
use medledger_api::pb::peer_client::PeerClient;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub name: String,
    pub addr: String,
    pub key: [u8; 32],
}

pub struct Peers {
    pub me: u64,
    key: ed25519_dalek::SigningKey,
    infos: Mutex<HashMap<u64, PeerInfo>>,
    channels: Mutex<HashMap<u64, Channel>>,
    last_ok: Mutex<HashMap<u64, Instant>>,
    /// Fault injection: when set, every peer call fails as if the network were cut.
    pub isolated: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("node {0} is not a known validator")]
    Unknown(u64),
    #[error("transport to peers is blocked (fault injection)")]
    Isolated,
    #[error("cannot configure TLS: {0}")]
    Tls(String),
}

impl Peers {
    pub fn new(
        me: u64,
        key: ed25519_dalek::SigningKey,
        infos: HashMap<u64, PeerInfo>,
        isolated: Arc<AtomicBool>,
    ) -> Peers {
        Peers {
            me,
            key,
            infos: Mutex::new(infos),
            channels: Mutex::new(HashMap::new()),
            last_ok: Mutex::new(HashMap::new()),
            isolated,
        }
    }

    /// Replaces the peer table (after a membership decision). Channels to peers whose
    /// address or key changed, or that left, are dropped and reconnect on next use.
    pub fn set_infos(&self, infos: HashMap<u64, PeerInfo>) {
        // Same lock order as `client`: channels, then infos.
        let mut chans = self.channels.lock().expect("peers lock");
        let mut current = self.infos.lock().expect("peers lock");
        chans.retain(|id, _| {
            matches!((current.get(id), infos.get(id)), (Some(a), Some(b)) if a.addr == b.addr && a.key == b.key)
        });
        *current = infos;
    }

    pub fn info(&self, id: u64) -> Option<PeerInfo> {
        self.infos.lock().expect("peers lock").get(&id).cloned()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.infos
            .lock()
            .expect("peers lock")
            .keys()
            .copied()
            .filter(|id| *id != self.me)
            .collect()
    }

    /// A client for `id`, connecting on first use.
    pub fn client(&self, id: u64) -> Result<PeerClient<Channel>, PeerError> {
        if self.isolated.load(Ordering::Relaxed) {
            return Err(PeerError::Isolated);
        }
        let mut chans = self.channels.lock().expect("peers lock");
        if let Some(c) = chans.get(&id) {
            return Ok(PeerClient::new(c.clone()).max_decoding_message_size(64 << 20));
        }
        let info = self.info(id).ok_or(PeerError::Unknown(id))?;
        let tls = client_config(&self.key, info.key).map_err(|e| PeerError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let addr = info.addr.clone();
        let svc = tower::service_fn(move |_uri: http::Uri| {
            let addr = addr.clone();
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(NODE_CERT_NAME).expect("static name");
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        let channel = Endpoint::from_static("http://medledger-peer")
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .connect_with_connector_lazy(svc);
        chans.insert(id, channel.clone());
        Ok(PeerClient::new(channel).max_decoding_message_size(64 << 20))
    }

    pub fn mark_ok(&self, id: u64) {
        self.last_ok
            .lock()
            .expect("peers lock")
            .insert(id, Instant::now());
    }

    /// Peers that answered within the last few seconds.
    pub fn connected(&self) -> u32 {
        if self.isolated.load(Ordering::Relaxed) {
            return 0;
        }
        let now = Instant::now();
        self.last_ok
            .lock()
            .expect("peers lock")
            .values()
            .filter(|t| now.duration_since(**t) < Duration::from_secs(3))
            .count() as u32
    }
}
