//! Wiring: the client, the admin server, the leader lease, both controllers and the status
//! poller, and graceful shutdown on SIGTERM.

use crate::admin::{AdminState, router};
use crate::controllers::{self, Context};
use crate::crd::{Consortium, LedgerNode};
use crate::lease::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::resources::network_policy::OperatorPeer;
use crate::resources::{FIELD_MANAGER, LABEL_MANAGED_BY};
use crate::telemetry::{self, LogFormat};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, clap::Parser)]
#[command(
    name = "medledger-operator",
    version,
    about = "Kubernetes operator of medledger consortium ledgers"
)]
pub struct Args {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "MEDLEDGER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Address of the admin server (/metrics, /live, /ready).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Run the controllers only while holding a Lease (set when more than one replica runs).
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "medledger-operator")]
    pub lease_name: String,
    /// The operator's own namespace (Lease, NetworkPolicy access to node APIs).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// This replica's identity (Lease holder, event reporter).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Seconds between gRPC Status polls of each node; 0 turns the polls off (for control
    /// planes whose pods do not really run, such as kwok: every node would look unreachable).
    #[arg(long, default_value_t = 15)]
    pub poll_interval: u64,
}

/// Reconciles run at once per controller. Unbounded, a burst (100 hospitals founding a
/// consortium) decodes every Consortium and derives every genesis at the same time: the
/// memory peak doubled and the API server, on the same cores in small clusters, slowed down.
const RECONCILE_CONCURRENCY: u16 = 8;

/// Remembers the last generation seen per object, to react to spec changes only.
#[derive(Default)]
pub struct GenerationFilter(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl GenerationFilter {
    /// True when `obj` is new or its generation differs from the last one seen.
    pub fn first_sight_of_generation<K: Resource>(&self, obj: &K) -> bool {
        let key = obj
            .uid()
            .unwrap_or_else(|| format!("{:?}/{}", obj.namespace(), obj.name_any()));
        let generation = obj.meta().generation.unwrap_or(0);
        self.0.lock().unwrap().insert(key, generation) != Some(generation)
    }
}

/// The main watch of a controller, with a flag raised once its initial list has been
/// applied. kube-runtime's own readiness signal (`Store::wait_until_ready`) wakes only the
/// latest of concurrent waiters, and the controller itself waits on it, so a second waiter
/// can sleep forever (seen against a real API server): readiness is read from the stream.
fn main_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    synced: Arc<AtomicBool>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher::watcher(api, config).inspect(move |e| {
        if matches!(e, Ok(watcher::Event::InitDone)) {
            synced.store(true, Ordering::Relaxed);
        }
    });
    (
        reader,
        reflector::reflector(writer, events).applied_objects(),
    )
}

type ShutdownSignal = Shared<BoxFuture<'static, ()>>;

fn shutdown_signal() -> ShutdownSignal {
    async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
        tracing::info!("shutdown requested; finishing running reconciles");
    }
    .boxed()
    .shared()
}

fn managed() -> watcher::Config {
    watcher::Config::default()
        .labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"))
        .any_semantic()
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot configure a Kubernetes client ({e}); run in a cluster with a service account, or set KUBECONFIG")
    })?;
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = shutdown_signal();

    let listener = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --admin-addr {}: {e}", args.admin_addr))?;
    tracing::info!(addr = %args.admin_addr, "admin server listening");
    let admin = tokio::spawn(
        axum::serve(
            listener,
            router(AdminState {
                metrics: metrics.clone(),
                ready: ready.clone(),
            }),
        )
        .with_graceful_shutdown(shutdown.clone())
        .into_future(),
    );

    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("medledger-operator-{}", std::process::id()));
    let lease_cfg = match (args.leader_elect, &args.pod_namespace) {
        (false, _) => None,
        (true, None) => anyhow::bail!("--leader-elect needs --pod-namespace (or POD_NAMESPACE)"),
        (true, Some(namespace)) => Some(LeaseConfig {
            name: args.lease_name.clone(),
            namespace: namespace.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(5),
        }),
    };
    let lease_lost: BoxFuture<'static, ()> = match &lease_cfg {
        None => futures::future::pending().boxed(),
        Some(cfg) => {
            // A standby is healthy: it reports ready while it waits, so that a rolling update
            // of the operator never waits on a pod that cannot lead until the old one leaves.
            ready.store(true, Ordering::Relaxed);
            let lost = tokio::select! {
                lost = lease::acquire(client.clone(), cfg.clone()) => lost.boxed(),
                _ = shutdown.clone() => return Ok(()),
            };
            ready.store(false, Ordering::Relaxed);
            lost
        }
    };

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        OperatorPeer {
            namespace: args.pod_namespace.clone(),
        },
        Some(identity),
    ));
    let ns = args.namespace.as_deref();

    // LedgerNode controller: owns its children, and wakes up when its Consortium changes.
    let (nodes_synced, consortia_synced) = (Arc::default(), Arc::default());
    let (node_store, node_watch) = main_watch(
        api::<DeserializeGuard<LedgerNode>>(&client, ns),
        watcher::Config::default().any_semantic(),
        Arc::clone(&nodes_synced),
    );
    let nodes = Controller::for_stream(node_watch, node_store.clone())
        .with_config(kube::runtime::Config::default().concurrency(RECONCILE_CONCURRENCY));
    let by_consortium = node_store.clone();
    let spec_changed = GenerationFilter::default();
    let nodes = nodes
        .owns(api::<StatefulSet>(&client, ns), managed())
        .owns(api::<Service>(&client, ns), managed())
        .owns(api::<ConfigMap>(&client, ns), managed())
        .owns(api::<NetworkPolicy>(&client, ns), managed())
        // Metadata only: the mapper reads nothing but the generation, and a Consortium of
        // 100 members is tens of kilobytes to decode on every event.
        .watches_stream(
            watcher::watcher(
                api::<PartialObjectMeta<Consortium>>(&client, ns),
                watcher::Config::default().any_semantic(),
            )
            .touched_objects(),
            move |c: PartialObjectMeta<Consortium>| {
                // Only spec changes matter to nodes: a Consortium's status follows its nodes,
                // and reacting to it would wake every node whenever any node changes.
                if !spec_changed.first_sight_of_generation(&c) {
                    return Vec::new();
                }
                let (name, namespace) = (c.name_any(), c.namespace());
                by_consortium
                    .state()
                    .into_iter()
                    .filter(|g| {
                        g.0.as_ref()
                            .is_ok_and(|n| n.spec.consortium_ref.name == name)
                            && g.namespace() == namespace
                    })
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            controllers::ledger_node::reconcile,
            controllers::ledger_node::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "ledgernode controller");
            }
        });

    // Consortium controller: owns the genesis ConfigMap and the PDB; member readiness follows
    // the LedgerNodes that serve it.
    let (consortium_store, consortium_watch) = main_watch(
        api::<DeserializeGuard<Consortium>>(&client, ns),
        watcher::Config::default().any_semantic(),
        Arc::clone(&consortia_synced),
    );
    let consortia = Controller::for_stream(consortium_watch, consortium_store)
        .owns(api::<ConfigMap>(&client, ns), managed())
        .owns(api::<PodDisruptionBudget>(&client, ns), managed())
        .watches(
            api::<DeserializeGuard<LedgerNode>>(&client, ns),
            watcher::Config::default().any_semantic(),
            |g| {
                let namespace = g.namespace();
                g.0.as_ref().ok().map(|n| {
                    let r =
                        ObjectRef::<DeserializeGuard<Consortium>>::new(&n.spec.consortium_ref.name);
                    match namespace {
                        Some(ns) => r.within(&ns),
                        None => r,
                    }
                })
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        // Coalesce bursts (many nodes changing at once) into one reconcile.
        .with_config(
            kube::runtime::Config::default()
                .debounce(Duration::from_secs(1))
                .concurrency(RECONCILE_CONCURRENCY),
        )
        .run(
            controllers::consortium::reconcile,
            controllers::consortium::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "consortium controller");
            }
        });

    {
        let ready = ready.clone();
        tokio::spawn(async move {
            while !(nodes_synced.load(Ordering::Relaxed)
                && consortia_synced.load(Ordering::Relaxed))
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::info!("watches synced; ready");
            ready.store(true, Ordering::Relaxed);
        });
    }
    let poller = if args.poll_interval == 0 {
        tracing::info!("node status polls are off (--poll-interval 0)");
        tokio::spawn(futures::future::pending::<()>())
    } else {
        tokio::spawn(controllers::poller::run(
            ctx.clone(),
            node_store,
            Duration::from_secs(args.poll_interval),
        ))
    };

    tokio::select! {
        _ = futures::future::join(nodes, consortia) => {}
        _ = lease_lost => {
            poller.abort();
            anyhow::bail!("lost the leader lease; exiting so that a standby takes over");
        }
    }
    poller.abort();
    ready.store(false, Ordering::Relaxed);
    if let Some(cfg) = &lease_cfg {
        lease::release(client.clone(), cfg).await;
    }
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn arguments_parse() {
        let a = Args::try_parse_from([
            "medledger-operator",
            "--log-format",
            "json",
            "--leader-elect",
            "--poll-interval",
            "30",
        ])
        .unwrap();
        assert_eq!(a.log_format, LogFormat::Json);
        assert!(a.leader_elect);
        assert_eq!(a.poll_interval, 30);
        assert_eq!(a.admin_addr.port(), 8080);
        assert!(Args::try_parse_from(["medledger-operator", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn generation_filter_passes_spec_changes_only() {
        let f = GenerationFilter::default();
        let mut c = crate::resources::fixtures::consortium("00", 1);
        assert!(f.first_sight_of_generation(&c));
        c.status = Some(Default::default());
        assert!(
            !f.first_sight_of_generation(&c),
            "a status change is not a spec change"
        );
        c.metadata.generation = Some(2);
        assert!(f.first_sight_of_generation(&c));
    }
}
