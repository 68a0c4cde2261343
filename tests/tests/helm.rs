//! The Helm chart `deploy/helm/failover-agent`, with the `helm` the test environment builds
//! (`tests/env/build.sh`, from the `helm.sh/helm/v3` module) and its `kubectl`:
//!
//! * `helm lint --strict` passes for east and west; `helm template` fails without a
//!   cluster name;
//! * `helm template` for east and west renders the cluster's configuration, the
//!   ServiceAccount annotations (IRSA), a pinned image, the optional ServiceMonitor and the
//!   PrometheusRule carrying exactly the groups of `deploy/monitoring/rules.yml`;
//! * the chart's `crds/` and `files/rules.yml` are the same files as `deploy/crds/` and
//!   `deploy/monitoring/rules.yml`;
//! * the chart's ClusterRole has the same rules as the kustomize base's
//!   (`kubectl kustomize deploy/kustomize/base`);
//! * every rendered object (CRDs included) is accepted by the real east and west
//!   apiservers: `kubectl apply --server-side --dry-run=server`.

use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use failover_tests::chart::{CHART, documents, env_binary, helm, one, run, template};
use failover_tests::env::repo_root;
use failover_tests::kube::TestEnv;
use serde_yaml::Value;

fn read_yaml(path: &str) -> Result<Value> {
    let full = repo_root().join(path);
    serde_yaml::from_str(&std::fs::read_to_string(&full)?)
        .with_context(|| format!("parsing {}", full.display()))
}

#[tokio::test]
async fn the_chart_lints_and_renders_each_cluster_s_agent() -> Result<()> {
    let env = TestEnv::attach().await?;
    for cluster in ["east", "west"] {
        let set = format!("cluster={cluster}");
        let out = run(
            helm(&env, &["lint", "--strict", CHART, "--set", &set])?,
            None,
        )?;
        ensure!(out.contains("0 chart(s) failed"), "{out}");
    }
    let Err(e) = run(helm(&env, &["template", "failover-agent", CHART])?, None) else {
        bail!("helm template rendered without a cluster name");
    };
    ensure!(format!("{e:#}").contains("cluster is required"), "{e:#}");

    let role_arn = "arn:aws:iam::123456789012:role/failover-agent-west";
    let digest = format!("sha256:{}", "ab".repeat(32));
    for cluster in ["east", "west"] {
        let irsa = format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={role_arn}");
        let pin = format!("image.digest={digest}");
        let objects = template(
            &env,
            cluster,
            "failover-system",
            &[
                "--set-string",
                &irsa,
                "--set",
                &pin,
                "--set",
                "prometheusRule.enabled=true",
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "leaseDuration=45s",
            ],
        )?;
        let config = &one(&objects, "ConfigMap")?["data"];
        ensure!(config["FAILOVER_CLUSTER"] == cluster, "{config:?}");
        ensure!(config["FAILOVER_LEASE_DURATION"] == "45s", "{config:?}");
        ensure!(
            config["FAILOVER_ADMIN_ADDR"] == "0.0.0.0:9090",
            "{config:?}"
        );
        ensure!(
            config.get("FAILOVER_HEARTBEAT_INTERVAL").is_none(),
            "the agent refuses a lease duration and a heartbeat interval together"
        );
        let sa = one(&objects, "ServiceAccount")?;
        ensure!(
            sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role_arn,
            "{sa:?}"
        );
        let pod = &one(&objects, "Deployment")?["spec"]["template"]["spec"];
        let agent = &pod["containers"][0];
        ensure!(
            agent["image"] == format!("failover-agent@{digest}").as_str(),
            "{agent:?}"
        );
        ensure!(
            agent["livenessProbe"]["httpGet"]["path"] == "/live",
            "{agent:?}"
        );
        ensure!(
            agent["readinessProbe"]["httpGet"]["path"] == "/ready",
            "{agent:?}"
        );
        ensure!(pod["serviceAccountName"] == "failover-agent", "{pod:?}");
        let monitor = one(&objects, "ServiceMonitor")?;
        ensure!(
            monitor["spec"]["endpoints"][0]["port"] == "admin",
            "{monitor:?}"
        );
        let rule = one(&objects, "PrometheusRule")?;
        ensure!(
            rule["spec"]["groups"] == read_yaml("deploy/monitoring/rules.yml")?["groups"],
            "the chart's PrometheusRule differs from deploy/monitoring/rules.yml"
        );
    }
    // Off by default: a cluster without the Prometheus Operator's CRDs takes the chart.
    let plain = template(&env, "east", "failover-system", &[])?;
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        ensure!(
            !plain.iter().any(|o| o["kind"] == kind),
            "{kind} rendered by default"
        );
    }
    Ok(())
}

#[test]
fn the_chart_ships_the_same_crds_and_rules_as_deploy() -> Result<()> {
    let root = repo_root();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("deploy/crds"))? {
        let name = entry?.file_name();
        names.push(name.clone());
        let a = std::fs::read(root.join("deploy/crds").join(&name))?;
        let b = std::fs::read(root.join(CHART).join("crds").join(&name))
            .with_context(|| format!("the chart has no crds/{}", name.to_string_lossy()))?;
        ensure!(
            a == b,
            "{CHART}/crds/{0} differs from deploy/crds/{0} (copy it: cp deploy/crds/*.yaml {CHART}/crds/)",
            name.to_string_lossy()
        );
    }
    let chart_crds = std::fs::read_dir(root.join(CHART).join("crds"))?.count();
    ensure!(
        chart_crds == names.len(),
        "the chart's crds/ has files deploy/crds/ lacks"
    );
    ensure!(
        std::fs::read(root.join("deploy/monitoring/rules.yml"))?
            == std::fs::read(root.join(CHART).join("files/rules.yml"))?,
        "{CHART}/files/rules.yml differs from deploy/monitoring/rules.yml"
    );
    Ok(())
}

#[tokio::test]
async fn the_chart_s_cluster_role_has_the_kustomize_base_s_rules() -> Result<()> {
    let env = TestEnv::attach().await?;
    let mut kubectl = Command::new(env_binary(&env, "kubectl")?);
    kubectl.args(["kustomize", "deploy/kustomize/base"]);
    let base = documents(&run(kubectl, None)?)?;
    let chart = template(&env, "east", "failover-system", &[])?;
    let base_rules = &one(&base, "ClusterRole")?["rules"];
    let chart_rules = &one(&chart, "ClusterRole")?["rules"];
    ensure!(
        base_rules.as_sequence().is_some_and(|r| r.len() >= 10),
        "{base_rules:?}"
    );
    ensure!(
        base_rules == chart_rules,
        "ClusterRole rules differ:\nkustomize: {}\nchart: {}",
        serde_yaml::to_string(base_rules)?,
        serde_yaml::to_string(chart_rules)?
    );
    let binding = one(&chart, "ClusterRoleBinding")?;
    ensure!(
        binding["roleRef"]["name"] == one(&chart, "ClusterRole")?["metadata"]["name"]
            && binding["subjects"][0]["name"] == "failover-agent"
            && binding["subjects"][0]["namespace"] == "failover-system",
        "{binding:?}"
    );
    Ok(())
}

#[tokio::test]
async fn both_apiservers_accept_the_rendered_chart() -> Result<()> {
    let env = TestEnv::attach().await?;
    let ns = env.namespace("fo-helm").await?;
    let res = async {
        for c in env.clusters() {
            let set = format!("cluster={}", c.name);
            let rendered = run(
                helm(
                    &env,
                    &[
                        "template",
                        "failover-agent",
                        CHART,
                        "--include-crds",
                        "--namespace",
                        &ns.name,
                        "--set",
                        &set,
                    ],
                )?,
                None,
            )?;
            let objects = documents(&rendered)?;
            let mut kubectl = Command::new(env_binary(&env, "kubectl")?);
            kubectl.arg("--kubeconfig").arg(&c.kubeconfig).args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=failover-helm-test",
                "-o",
                "name",
                "-f",
                "-",
            ]);
            let applied = run(kubectl, Some(&rendered))?;
            let lines: Vec<&str> = applied.lines().collect();
            ensure!(
                lines.len() == objects.len(),
                "{} accepted {} of {} objects:\n{applied}",
                c.name,
                lines.len(),
                objects.len()
            );
            for kind in [
                "customresourcedefinition",
                "clusterrole",
                "clusterrolebinding",
                "serviceaccount",
                "configmap",
                "service",
                "deployment",
            ] {
                ensure!(
                    lines.iter().any(|l| l.starts_with(kind)),
                    "no {kind} applied in {}:\n{applied}",
                    c.name
                );
            }
        }
        Ok(())
    }
    .await;
    ns.cleanup().await;
    res
}
