//! What the agent benchmarks read from the running agents and the store: the `/metrics`
//! counters, the processes' peak memory, and the moment a group shows its new active
//! cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation};
use failover_messages::store::{StartOutcome, StartRequest, Store};

use crate::agents::Stack;
use crate::kube::wait_for;

/// The clusters, in the order the benchmarks report them.
pub const CLUSTERS: [&str; 2] = ["east", "west"];

/// A counter family as scraped: label set (`k=v,k=v`, as exposed) → value.
pub type Counters = BTreeMap<String, u64>;

/// One agent's counters of interest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scrape {
    /// `failover_aws_calls_total`, keyed `operation/api` (DynamoDB call attempts, every
    /// `outcome` summed).
    pub aws_calls: Counters,
    /// `failover_sqs_messages_total`, keyed `kind/outcome` (inbox messages handled).
    pub sqs_messages: Counters,
    /// `failover_sqs_calls_total`, keyed by API (SQS calls, every `outcome` summed).
    pub sqs_calls: Counters,
    /// `failover_operations_total{result="succeeded"}`.
    pub succeeded: u64,
}

impl Scrape {
    /// Reads the counters from a Prometheus text exposition.
    pub fn parse(text: &str) -> Self {
        let mut s = Scrape::default();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let value = value.max(0.0) as u64;
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, parse_labels(l.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            match name {
                "failover_aws_calls_total" => {
                    *s.aws_calls
                        .entry(format!("{}/{}", get("operation"), get("api")))
                        .or_default() += value;
                }
                "failover_sqs_messages_total" => {
                    *s.sqs_messages
                        .entry(format!("{}/{}", get("kind"), get("outcome")))
                        .or_default() += value;
                }
                "failover_sqs_calls_total" => {
                    *s.sqs_calls.entry(get("api")).or_default() += value;
                }
                "failover_operations_total" if get("result") == "succeeded" => {
                    s.succeeded += value;
                }
                _ => {}
            }
        }
        s
    }

    /// The sum of several agents' counters.
    pub fn sum<'a>(scrapes: impl IntoIterator<Item = &'a Scrape>) -> Scrape {
        let mut out = Scrape::default();
        for s in scrapes {
            add(&mut out.aws_calls, &s.aws_calls);
            add(&mut out.sqs_messages, &s.sqs_messages);
            add(&mut out.sqs_calls, &s.sqs_calls);
            out.succeeded += s.succeeded;
        }
        out
    }

    /// What grew from `before` to `self` (counters only grow; a restart would show as 0).
    pub fn since(&self, before: &Scrape) -> Scrape {
        Scrape {
            aws_calls: delta(&self.aws_calls, &before.aws_calls),
            sqs_messages: delta(&self.sqs_messages, &before.sqs_messages),
            sqs_calls: delta(&self.sqs_calls, &before.sqs_calls),
            succeeded: self.succeeded.saturating_sub(before.succeeded),
        }
    }

    /// All DynamoDB calls.
    pub fn aws_total(&self) -> u64 {
        self.aws_calls.values().sum()
    }

    /// All inbox messages handled.
    pub fn sqs_total(&self) -> u64 {
        self.sqs_messages.values().sum()
    }

    /// All SQS calls.
    pub fn sqs_calls_total(&self) -> u64 {
        self.sqs_calls.values().sum()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(
            key.trim_start_matches(',').trim().to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    out
}

fn add(into: &mut Counters, from: &Counters) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn delta(now: &Counters, before: &Counters) -> Counters {
    now.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Both agents' counters, summed.
pub async fn scrape_agents(stack: &Stack) -> Result<Scrape> {
    let mut all = Vec::new();
    for c in CLUSTERS {
        all.push(Scrape::parse(&stack.metrics(c).await?));
    }
    Ok(Scrape::sum(&all))
}

/// Peak (`VmHWM`) and current (`VmRSS`) resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmHWM`.
    pub peak_kib: u64,
    /// `VmRSS`.
    pub rss_kib: u64,
}

/// Reads `/proc/<pid>/status`.
pub fn memory_of(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok(Memory {
        peak_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
    })
}

/// Each agent's memory, east first.
pub fn agents_memory(stack: &mut Stack) -> Result<Vec<(String, Memory)>> {
    let mut out = Vec::new();
    for c in CLUSTERS {
        let pid = stack.proc_mut(&format!("agent-{c}"))?.pid();
        out.push((c.to_owned(), memory_of(pid)?));
    }
    Ok(out)
}

/// The 1-minute load average (`/proc/loadavg`), when readable.
pub fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Starts a CONSISTENCY failover of `group` from `source` to `target` the way the
/// coordinator does (as `failoverctl failover` without `--wait`): one conditional
/// transaction, then `OperationStarted` to both inboxes. `store` counts the coordinator's
/// DynamoDB calls.
pub async fn start_failover(
    stack: &Stack,
    store: &Store,
    group: &GroupRef,
    source: &str,
    target: &str,
) -> Result<Operation> {
    let op = match store
        .start_operation(StartRequest {
            group: group.clone(),
            source: source.into(),
            target: target.into(),
            mode: Mode::Consistency,
            force: false,
            source_is_down: false,
            reason: "failover-bench".into(),
            requested_by: "failover-bench".into(),
            lease_ttl: Duration::from_secs(300),
            op_id: None,
        })
        .await?
    {
        StartOutcome::Started(op) => op,
        other => bail!("the operation of {group} did not start: {other:?}"),
    };
    for cluster in [source, target] {
        let envelope = Envelope {
            kind: EnvelopeKind::OperationStarted,
            operation_id: op.id.clone(),
            group: group.clone(),
            epoch: op.epoch,
            sender: "coordinator".into(),
            sent_at: jiff::Timestamp::now(),
        };
        stack
            .inbox
            .send(cluster, &envelope)
            .await
            .with_context(|| format!("notifying {cluster}"))?;
    }
    Ok(op)
}

/// Polls the group state (one consistent `GetItem` every `every`) until `target` is active
/// with no operation in flight; returns the time since `since`.
pub async fn wait_active(
    store: &Store,
    group: &GroupRef,
    target: &str,
    since: Instant,
    every: Duration,
    deadline: Duration,
) -> Result<Duration> {
    loop {
        let state = store.get_group_state(group).await?;
        if state
            .as_ref()
            .is_some_and(|s| s.active_cluster == target && s.op_id.is_none())
        {
            return Ok(since.elapsed());
        }
        if since.elapsed() > deadline {
            bail!("{group} not active in {target} after {deadline:?}: {state:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until the agents together report `want` succeeded operation runs (each agent
/// counts its own side), i.e. both sides have finished.
pub async fn wait_succeeded(stack: &Stack, want: u64, deadline: Duration) -> Result<()> {
    wait_for(
        &format!("{want} succeeded operation runs on the agents"),
        deadline,
        || async {
            let s = scrape_agents(stack).await.map_err(|e| format!("{e:#}"))?;
            if s.succeeded >= want {
                Ok(Some(()))
            } else {
                Err(format!("{} succeeded", s.succeeded))
            }
        },
    )
    .await
}

/// Checks what a finished benchmark leaves: the agents still run without RBAC refusals and
/// the storage simulators saw no safety violation. Returns the number of violations.
pub async fn finish_stack(stack: &mut Stack) -> Result<usize> {
    stack.check_agents()?;
    let violations = stack.stop_storage_sim().await?;
    for v in &violations {
        tracing::warn!(?v, "storage violation");
    }
    ensure!(
        violations.is_empty(),
        "{} storage violations",
        violations.len()
    );
    Ok(violations.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agent_counters() {
        let text = "# HELP failover_aws_calls DynamoDB call attempts.\n\
            # TYPE failover_aws_calls counter\n\
            failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"ok\"} 6\n\
            failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"throttled\"} 1\n\
            failover_aws_calls_total{operation=\"mark_all_ready\",api=\"TransactWriteItems\",outcome=\"ok\"} 2\n\
            failover_sqs_messages_total{kind=\"OperationStarted\",outcome=\"handled\"} 3\n\
            failover_sqs_calls_total{api=\"SendMessage\",outcome=\"ok\"} 2\n\
            failover_sqs_calls_total{api=\"SendMessage\",outcome=\"error\"} 1\n\
            failover_sqs_calls_total{api=\"ReceiveMessage\",outcome=\"ok\"} 5\n\
            failover_operations_total{result=\"succeeded\"} 4\n\
            failover_operations_total{result=\"failed\"} 1\n";
        let s = Scrape::parse(text);
        assert_eq!(s.aws_calls["put_heartbeat/PutItem"], 7);
        assert_eq!(s.aws_total(), 9);
        assert_eq!(s.sqs_total(), 3);
        assert_eq!(s.sqs_calls["SendMessage"], 3);
        assert_eq!(s.sqs_calls_total(), 8);
        assert_eq!(s.succeeded, 4);
        let before = Scrape::parse(
            "failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"ok\"} 5\n",
        );
        let d = s.since(&before);
        assert_eq!(d.aws_calls["put_heartbeat/PutItem"], 2);
        assert_eq!(d.aws_total(), 4);
    }
}
