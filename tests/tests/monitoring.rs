//! `deploy/monitoring/`: the alerting rules pass `promtool check rules` and their unit tests
//! (`promtool test rules deploy/monitoring/tests/*.yml`), the PrometheusRule carries the
//! same groups as `rules.yml`, every alert's runbook anchor exists, and every metric the
//! rules and the Grafana dashboard name is one the running agents export (scraped from
//! both agents' `/metrics` after a real failover and a fencing: counters as
//! `<name>_total`, histograms as `<name>_bucket`, `_sum` and `_count`).
//!
//! `promtool` comes from the Debian package `prometheus`, installed by `tests/env/build.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use failover_messages::crd::FailoverGroup;
use failover_tests::agents::{AgentStart, expect_exit};
use failover_tests::env::repo_root;
use failover_tests::fixtures::{GROUP, SETTLE};
use failover_tests::kube::{TestEnv, wait_for};
use failover_tests::observe::counter;
use failover_tests::scenario::Scenario;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};

fn monitoring() -> PathBuf {
    repo_root().join("deploy/monitoring")
}

/// Runs `promtool` with `args` in `deploy/monitoring`, failing with its output unless it
/// exits 0.
fn promtool(args: &[&str]) -> Result<String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .context("running promtool (Debian package prometheus; tests/env/build.sh installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

fn yaml(path: &Path) -> Result<serde_yaml::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The alerting rules of `rules.yml`.
fn rules() -> Result<Vec<serde_yaml::Value>> {
    let doc = yaml(&monitoring().join("rules.yml"))?;
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().context("no groups")? {
        out.extend(group["rules"].as_sequence().context("no rules")?.clone());
    }
    Ok(out)
}

#[tokio::test]
async fn promtool_checks_the_rules_and_runs_their_unit_tests() -> Result<()> {
    // Installs promtool on a fresh machine (tests/env/build.sh).
    TestEnv::attach().await?;
    let checked = promtool(&["check", "rules", "rules.yml"])?;
    let n = rules()?.len();
    ensure!(
        checked.contains(&format!("SUCCESS: {n} rules found")),
        "{checked}"
    );
    let mut tests: Vec<String> = std::fs::read_dir(monitoring().join("tests"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| format!("tests/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    tests.sort();
    ensure!(
        !tests.is_empty(),
        "no rule tests in deploy/monitoring/tests"
    );
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = promtool(&args)?;
    ensure!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test that expects it to fire.
    let mut tested = BTreeSet::new();
    for file in &tests {
        let doc = yaml(&monitoring().join(file))?;
        for test in doc["tests"].as_sequence().context("no tests")? {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let fires = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|a| !a.is_empty());
                if fires {
                    tested.insert(case["alertname"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
    }
    for rule in rules()? {
        let alert = rule["alert"].as_str().context("a rule without alert")?;
        ensure!(tested.contains(alert), "no unit test makes {alert} fire");
    }
    Ok(())
}

#[test]
fn the_prometheus_rule_wraps_the_same_groups_and_every_runbook_exists() -> Result<()> {
    let plain = yaml(&monitoring().join("rules.yml"))?;
    let wrapped = yaml(&monitoring().join("prometheusrule.yaml"))?;
    ensure!(wrapped["kind"] == "PrometheusRule", "{wrapped:?}");
    ensure!(
        wrapped["spec"]["groups"] == plain["groups"],
        "prometheusrule.yaml's spec.groups differ from rules.yml's groups"
    );
    let runbook = std::fs::read_to_string(monitoring().join("RUNBOOK.md"))?;
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for rule in rules()? {
        let alert = rule["alert"].as_str().context("a rule without alert")?;
        let link = rule["annotations"]["runbook"]
            .as_str()
            .with_context(|| format!("{alert} has no runbook annotation"))?;
        let anchor = link
            .strip_prefix("deploy/monitoring/RUNBOOK.md#")
            .with_context(|| format!("{alert}: runbook {link} is not a RUNBOOK.md anchor"))?;
        ensure!(
            anchor == alert.to_lowercase() && anchors.contains(anchor),
            "{alert}: RUNBOOK.md has no section {anchor}"
        );
        for key in ["summary", "description"] {
            ensure!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{alert} has no {key}"
            );
        }
    }
    Ok(())
}

/// The metric names an exposition declares or carries: `# TYPE` lines (counters as
/// `<name>_total`, histograms as `_bucket`, `_sum`, `_count`; families without samples
/// yet are declared all the same) and the names of the sample lines.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// The identifiers of a PromQL expression that stand for metrics: every `failover_…`
/// word, and any other word directly followed by a selector (`{`), e.g. `up{…}`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let starts = (c.is_ascii_alphabetic() || c == '_')
            && (i == 0 || !(bytes[i - 1] as char).is_ascii_alphanumeric() && bytes[i - 1] != b'_')
            && (i == 0 || !matches!(bytes[i - 1], b'$' | b'.' | b'"'));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ((bytes[i] as char).is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &expr[start..i];
        if word.starts_with("failover_") || bytes.get(i) == Some(&b'{') {
            out.insert(word.to_owned());
        }
    }
    out
}

/// Every string under a key `expr`, `query` or `definition` in a dashboard JSON value,
/// except in data-source variables (whose `query` is a plugin type, not PromQL).
fn dashboard_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) if map.get("type").is_some_and(|t| t == "datasource") => {}
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = metric_names(
        r#"sum by (le) (rate(failover_x_bucket{instance=~"$instance"}[5m])) - up{job="a"} or vector(0) offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["failover_x_bucket", "up"]
    );
    let exported = exported_names(
        "# HELP failover_ops Runs.\n# TYPE failover_ops counter\nfailover_ops_total{result=\"ok\"} 1\n\
         # TYPE failover_lat_seconds histogram\n# TYPE failover_in_flight gauge\n",
    );
    for n in [
        "failover_ops_total",
        "failover_lat_seconds_bucket",
        "failover_lat_seconds_count",
        "failover_in_flight",
    ] {
        assert!(exported.contains(n), "{n}: {exported:?}");
    }
}

/// Both agents' expositions after a real failover east -> west (steps, Kubernetes jobs, a
/// handoff) and a fencing: east's `api` Deployment scaled up by hand after the group moved
/// is fenced by east's agent on its next re-read (`failover_fencings_total`), as the
/// FailoverFenced alert expects; the group has automatic failover enabled, so east, the
/// standby after the failover, shows it armed. Families without a sample are not rendered
/// at all, so a fresh agent alone would not show them.
async fn scrape_after_failover_and_fencing(s: &mut Scenario) -> Result<String> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    // Automatic failover enabled (its default `after` outlasts the test), so its metrics
    // have series.
    for c in s.env.clusters() {
        Api::<FailoverGroup>::namespaced(c.client.clone(), &s.ns.name)
            .patch(
                GROUP,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"autoFailover": {"enabled": true}}})),
            )
            .await?;
    }
    let args = s.failover_args("west", "monitoring", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_exit(&s.stack.failoverctl(&args)?, 0, "failover to west")?;
    s.succeeded_on("west", "monitoring").await?;
    let api = Api::<Deployment>::namespaced(s.env.east.client.clone(), &s.ns.name);
    api.patch(
        "api",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await?;
    let stack = &s.stack;
    wait_for(
        "east's agent fencing the api Deployment scaled up by hand",
        SETTLE,
        || async {
            let text = stack.metrics("east").await.map_err(|e| e.to_string())?;
            Ok(
                (counter(&text, "failover_fencings", &["occasion=\"reread\""]) >= 1.0
                    && text.contains("failover_auto_failovers_total{"))
                .then_some(()),
            )
        },
    )
    .await?;
    let mut both = s.stack.metrics("east").await?;
    both.push_str(&s.stack.metrics("west").await?);
    Ok(both)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_rules_and_the_dashboard_is_exported_by_the_agents() -> Result<()> {
    let mut s = Scenario::new("monitoring").await?;
    s.stack.agent_options.reread_interval = Duration::from_secs(3);
    let scraped = Box::pin(scrape_after_failover_and_fencing(&mut s)).await;
    let exposition = match scraped {
        Ok(text) => {
            s.finish(Ok(())).await?;
            text
        }
        Err(e) => return s.finish(Err(e)).await,
    };
    let exported = exported_names(&exposition);
    let queries = queries()?;
    let mut missing = Vec::new();
    for (whose, expr) in &queries {
        let names = metric_names(expr);
        if names.is_empty() {
            missing.push(format!("{whose}: names no metric: {expr}"));
        }
        for name in names {
            // `up` is Prometheus's own series for every scrape target.
            if name != "up" && !exported.contains(&name) {
                missing.push(format!("{whose}: {name} in {expr}"));
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "metrics the agents do not export:\n{}\nexported: {exported:?}",
            missing.join("\n")
        );
    }
    Ok(())
}

/// Every alert's expression and every dashboard query, with whose it is.
fn queries() -> Result<Vec<(String, String)>> {
    let mut queries: Vec<(String, String)> = Vec::new();
    for rule in rules()? {
        let alert = rule["alert"].as_str().unwrap_or("?").to_owned();
        let expr = rule["expr"].as_str().context("a rule without expr")?;
        queries.push((format!("alert {alert}"), expr.to_owned()));
    }
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        monitoring().join("dashboard.json"),
    )?)?;
    let mut dash = Vec::new();
    dashboard_queries(&dashboard, &mut dash);
    ensure!(dash.len() >= 10, "too few dashboard queries: {dash:?}");
    queries.extend(dash.into_iter().map(|q| ("dashboard".to_owned(), q)));
    Ok(queries)
}
