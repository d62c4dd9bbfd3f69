//! The controllers: one per kind, each a pipeline
//! `dereference -> validate -> build -> apply -> status`. Dereference and apply talk to the
//! API; validate and build are pure and unit-tested on fixtures.

pub mod consortium;
pub mod ledger_node;
pub mod poller;
#[cfg(test)]
pub mod testing;

use crate::metrics::Metrics;
use crate::resources::FIELD_MANAGER;
use crate::resources::network_policy::OperatorPeer;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything a reconcile needs besides the object.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Where the operator runs (its pods may call the nodes' client API).
    pub operator: OperatorPeer,
    service_monitor: Mutex<Option<(Instant, bool)>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Metrics,
        operator: OperatorPeer,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            operator,
            service_monitor: Mutex::new(None),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the ServiceMonitor CRD is served, cached for a minute.
    pub async fn service_monitor_available(&self) -> bool {
        if let Some((at, known)) = *self.service_monitor.lock().unwrap()
            && at.elapsed() < Duration::from_secs(60)
        {
            return known;
        }
        let gv = format!(
            "{}/{}",
            crate::resources::service_monitor::GROUP,
            crate::resources::service_monitor::VERSION
        );
        let known = match self.client.list_api_group_resources(&gv).await {
            Ok(list) => list.resources.iter().any(|r| r.name == "servicemonitors"),
            Err(kube::Error::Api(e)) if e.code == 404 => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot discover monitoring.coreos.com; assuming no ServiceMonitor CRD");
                false
            }
        };
        *self.service_monitor.lock().unwrap() = Some((Instant::now(), known));
        known
    }

    /// Publishes an event; failures to publish are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate_note(note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Requeue delay after a failure: exponential from 5 s to 5 min, per object; 5 min at once
    /// when a person must act (a watch event will usually come sooner).
    pub fn backoff(&self, key: String, needs_user: bool) -> Action {
        let mut failures = self.failures.lock().unwrap();
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let secs = if needs_user {
            300
        } else {
            (5u64 << (*n - 1).min(6)).min(300)
        };
        Action::requeue(Duration::from_secs(secs))
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap().remove(key);
    }
}

/// The API server refuses an event whose note exceeds 1024 bytes (an error message can be
/// longer): keep the start, which says what failed, and cut on a character boundary.
pub fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

pub fn object_key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Server-side apply of a namespaced child under the operator's field manager, forcing
/// ownership of the fields it sets.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

pub async fn apply_dynamic(
    client: &Client,
    obj: &DynamicObject,
    ar: &kube::api::ApiResource,
) -> Result<DynamicObject, kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &obj.namespace().unwrap_or_default(), ar);
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// Deletes a child if it exists.
pub async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Applies `status` to the status subresource of `obj` (server-side apply, same field manager).
pub async fn apply_status<K>(
    client: &Client,
    obj: &K,
    status: serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Reports an object that does not match the CRD's types (e.g. written before a schema
/// change) and skips it, instead of wedging the controller.
/// The typed error of one controller. Its variant name is the `error` label of the failure
/// metric and the reason of the Warning event.
pub trait ReconcileError: std::error::Error {
    fn metric_label(&self) -> &'static str;
    /// True when only a change by the user can fix it: wait for that instead of retrying soon.
    fn needs_user(&self) -> bool {
        false
    }
}

/// The runtime entry point every controller shares: times the reconcile, reports and skips
/// an object that does not deserialize, and turns a failure into a Warning event.
pub async fn run_reconcile<'a, K, E, Fut>(
    controller: &'static str,
    guard: &'a kube::core::DeserializeGuard<K>,
    ctx: &'a Context,
    reconcile: impl FnOnce(&'a K) -> Fut,
) -> Result<Action, E>
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
    E: ReconcileError,
    Fut: std::future::Future<Output = Result<Action, E>> + 'a,
{
    let _timer = ctx.metrics.reconcile(controller);
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => return Ok(report_invalid(ctx, controller, guard, &invalid.error).await),
    };
    match reconcile(obj).await {
        Ok(action) => {
            ctx.succeeded(&object_key(obj));
            Ok(action)
        }
        Err(e) => {
            ctx.event(obj, EventType::Warning, e.metric_label(), e.to_string())
                .await;
            Err(e)
        }
    }
}

/// The error policy every controller shares: count, log, back off (or wait for the user).
pub fn error_policy_for<K, E>(
    controller: &'static str,
    guard: &kube::core::DeserializeGuard<K>,
    error: &E,
    ctx: &Context,
) -> Action
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
    E: ReconcileError,
{
    ctx.metrics.failure(controller, error.metric_label());
    tracing::warn!(object = %object_key(guard), error = %error, "reconcile failed");
    ctx.backoff(object_key(guard), error.needs_user())
}

pub async fn report_invalid<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    controller: &'static str,
    obj: &K,
    error: &str,
) -> Action {
    ctx.metrics.failure(controller, "InvalidObject");
    tracing::warn!(object = %object_key(obj), %error, "skipping an object that cannot be read");
    ctx.event(
        obj,
        EventType::Warning,
        "InvalidObject",
        format!("cannot read this object: {error}; fix it to match the CRD (kubectl explain)"),
    )
    .await;
    Action::await_change()
}

#[cfg(test)]
mod note_tests {
    use super::truncate_note;

    #[test]
    fn event_notes_fit_the_api_limit() {
        assert_eq!(truncate_note("short".into()), "short");
        let long = "é".repeat(800); // 1600 bytes
        let cut = truncate_note(long);
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{}", cut.len());
    }
}
