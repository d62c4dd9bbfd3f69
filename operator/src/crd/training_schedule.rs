//! `TrainingSchedule` (draft; its controller comes in a later issue): a federated training task
//! the consortium runs on a schedule — which members train, who aggregates, how many rounds,
//! and when. Each round is recorded on the ledger (task, submitted update hashes, global model).

use super::LocalRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medledger.io",
    version = "v1alpha1",
    kind = "TrainingSchedule",
    plural = "trainingschedules",
    singular = "trainingschedule",
    shortname = "ts",
    category = "medledger",
    namespaced,
    status = "TrainingScheduleStatus",
    derive = "PartialEq",
    doc = "A federated training task run on a schedule: participants, aggregator, rounds and privacy budget.",
    printcolumn(name = "Task", type_ = "string", json_path = ".spec.taskId"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Round", type_ = "integer", json_path = ".status.currentRound"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.minParticipants <= size(self.participants)")
        .message("minParticipants is larger than the participants list; lower it or add participants")
        .field_path(".minParticipants"),
    validation = Rule::new("!(self.aggregator in self.participants)")
        .message("the aggregator must not also be a participant: the research centre aggregates but does not train; remove it from participants")
        .field_path(".aggregator")
)]
pub struct TrainingScheduleSpec {
    /// The Consortium whose ledger records the task.
    #[x_kube(validation = crate::crd::rules::immutable("consortiumRef", "a task is recorded on one chain"))]
    pub consortium_ref: LocalRef,
    /// Task id on the ledger, a DNS label.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(
        validation = crate::crd::rules::dns_label("taskId"),
        validation = crate::crd::rules::immutable("taskId", "rounds already on the ledger belong to it; create a new TrainingSchedule for a new task")
    )]
    pub task_id: String,
    /// The model to train: a name and the content address of its initial weights.
    pub model: ModelSpec,
    /// Cron schedule (5 fields, UTC) on which a round starts, e.g. `0 2 * * *`.
    #[schemars(length(min = 9, max = 64))]
    #[x_kube(validation = Rule::new("size(self.split(' ').filter(f, f != '')) == 5").message("schedule must be a 5-field cron expression such as '0 2 * * *' (minute hour day month weekday, UTC)"))]
    pub schedule: String,
    /// Rounds to run in total (1-10000).
    #[schemars(range(min = 1, max = 10000))]
    pub rounds: i32,
    /// Local epochs each participant trains per round (1-1000).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub local_epochs: i32,
    /// Members that train (their FederatedWorkers with role Trainer take part).
    #[schemars(length(min = 1, max = 256), inner(length(max = 63)))]
    #[x_kube(validation = Rule::new(format!("self.all(p, p.matches('{}'))", crate::crd::rules::DNS_LABEL)).message("participants must be member names (DNS labels) of the consortium"))]
    pub participants: Vec<String>,
    /// A round completes when at least this many participants submitted an update.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 256))]
    pub min_participants: i32,
    /// Member whose FederatedWorker (role Aggregator) combines the updates.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = crate::crd::rules::dns_label("aggregator"))]
    pub aggregator: String,
    /// Seconds a round waits for updates before it closes with what it has.
    #[serde(default = "default_deadline")]
    #[schemars(range(min = 60, max = 604800))]
    pub round_deadline_seconds: i32,
    /// Pause new rounds; a running round finishes.
    #[serde(default)]
    pub suspend: bool,
}

fn one() -> i32 {
    1
}
fn default_deadline() -> i32 {
    3600
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Model name, e.g. `sepsis-risk`.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// IPFS content address (CIDv1) of the initial weights.
    #[schemars(length(min = 10, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^b[a-z2-7]+$')").message("model.initialWeights must be a CIDv1 in base32, such as bafybei...; add the weights to the IpfsCluster first"))]
    pub initial_weights: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainingScheduleStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Scheduled`, `Running`, `Suspended`, `Completed` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Round in progress or last completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_round: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Content address of the latest global model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_model: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`; a condition's lastTransitionTime changes only when its status flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::*;
    use serde_json::json;

    fn fixture() -> serde_json::Value {
        yaml(
            r#"
apiVersion: medledger.io/v1alpha1
kind: TrainingSchedule
metadata: {name: sepsis}
spec:
  consortiumRef: {name: emr}
  taskId: sepsis-2026
  model: {name: sepsis-risk, initialWeights: bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi}
  schedule: "0 2 * * *"
  rounds: 20
  participants: [hospital-a, hospital-b]
  minParticipants: 2
  aggregator: research-centre
"#,
        )
    }

    #[test]
    fn rules() {
        assert_accepted::<TrainingSchedule>(&fixture(), None);
        let mut o = fixture();
        o["spec"]["minParticipants"] = json!(3);
        assert_rejected::<TrainingSchedule>(&o, None, "minParticipants is larger");
        let mut o = fixture();
        o["spec"]["aggregator"] = json!("hospital-a");
        assert_rejected::<TrainingSchedule>(&o, None, "aggregator must not also be a participant");
        let mut o = fixture();
        o["spec"]["schedule"] = json!("every night");
        assert_rejected::<TrainingSchedule>(&o, None, "5-field cron");
        let mut o = fixture();
        o["spec"]["model"]["initialWeights"] = json!("QmNotACidV1xxxxxxxxxx");
        assert_rejected::<TrainingSchedule>(&o, None, "CIDv1");
        let mut o = fixture();
        o["spec"]["participants"] = json!(["Hospital A"]);
        assert_rejected::<TrainingSchedule>(&o, None, "participants must be member names");
        let old = fixture();
        let mut o = fixture();
        o["spec"]["taskId"] = json!("other");
        assert_rejected::<TrainingSchedule>(&o, Some(&old), "taskId cannot change");
        let mut o = fixture();
        o["spec"]["consortiumRef"]["name"] = json!("other");
        assert_rejected::<TrainingSchedule>(&o, Some(&old), "consortiumRef cannot change");
        let mut o = fixture();
        o["spec"]["taskId"] = json!("Sepsis_2026");
        assert_rejected::<TrainingSchedule>(&o, None, "taskId must be a DNS label");
        let mut o = fixture();
        o["spec"]["aggregator"] = json!("Research Centre");
        assert_rejected::<TrainingSchedule>(&o, None, "aggregator must be a DNS label");
    }
}
