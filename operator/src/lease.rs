//! Leader election over a `coordination.k8s.io/v1` Lease, used when more than one operator
//! replica runs (`--leader-elect`). Only the holder runs the controllers; a standby takes over
//! once the holder stops renewing for a lease duration. Writes use the Lease's
//! resourceVersion, so two replicas can never both believe they won.
//!
//! With a single replica the operator runs without a lease, so a steady cluster sees no writes.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub duration: Duration,
    /// How often the holder renews, and a candidate retries.
    pub retry: Duration,
}

/// What to do with the Lease as it stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Write this Lease (create it when it has no resourceVersion): we take or keep the lead.
    Write(Box<Lease>),
    /// Another replica holds a live lease.
    Wait { holder: String },
}

/// Decides, without I/O, whether `me` may take or renew the lease at `now`.
pub fn decide(current: Option<&Lease>, cfg: &LeaseConfig, now: Timestamp) -> Decision {
    let duration_secs = cfg.duration.as_secs().max(1) as i32;
    let spec = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(d)) => *renewed + SignedDuration::from_secs(d as i64) < now,
        _ => true,
    };
    let mine = holder == cfg.identity;
    if !mine && !holder.is_empty() && !expired {
        return Decision::Wait { holder };
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + if mine { 0 } else { 1 };
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    };
    Decision::Write(Box::new(lease))
}

/// One round: read the Lease, decide, write. `Ok(true)` when we hold it afterwards.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    match decide(current.as_ref(), cfg, Timestamp::now()) {
        Decision::Wait { holder } => {
            tracing::debug!(%holder, "lease held by another replica");
            Ok(false)
        }
        Decision::Write(lease) => {
            let pp = PostParams {
                field_manager: Some(crate::resources::FIELD_MANAGER.into()),
                ..Default::default()
            };
            let res = if lease.metadata.resource_version.is_some() {
                api.replace(&cfg.name, &pp, &lease).await
            } else {
                api.create(&pp, &lease).await
            };
            match res {
                Ok(_) => Ok(true),
                // Someone else wrote first: they won this round.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Blocks until this replica holds the lease, then keeps renewing it in the background. The
/// returned future resolves if the lease is lost (renewals failing for a lease duration): the
/// caller must then stop acting as leader.
pub async fn acquire(
    client: Client,
    cfg: LeaseConfig,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    loop {
        match try_acquire(&api, &cfg).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read or write the leader lease; retrying"),
        }
        tokio::time::sleep(cfg.retry).await;
    }
    tracing::info!(identity = %cfg.identity, lease = %cfg.name, "became leader");
    async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(cfg.retry).await;
            match try_acquire(&api, &cfg).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("leader lease taken by another replica");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
            }
            if last_ok.elapsed() > cfg.duration {
                tracing::error!("leader lease not renewed for a lease duration");
                return;
            }
        }
    }
}

/// Gives the lease up on shutdown so a standby takes over at once instead of after a lease
/// duration. Best effort: failures are logged.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    let pp = PostParams {
        field_manager: Some(crate::resources::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.replace(&cfg.name, &pp, &lease).await {
        Ok(_) => tracing::info!("released the leader lease"),
        Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(id: &str) -> LeaseConfig {
        LeaseConfig {
            name: "medledger-operator".into(),
            namespace: "medledger-system".into(),
            identity: id.into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(5),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn written(d: Decision) -> Lease {
        match d {
            Decision::Write(l) => *l,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        let l = written(decide(None, &cfg("a"), at(0)));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert!(l.metadata.resource_version.is_none());
    }

    #[test]
    fn a_live_lease_of_another_replica_is_respected_until_it_expires() {
        let mut held = written(decide(None, &cfg("a"), at(0)));
        held.metadata.resource_version = Some("7".into());
        assert_eq!(
            decide(Some(&held), &cfg("b"), at(10)),
            Decision::Wait { holder: "a".into() }
        );
        let taken = written(decide(Some(&held), &cfg("b"), at(16)));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(2));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(16))));
    }

    #[tokio::test]
    async fn replicas_take_turns_through_the_api() {
        use crate::controllers::testing::FakeApi;
        let fake = FakeApi::new();
        let api: Api<Lease> = Api::namespaced(fake.client(), "medledger-system");
        assert!(try_acquire(&api, &cfg("a")).await.unwrap());
        assert!(
            !try_acquire(&api, &cfg("b")).await.unwrap(),
            "a live lease is not stolen"
        );
        assert!(
            try_acquire(&api, &cfg("a")).await.unwrap(),
            "the holder renews"
        );
        release(fake.client(), &cfg("a")).await;
        assert!(
            try_acquire(&api, &cfg("b")).await.unwrap(),
            "a released lease is taken at once"
        );
        let path = FakeApi::path(
            "apis/coordination.k8s.io/v1",
            "medledger-system",
            "leases",
            "medledger-operator",
        );
        assert_eq!(fake.get(&path).unwrap()["spec"]["holderIdentity"], "b");
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let held = written(decide(None, &cfg("a"), at(0)));
        let renewed = written(decide(Some(&held), &cfg("a"), at(5))).spec.unwrap();
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(5))));
    }
}
