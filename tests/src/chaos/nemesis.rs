//! The nemesis's hands: a planned fault applied to one agent (toxics on its toxiproxy
//! proxies, SIGKILL, a restart with `FAILPOINTS`), healed, and the agents watched while an
//! operation runs (a failpoint's crash is restarted clean; an agent that exits without one
//! is a violation, unless it failed its start-up checks, as an agent whose apiserver or
//! DynamoDB cannot be reached does, and which a Deployment restarts) and restored after it
//! (every proxy healed, every dead or armed agent restarted clean and ready).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use super::schedule::{Fault, FaultKind};
use crate::agents::{AgentStart, Stack};
use crate::faults::Service;
use crate::scenario::crash_points;

/// The clusters an agent runs in.
pub const CLUSTERS: [&str; 2] = ["east", "west"];

/// What an agent's exit meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A failpoint crashed it (`<cluster>: <the failpoint's line>`).
    Crash(String),
    /// Its start-up checks failed (`<cluster>: <its error line>`): it exits, and is
    /// restarted, as a Deployment would.
    StartupFailure(String),
    /// It exited on its own after it had started (a violation), with the tail of its log.
    Unexpected(String),
}

/// What the nemesis knows of one agent.
#[derive(Clone, Debug, Default)]
struct AgentState {
    /// Killed by a [`FaultKind::Kill`], waiting for its restart.
    down: bool,
    /// Running with these `FAILPOINTS`: restarted clean after the operation.
    armed: Option<&'static str>,
    /// Where the running process's part of the log (which every restart appends to)
    /// begins.
    log_from: usize,
}

/// The start-up line of an agent that passed its start-up checks.
const STARTED: &str = "agent started";
/// How an agent's error exit begins.
const ERROR_EXIT: &str = "failover-agent: error:";

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
                self.spawn(stack, cluster, fault.kind.failpoints()).await?;
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
        self.spawn(stack, cluster, None).await?;
        Ok(exit)
    }

    /// Starts the agent of `cluster` with `failpoints` (a running one is killed when its
    /// successor starts), not waiting for it to be ready.
    async fn spawn(
        &mut self,
        stack: &mut Stack,
        cluster: &str,
        failpoints: Option<&'static str>,
    ) -> Result<()> {
        let log_from = std::fs::read_to_string(log_path(stack, cluster))
            .map(|l| l.len())
            .unwrap_or(0);
        stack
            .spawn_agent_with(cluster, agent_start(failpoints))
            .await?;
        *self.state(cluster) = AgentState {
            down: false,
            armed: failpoints,
            log_from,
        };
        Ok(())
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
            // One that fails its start-up checks (a connection the heal closed) is started
            // again, as a Deployment would.
            let mut tries = 0;
            while let Err(e) = stack.wait_agent_ready(cluster).await {
                tries += 1;
                if tries >= 3 || agent_running(stack, cluster)? {
                    return Err(e);
                }
                exits.extend(self.restart(stack, cluster).await?);
            }
        }
        Ok(exits)
    }

    /// When the agent of `cluster` is not running and was not killed by the nemesis: what
    /// its exit meant, from its process's part of the log.
    fn note_exit(&mut self, stack: &mut Stack, cluster: &str) -> Result<Option<Exit>> {
        if self.state(cluster).down || agent_running(stack, cluster)? {
            return Ok(None);
        }
        let log = std::fs::read_to_string(log_path(stack, cluster)).unwrap_or_default();
        let from = self.state(cluster).log_from;
        // Later exits of the same process are not noted again.
        self.state(cluster).log_from = log.len();
        Ok(Some(exit_of(cluster, log.get(from..).unwrap_or_default())))
    }
}

/// What the exit of the agent of `cluster` meant, from what the process logged.
pub fn exit_of(cluster: &str, log: &str) -> Exit {
    let log = strip_ansi(log);
    if let Some(line) = crash_points(&log).last() {
        return Exit::Crash(format!("{cluster}: {line}"));
    }
    let error = log.lines().rev().find(|l| l.starts_with(ERROR_EXIT));
    match error {
        Some(line) if !log.contains(STARTED) => {
            Exit::StartupFailure(format!("{cluster}: {}", line.trim()))
        }
        _ => {
            let lines: Vec<&str> = log.lines().collect();
            Exit::Unexpected(format!(
                "agent-{cluster} exited without a failpoint crash after it had started; its log ends:\n{}",
                lines[lines.len().saturating_sub(15)..].join("\n")
            ))
        }
    }
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn log_path(stack: &Stack, cluster: &str) -> PathBuf {
    stack.dir.join(format!("agent-{cluster}.log"))
}

fn agent_running(stack: &mut Stack, cluster: &str) -> Result<bool> {
    stack.proc_mut(&format!("agent-{cluster}"))?.running()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_is_told_from_the_process_s_log() {
        let crash = "\u{1b}[2mstarting\u{1b}[0m\nfailpoint engine::done::before (X): crash\n";
        assert_eq!(
            exit_of("east", crash),
            Exit::Crash("east: failpoint engine::done::before (X): crash".into())
        );
        let startup = "INFO connecting\nfailover-agent: error: cannot list failovergroups\n";
        assert_eq!(
            exit_of("west", startup),
            Exit::StartupFailure("west: failover-agent: error: cannot list failovergroups".into())
        );
        let later = "INFO agent started cluster=west\nfailover-agent: error: boom\n";
        assert!(matches!(exit_of("west", later), Exit::Unexpected(t) if t.contains("error: boom")));
        assert!(matches!(exit_of("west", ""), Exit::Unexpected(_)));
    }
}
