//! The Helm chart `deploy/helm/failover-agent` rendered with the test environment's `helm`
//! (built by `tests/env/build.sh`): the objects of `helm template` for a cluster, and the
//! chart's ClusterRole, which [`crate::agents::Stack`] can bind the agents to instead of the
//! kustomize base's ([`crate::agents::AgentOptions::cluster_role`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::rbac::v1::ClusterRole;
use serde::Deserialize as _;
use serde_yaml::Value;

use crate::env::repo_root;
use crate::kube::TestEnv;

/// The chart, relative to the repository root.
pub const CHART: &str = "deploy/helm/failover-agent";

/// A binary of the test environment: `helm` (env.sh's `HELM`) or another one of its bin
/// directory (`kubectl`).
pub fn env_binary(env: &TestEnv, name: &str) -> Result<PathBuf> {
    if let Some(helm) = env.vars.get("HELM").filter(|_| name == "helm") {
        return Ok(PathBuf::from(helm));
    }
    let dir = env
        .vars
        .get("FAILOVER_TESTENV_BIN")
        .context("env.sh has no FAILOVER_TESTENV_BIN (re-run make env-up)")?;
    let path = Path::new(dir).join(name);
    ensure!(path.exists(), "{} does not exist", path.display());
    Ok(path)
}

/// `helm` with `args`, with its configuration, cache and data under `target/tmp`, so no
/// user configuration or repository leaks in.
pub fn helm(env: &TestEnv, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(env_binary(env, "helm")?);
    let home = repo_root().join("target/tmp/helm-home");
    cmd.args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    Ok(cmd)
}

/// Runs `cmd` in the repository root (with `stdin` on its standard input), failing with
/// its output unless it exits 0; returns its stdout.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Result<String> {
    use std::io::Write as _;
    let what = format!("{cmd:?}");
    cmd.current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{what} exited {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// The documents of a multi-document YAML text, empty ones left out.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The one object of `kind` among `objects`.
pub fn one<'a>(objects: &'a [Value], kind: &str) -> Result<&'a Value> {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    match found.as_slice() {
        [o] => Ok(o),
        _ => bail!("expected one {kind}, found {}", found.len()),
    }
}

/// `helm template failover-agent <chart> --namespace <namespace> --set cluster=<cluster>`
/// with `extra` arguments, as YAML text.
pub fn template_text(
    env: &TestEnv,
    cluster: &str,
    namespace: &str,
    extra: &[&str],
) -> Result<String> {
    let set = format!("cluster={cluster}");
    let mut args = vec![
        "template",
        "failover-agent",
        CHART,
        "--namespace",
        namespace,
        "--set",
        &set,
    ];
    args.extend(extra);
    run(helm(env, &args)?, None)
}

/// [`template_text`]'s objects.
pub fn template(
    env: &TestEnv,
    cluster: &str,
    namespace: &str,
    extra: &[&str],
) -> Result<Vec<Value>> {
    documents(&template_text(env, cluster, namespace, extra)?)
}

/// The ClusterRole the chart renders for `cluster`.
pub fn cluster_role(env: &TestEnv, cluster: &str) -> Result<ClusterRole> {
    let objects = template(env, cluster, "failover-system", &[])?;
    let role = one(&objects, "ClusterRole")?;
    serde_yaml::from_value(role.clone()).context("the chart's ClusterRole does not parse")
}
