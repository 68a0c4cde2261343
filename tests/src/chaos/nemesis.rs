//! The nemesis's hands: a planned fault applied to one agent (toxics on its toxiproxy
//! proxies, SIGKILL, a restart with `FAILPOINTS`), healed, and the agents watched while an
//! operation runs (a failpoint's crash is restarted clean; an agent that exits without one
//! is a violation) and restored after it (every proxy healed, every dead or armed agent
//! restarted clean and ready).

use std::collections::BTreeMap;

use anyhow::Result;

use super::schedule::{Fault, FaultKind};
use crate::agents::{AgentStart, Stack};
use crate::faults::Service;
use crate::scenario::{crash_points, tail};

/// The clusters an agent runs in.
pub const CLUSTERS: [&str; 2] = ["east", "west"];

/// What an agent's exit meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A failpoint crashed it (`<cluster>: <the failpoint's line>`).
    Crash(String),
    /// It exited on its own (a violation), with the tail of its log.
    Unexpected(String),
}

/// What the nemesis knows of one agent.
#[derive(Clone, Debug, Default)]
struct AgentState {
    /// Killed by a [`FaultKind::Kill`], waiting for its restart.
    down: bool,
    /// Running with these `FAILPOINTS`: restarted clean after the operation.
    armed: Option<&'static str>,
    /// Failpoint crash lines of its log already accounted for.
    crashes_seen: usize,
}

/// Both agents as the nemesis left them.
#[derive(Debug, Default)]
pub struct Agents {
    state: BTreeMap<String, AgentState>,
}

/// How every agent of a chaos run starts: DynamoDB, SQS and its apiserver through its own
/// proxies, and `FAILPOINTS` when given.
pub fn agent_start(failpoints: Option<&str>) -> AgentStart {
    AgentStart {
        faults: true,
        env: failpoints
            .map(|f| vec![("FAILPOINTS".to_owned(), f.to_owned())])
            .unwrap_or_default(),
        ..AgentStart::default()
    }
}

impl Agents {
    fn state(&mut self, cluster: &str) -> &mut AgentState {
        self.state.entry(cluster.to_owned()).or_default()
    }

    /// Applies `fault` to the agent of `cluster`; returns what an exit seen on the way
    /// meant.
    pub async fn apply(
        &mut self,
        stack: &mut Stack,
        fault: &Fault,
        cluster: &str,
    ) -> Result<Option<Exit>> {
        let faults = stack.faults();
        match fault.kind {
            FaultKind::Cut { service, .. } => faults.cut(cluster, service).await?,
            FaultKind::SqsWholeOperation => faults.cut(cluster, Service::Sqs).await?,
            FaultKind::Latency {
                service,
                latency,
                jitter,
                ..
            } => faults.latency(cluster, service, latency, jitter).await?,
            FaultKind::Kill { .. } => {
                let exit = self.note_exit(stack, cluster)?;
                if exit.is_none() {
                    stack.kill_agent(cluster)?;
                }
                self.state(cluster).down = true;
                return Ok(exit);
            }
            FaultKind::CrashPoint | FaultKind::Throttle => {
                let exit = self.note_exit(stack, cluster)?;
                let failpoints = fault.kind.failpoints();
                // The running agent is killed when its successor starts.
                stack
                    .spawn_agent_with(cluster, agent_start(failpoints))
                    .await?;
                let state = self.state(cluster);
                state.armed = failpoints;
                state.down = false;
                return Ok(exit);
            }
        }
        Ok(None)
    }

    /// Heals the proxy `fault` put toxics on.
    pub async fn heal(&self, stack: &Stack, fault: &Fault, cluster: &str) -> Result<()> {
        match fault.kind {
            FaultKind::Cut { service, .. } | FaultKind::Latency { service, .. } => {
                stack.faults().heal(cluster, service).await
            }
            FaultKind::SqsWholeOperation => stack.faults().heal(cluster, Service::Sqs).await,
            _ => Ok(()),
        }
    }

    /// Restarts the agent of `cluster` clean (not waiting for it to be ready).
    pub async fn restart(&mut self, stack: &mut Stack, cluster: &str) -> Result<Option<Exit>> {
        let exit = self.note_exit(stack, cluster)?;
        stack.spawn_agent_with(cluster, agent_start(None)).await?;
        let state = self.state(cluster);
        state.down = false;
        state.armed = None;
        Ok(exit)
    }

    /// While an operation runs: every agent that exited and is not waiting for a planned
    /// restart is restarted clean; returns what each exit meant.
    pub async fn watch(&mut self, stack: &mut Stack) -> Result<Vec<Exit>> {
        let mut exits = Vec::new();
        for cluster in CLUSTERS {
            if self.state(cluster).down || agent_running(stack, cluster)? {
                continue;
            }
            exits.extend(self.restart(stack, cluster).await?);
        }
        Ok(exits)
    }

    /// After an operation: heals every proxy, restarts every agent that is dead, killed or
    /// running with failpoints, clean, and waits until both answer `/ready`.
    pub async fn restore(&mut self, stack: &mut Stack) -> Result<Vec<Exit>> {
        stack.faults().heal_all().await?;
        let mut exits = Vec::new();
        for cluster in CLUSTERS {
            let state = self.state(cluster).clone();
            if state.down || state.armed.is_some() || !agent_running(stack, cluster)? {
                exits.extend(self.restart(stack, cluster).await?);
            }
        }
        for cluster in CLUSTERS {
            stack.wait_agent_ready(cluster).await?;
        }
        Ok(exits)
    }

    /// When the agent of `cluster` is not running and was not killed by the nemesis: what
    /// its exit meant (the failpoint crash lines its log gained, or an unexpected exit).
    fn note_exit(&mut self, stack: &mut Stack, cluster: &str) -> Result<Option<Exit>> {
        if self.state(cluster).down || agent_running(stack, cluster)? {
            return Ok(None);
        }
        let name = format!("agent-{cluster}");
        let log = stack.proc_mut(&name)?.log_text();
        let lines: Vec<String> = crash_points(&log).collect();
        let state = self.state(cluster);
        let new = lines.get(state.crashes_seen..).unwrap_or_default().to_vec();
        state.crashes_seen = lines.len();
        Ok(Some(match new.last() {
            Some(line) => Exit::Crash(format!("{cluster}: {line}")),
            None => Exit::Unexpected(format!(
                "{name} exited without a failpoint crash; its log ends:\n{}",
                tail(&log, 15)
            )),
        }))
    }
}

fn agent_running(stack: &mut Stack, cluster: &str) -> Result<bool> {
    stack.proc_mut(&format!("agent-{cluster}"))?.running()
}
