//! A small in-memory API server behind a tower-test mock service, for the client-facing paths
//! of the controllers. It stores objects by path, answers GET/LIST/POST/PATCH/DELETE roughly
//! as the API server does (apply replaces the fields it is given), and records every request,
//! so tests can assert what was written — and what was not.

use super::Context;
use crate::metrics::Metrics;
use crate::resources::network_policy::OperatorPeer;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct State {
    pub objects: BTreeMap<String, Value>,
    /// `(method, path)` of every request, queries stripped.
    pub requests: Vec<(Method, String)>,
    pub service_monitor_crd: bool,
    next_uid: u64,
}

#[derive(Clone, Default)]
pub struct FakeApi(pub Arc<Mutex<State>>);

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

/// Merges `patch` into `target` (JSON merge semantics, lists replaced).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Path of a namespaced object, e.g. `path("api/v1", "hospital-a", "secrets", "node-a-keys")`.
    pub fn path(group_version: &str, ns: &str, plural: &str, name: &str) -> String {
        format!("/{group_version}/namespaces/{ns}/{plural}/{name}")
    }

    pub fn put(&self, path: &str, obj: Value) {
        let mut s = self.0.lock().unwrap();
        s.next_uid += 1;
        let mut obj = obj;
        obj["metadata"]["uid"] = json!(format!("uid-{}", s.next_uid));
        obj["metadata"]["resourceVersion"] = json!("1");
        s.objects.insert(path.to_string(), obj);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }

    pub fn requests(&self) -> Vec<(Method, String)> {
        self.0.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.0.lock().unwrap().requests.clear();
    }

    /// Requests other than reads.
    pub fn writes(&self) -> Vec<(Method, String)> {
        self.requests()
            .into_iter()
            .filter(|(m, _)| m != Method::GET)
            .collect()
    }

    /// The events published so far (reason, note).
    pub fn events(&self) -> Vec<(String, String)> {
        let s = self.0.lock().unwrap();
        s.objects
            .iter()
            .filter(|(p, _)| p.starts_with("/apis/events.k8s.io/"))
            .map(|(_, e)| {
                (
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub fn client(&self) -> Client {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let resp = api.handle(req).await;
                send.send_response(resp);
            }
        });
        Client::new(svc, "default")
    }

    pub fn context(&self) -> Arc<Context> {
        Arc::new(Context::new(
            self.client(),
            Metrics::new(),
            OperatorPeer {
                namespace: Some("medledger-system".into()),
            },
            None,
        ))
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let mut s = self.0.lock().unwrap();
        s.requests.push((method.clone(), path.clone()));

        if path == "/apis/monitoring.coreos.com/v1" {
            return if s.service_monitor_crd {
                ok(
                    StatusCode::OK,
                    &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1",
                    "resources": [{"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true, "kind": "ServiceMonitor", "verbs": ["get", "patch"]}]}),
                )
            } else {
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            };
        }
        let segments = path.trim_start_matches('/').split('/').count();
        // /api/v1/namespaces/ns/plural = 5 segments; /apis/g/v/namespaces/ns/plural = 6.
        let is_collection = (path.starts_with("/api/") && segments == 5)
            || (path.starts_with("/apis/") && segments == 6);
        match method {
            Method::GET if is_collection => {
                let prefix = format!("{path}/");
                let items: Vec<Value> = s
                    .objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                    .map(|(_, v)| v.clone())
                    .collect();
                ok(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            Method::GET => match s.objects.get(&path) {
                Some(v) => ok(StatusCode::OK, v),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{path} not found"),
                ),
            },
            Method::POST => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("generated-{}", s.next_uid));
                let target = format!("{path}/{name}");
                if s.objects.contains_key(&target) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{target} already exists"),
                    );
                }
                s.next_uid += 1;
                let mut obj = body;
                obj["metadata"]["uid"] = json!(format!("uid-{}", s.next_uid));
                obj["metadata"]["resourceVersion"] = json!("1");
                s.objects.insert(target, obj.clone());
                ok(StatusCode::CREATED, &obj)
            }
            Method::PATCH => {
                if let Some(object_path) = path.strip_suffix("/status") {
                    let Some(obj) = s.objects.get_mut(object_path) else {
                        return status(StatusCode::NOT_FOUND, "NotFound", "no such object");
                    };
                    merge(&mut obj["status"], &body["status"]);
                    return ok(StatusCode::OK, &obj.clone());
                }
                let entry = s
                    .objects
                    .entry(path.clone())
                    .or_insert_with(|| json!({"metadata": {"uid": "uid-applied"}}));
                let mut applied = body;
                if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("uid");
                }
                merge(entry, &applied);
                ok(StatusCode::OK, &entry.clone())
            }
            Method::PUT => {
                let Some(existing) = s.objects.get(&path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound", "no such object");
                };
                let current_rv = existing["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("0")
                    .to_string();
                if body["metadata"]["resourceVersion"].as_str() != Some(current_rv.as_str()) {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                let mut obj = body;
                obj["metadata"]["uid"] = existing["metadata"]["uid"].clone();
                obj["metadata"]["resourceVersion"] =
                    json!((current_rv.parse::<u64>().unwrap_or(0) + 1).to_string());
                s.objects.insert(path.clone(), obj.clone());
                ok(StatusCode::OK, &obj)
            }
            Method::DELETE => match s.objects.remove(&path) {
                Some(v) => ok(StatusCode::OK, &v),
                None => status(StatusCode::NOT_FOUND, "NotFound", "no such object"),
            },
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "unsupported",
            ),
        }
    }
}
