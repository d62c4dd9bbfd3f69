//! The ServiceMonitor of a LedgerNode (Prometheus Operator), built as a DynamicObject so the
//! operator needs no compiled-in copy of that CRD and applies it only where it exists.

use super::{names, node_labels, owner_ref};
use crate::crd::LedgerNode;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use std::collections::BTreeMap;

pub const GROUP: &str = "monitoring.coreos.com";
pub const VERSION: &str = "v1";
pub const KIND: &str = "ServiceMonitor";

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, KIND),
        "servicemonitors",
    )
}

pub fn service_monitor(node: &LedgerNode) -> DynamicObject {
    let name = node.name_any();
    let mut labels = node_labels(
        &name,
        &node.spec.consortium_ref.name,
        &node.spec.member_name,
    );
    labels.extend(node.spec.monitoring.service_monitor_labels.clone());
    let mut select = crate::resources::selector_labels(&name);
    select.insert(super::service::LABEL_SERVICE.into(), "headless".into());
    let mut obj = DynamicObject::new(&names::service_monitor(&name), &api_resource())
        .within(&node.namespace().unwrap_or_default());
    obj.metadata.labels = Some(labels);
    obj.metadata.owner_references = Some(vec![owner_ref(node)]);
    obj.data = json!({
        "spec": {
            "selector": {"matchLabels": select},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s", "scheme": "http"}],
        }
    });
    obj
}

/// Labels a ServiceMonitor selects, for tests and docs.
pub fn selected_labels(obj: &DynamicObject) -> BTreeMap<String, String> {
    serde_json::from_value(obj.data["spec"]["selector"]["matchLabels"].clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::*;
    use crate::resources::service::headless_service;

    #[test]
    fn selects_the_headless_service_metrics_port() {
        let mut n = node();
        n.spec
            .monitoring
            .service_monitor_labels
            .insert("release".into(), "kube-prometheus".into());
        let sm = service_monitor(&n);
        let v = serde_json::to_value(&sm).unwrap();
        assert_eq!(v["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(v["kind"], "ServiceMonitor");
        assert_eq!(v["metadata"]["labels"]["release"], "kube-prometheus");
        assert_eq!(v["spec"]["endpoints"][0]["port"], "metrics");
        let svc_labels = headless_service(&n).metadata.labels.unwrap();
        assert!(
            selected_labels(&sm)
                .iter()
                .all(|(k, v)| svc_labels.get(k) == Some(v))
        );
        let p2p_labels = crate::resources::service::p2p_service(&n)
            .metadata
            .labels
            .unwrap();
        assert!(
            !selected_labels(&sm)
                .iter()
                .all(|(k, v)| p2p_labels.get(k) == Some(v))
        );
    }
}
