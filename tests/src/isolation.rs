//! Keeps one test's agent away from other tests' applications in the shared clusters.
//!
//! Every test runs its own agents, each with its own table, against the same two
//! kube-apiservers. An agent whose serving lease runs out fences, without DynamoDB, every
//! FailoverGroup in its cluster whose side is active there (it cannot tell which table a group
//! belongs to), so a test that cuts an agent off from DynamoDB would also fence the
//! applications of every other test running at that moment.
//!
//! [`isolate_agent`] installs a ValidatingAdmissionPolicy (and its binding) in a cluster that
//! refuses any create, update or delete by the test's agent ServiceAccount outside the
//! test's namespaces, except on `failover.io` objects (their statuses, which every agent
//! keeps for every group and which change nothing that runs). It returns once a dry-run
//! write with the agent's own kubeconfig outside those namespaces is refused. The API server
//! words such a refusal "forbidden", like an RBAC one; it names the policy
//! ([`POLICY_PREFIX`]), which tells the two apart.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::kube::{Cluster, wait_for};

/// The agent ServiceAccount's name (as `agents` creates it).
const AGENT_SA: &str = "failover-agent";
/// A namespace outside every test's, where the probe write goes.
const PROBE_NAMESPACE: &str = "default";

/// How the names of the policies begin (a refusal names its policy).
pub const POLICY_PREFIX: &str = "failover-agent-isolation-";

/// The per-test name of the policy and its binding (cluster-scoped, so unique).
fn policy_name(sa_ns: &str) -> String {
    format!("{POLICY_PREFIX}{sa_ns}")
}

/// Installs the policy for the agent ServiceAccount of namespace `sa_ns` in cluster `c`,
/// allowing its writes in `allowed` only, and waits until the agent's kubeconfig at
/// `agent_kubeconfig` is refused a dry-run write outside them. Idempotent.
pub async fn isolate_agent(
    c: &Cluster,
    sa_ns: &str,
    allowed: &[&str],
    agent_kubeconfig: &Path,
) -> Result<()> {
    let name = policy_name(sa_ns);
    let user = format!("system:serviceaccount:{sa_ns}:{AGENT_SA}");
    let namespaces = serde_json::to_string(allowed)?.replace('"', "'");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"],
                "operations": ["CREATE", "UPDATE", "DELETE"], "scope": "Namespaced",
            }]},
            "matchConditions": [{
                "name": "this-tests-agent",
                "expression": format!("request.userInfo.username == '{user}'"),
            }],
            "validations": [{
                "expression": format!(
                    "request.resource.group == 'failover.io' || request.namespace in {namespaces}"
                ),
                "message": format!("test isolation: the agent of {sa_ns} changes nothing outside {namespaces}"),
            }],
        },
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }))?;
    let pp = PostParams::default();
    ignore_conflict(
        Api::<ValidatingAdmissionPolicy>::all(c.client.clone())
            .create(&pp, &policy)
            .await,
    )
    .with_context(|| format!("creating ValidatingAdmissionPolicy {name} in {}", c.name))?;
    ignore_conflict(
        Api::<ValidatingAdmissionPolicyBinding>::all(c.client.clone())
            .create(&pp, &binding)
            .await,
    )
    .with_context(|| {
        format!(
            "creating ValidatingAdmissionPolicyBinding {name} in {}",
            c.name
        )
    })?;
    wait_refused(c, &name, agent_kubeconfig).await
}

/// Waits until a dry-run Event created with the agent's kubeconfig in [`PROBE_NAMESPACE`]
/// is refused by the policy `name` (the API server loads policies asynchronously).
async fn wait_refused(c: &Cluster, name: &str, agent_kubeconfig: &Path) -> Result<()> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(agent_kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let events = Api::<Event>::namespaced(kube::Client::try_from(config)?, PROBE_NAMESPACE);
    let probe: Event = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-probe")},
        "eventTime": jiff::Timestamp::now(),
        "reportingController": "failover.io/isolation-probe",
        "reportingInstance": "probe",
        "action": "Probe",
        "reason": "Probe",
        "type": "Normal",
        "note": "a dry-run write that the isolation policy must refuse",
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_for(
        &format!(
            "the isolation policy {name} to refuse the agent's writes in {}",
            c.name
        ),
        Duration::from_secs(30),
        || async {
            match events.create(&dry_run, &probe).await {
                Err(kube::Error::Api(s)) if s.message.contains(name) => Ok(Some(())),
                other => Err(format!("the probe write: {other:?}")),
            }
        },
    )
    .await
}

/// Removes the policy and binding of `sa_ns` from cluster `c` (best effort).
pub async fn remove_isolation(c: &Cluster, sa_ns: &str) {
    let name = policy_name(sa_ns);
    let dp = DeleteParams::default();
    let _ = Api::<ValidatingAdmissionPolicyBinding>::all(c.client.clone())
        .delete(&name, &dp)
        .await;
    let _ = Api::<ValidatingAdmissionPolicy>::all(c.client.clone())
        .delete(&name, &dp)
        .await;
}

fn ignore_conflict<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
