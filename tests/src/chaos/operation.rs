//! One operation of a chaos run: started with `failoverctl failover` to whichever cluster
//! is not active, its timeline of faults, heals, restarts and the abort played from its
//! start while its phase is polled, then everything healed and restarted, a `Failed`
//! operation that still holds its group aborted, and both groups waited for until idle.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation, Phase};
use serde_json::Value;

use super::Run;
use super::nemesis::{CLUSTERS, Exit};
use super::report::{AbortAnswer, OpRecord, Outcome};
use super::schedule::{Event, FaultKind, OpPlan, Role};
use crate::kube::wait_for;

/// How often the operation's phase is read and the agents are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How often a refused start is tried again (an agent's heartbeat may be a moment old after
/// a restart), and how many times.
const START_RETRY: Duration = Duration::from_secs(2);
const START_TRIES: usize = 10;
/// `failoverctl`'s exit code for a refusal.
const EXIT_REFUSED: i32 = 3;

/// Where an operation stands after its timeline.
enum Ended {
    /// Terminal in this phase, after this long.
    Terminal(Phase, Duration),
    /// Not terminal by the deadline.
    Deadline(Option<Phase>),
}

impl Run {
    /// Runs the operation `plan` says; `Ok(false)` when the run cannot go on after it (a
    /// group never became idle again).
    pub(super) async fn operation(&mut self, plan: &OpPlan) -> Result<(OpRecord, bool)> {
        let group = self.groups[plan.group].clone();
        let state = self
            .stack
            .store
            .get_group_state(&group)
            .await?
            .with_context(|| format!("{group} is not registered"))?;
        let from = state.active_cluster.clone();
        let to = other_cluster(&from).to_owned();
        let mut rec = OpRecord {
            plan: plan.clone(),
            group: group.to_string(),
            from,
            to,
            op_id: None,
            outcome: Outcome::NotStarted(String::new()),
            duration: None,
            abort: None,
            applied: Vec::new(),
            crashes: Vec::new(),
            startup_failures: Vec::new(),
            problems: Vec::new(),
        };
        tracing::info!(
            "operation {}: {group} {} → {}, {}",
            plan.index,
            rec.from,
            rec.to,
            plan.describe()
        );
        // An SQS cut for the whole operation starts before it, so the start's notice is lost.
        for (i, f) in plan.faults.iter().enumerate() {
            if f.kind == FaultKind::SqsWholeOperation {
                let cluster = self.role_cluster(&rec, f.role);
                let exit = self.agents.apply(&mut self.stack, f, &cluster).await?;
                self.note(&mut rec, exit);
                rec.applied.push(i);
            }
        }
        let Some((op_id, t0)) = self.start_operation(&mut rec, &group).await? else {
            let ok = self.after(&mut rec, &group, None).await?;
            return Ok((rec, ok));
        };
        rec.op_id = Some(op_id.clone());
        let ended = self.timeline(&mut rec, &op_id, t0).await?;
        let phase = match ended {
            Ended::Terminal(phase, took) => {
                rec.duration = Some(took);
                Some(phase)
            }
            Ended::Deadline(phase) => {
                rec.outcome = Outcome::Stuck(phase);
                rec.problems.push(format!(
                    "operation {op_id} of {group} not terminal {} s after its start (phase {})",
                    self.config.deadline.as_secs(),
                    phase.map_or("unknown".to_owned(), |p| p.to_string())
                ));
                None
            }
        };
        if let Some(phase) = phase {
            rec.outcome = Outcome::Closed(phase);
        }
        let ok = self.after(&mut rec, &group, Some(&op_id)).await?;
        tracing::info!(
            "operation {}: {} in {:?}, {} faults applied",
            plan.index,
            rec.outcome,
            rec.duration,
            rec.applied.len()
        );
        Ok((rec, ok))
    }

    /// `failoverctl failover` as the plan says; the operation's id and the instant it was
    /// started, or `None` (with the record saying why) when it was not.
    async fn start_operation(
        &mut self,
        rec: &mut OpRecord,
        group: &GroupRef,
    ) -> Result<Option<(String, Instant)>> {
        let plan = &rec.plan;
        let reason = format!("chaos seed {} operation {}", self.config.seed, plan.index);
        let g = group.to_string();
        let mut args = vec![
            "-o", "json", "failover", &g, "--to", &rec.to, "--reason", &reason,
        ];
        if plan.force {
            args.push("--force");
        } else if plan.mode == Mode::Uptime {
            args.extend(["--mode", "uptime"]);
        }
        let mut last = String::new();
        for _ in 0..START_TRIES {
            let t0 = Instant::now();
            let out = self.stack.failoverctl(&args)?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            match out.status.code() {
                Some(0) => {
                    let v: Value = serde_json::from_str(&stdout)
                        .with_context(|| format!("failoverctl failover -o json: {stdout}"))?;
                    let id = v["operations"][0]["operationId"]
                        .as_str()
                        .with_context(|| format!("no operation id in {v}"))?;
                    return Ok(Some((id.to_owned(), t0)));
                }
                Some(EXIT_REFUSED) => tokio::time::sleep(START_RETRY).await,
                code => {
                    last = format!("exit {code:?}: {last}");
                    break;
                }
            }
        }
        rec.problems.push(format!(
            "failoverctl failover {g} --to {} did not start: {last}",
            rec.to
        ));
        rec.outcome = Outcome::NotStarted(last);
        Ok(None)
    }

    /// Plays the plan's timeline from `t0` until the operation is terminal or its deadline.
    async fn timeline(&mut self, rec: &mut OpRecord, op_id: &str, t0: Instant) -> Result<Ended> {
        let events = rec.plan.timeline();
        let mut next = 0;
        let mut phase = None;
        loop {
            let now = t0.elapsed();
            while let Some((_, event)) = events.get(next).filter(|(at, _)| *at <= now) {
                self.event(rec, *event, op_id).await?;
                next += 1;
            }
            let exits = self.agents.watch(&mut self.stack).await?;
            for exit in exits {
                self.note(rec, Some(exit));
            }
            let op = self.read_operation(op_id).await?;
            phase = op.as_ref().map(|o| o.phase).or(phase);
            if let Some(op) = op.filter(|o| o.phase.is_terminal()) {
                let took = recorded_duration(&op).unwrap_or_else(|| t0.elapsed());
                // What was still to come falls after the end: not applied, abort not sent.
                if events[next..].iter().any(|(_, e)| *e == Event::Abort) {
                    rec.abort = Some(AbortAnswer::Late);
                }
                return Ok(Ended::Terminal(op.phase, took));
            }
            if now >= self.config.deadline {
                return Ok(Ended::Deadline(phase));
            }
            let wait = events
                .get(next)
                .map_or(TICK, |(at, _)| at.saturating_sub(now).min(TICK));
            tokio::time::sleep(wait).await;
        }
    }

    async fn event(&mut self, rec: &mut OpRecord, event: Event, op_id: &str) -> Result<()> {
        match event {
            Event::Apply(i) => {
                let fault = rec.plan.faults[i];
                if fault.kind == FaultKind::SqsWholeOperation {
                    return Ok(());
                }
                let cluster = self.role_cluster(rec, fault.role);
                tracing::info!("  {fault} ({cluster})");
                let exit = self.agents.apply(&mut self.stack, &fault, &cluster).await?;
                self.note(rec, exit);
                rec.applied.push(i);
            }
            Event::Heal(i) => {
                let fault = rec.plan.faults[i];
                let cluster = self.role_cluster(rec, fault.role);
                self.agents.heal(&self.stack, &fault, &cluster).await?;
            }
            Event::Restart(i) => {
                let cluster = self.role_cluster(rec, rec.plan.faults[i].role);
                let exit = self.agents.restart(&mut self.stack, &cluster).await?;
                self.note(rec, exit);
            }
            Event::Abort => {
                let answer = self.abort(op_id)?;
                tracing::info!("  abort: {answer}");
                if let AbortAnswer::Error(e) = &answer {
                    rec.problems.push(format!("failoverctl abort {op_id}: {e}"));
                }
                rec.abort = Some(answer);
            }
        }
        Ok(())
    }

    /// `failoverctl abort <op_id>`.
    fn abort(&self, op_id: &str) -> Result<AbortAnswer> {
        let out = self.stack.failoverctl(&["abort", op_id])?;
        Ok(match out.status.code() {
            Some(0) => AbortAnswer::Accepted,
            Some(EXIT_REFUSED) => AbortAnswer::Refused,
            code => AbortAnswer::Error(format!(
                "exit {code:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        })
    }

    /// After the timeline: faults healed and agents restarted, a stuck operation given one
    /// more deadline with nothing in its way, a `Failed` one that still holds its group
    /// aborted, and both groups idle. `Ok(false)` when a group stays held.
    async fn after(
        &mut self,
        rec: &mut OpRecord,
        group: &GroupRef,
        op_id: Option<&str>,
    ) -> Result<bool> {
        for exit in self.agents.restore(&mut self.stack).await? {
            self.note(rec, Some(exit));
        }
        let Some(op_id) = op_id else {
            return self.wait_idle(rec).await;
        };
        if matches!(rec.outcome, Outcome::Stuck(_)) {
            let deadline = Instant::now() + self.config.deadline;
            while Instant::now() < deadline {
                let op = self.read_operation(op_id).await?;
                if op.is_some_and(|o| o.phase.is_terminal()) {
                    break;
                }
                tokio::time::sleep(TICK).await;
            }
        }
        let state = self.stack.store.get_group_state(group).await?;
        let op = self.read_operation(op_id).await?;
        let held = state.is_some_and(|s| s.op_id.as_deref() == Some(op_id));
        if held && op.is_some_and(|o| o.phase == Phase::Failed) {
            match self.abort(op_id)? {
                AbortAnswer::Accepted => {
                    if rec.outcome == Outcome::Closed(Phase::Failed) {
                        rec.outcome = Outcome::FailedThenAborted;
                    }
                }
                other => rec.problems.push(format!(
                    "the abort of failed operation {op_id} answered {other}"
                )),
            }
        }
        self.wait_idle(rec).await
    }

    /// Waits until no group holds an operation, then for its replica counts in DynamoDB (a
    /// forced target scales up to them); `Ok(false)` with a problem when a group stays
    /// held.
    async fn wait_idle(&mut self, rec: &mut OpRecord) -> Result<bool> {
        let store = &self.stack.store;
        for group in &self.groups {
            let idle = wait_for(
                &format!("{group}: no operation in flight"),
                self.config.deadline,
                || async {
                    match store
                        .get_group_state(group)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        Some(s) if s.op_id.is_none() => Ok(Some(s)),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            if let Err(e) = idle {
                rec.problems.push(format!("{e:#}"));
                return Ok(false);
            }
            // An agent records the counts only when they changed since its own last write,
            // so the record may still name the other cluster.
            let known = wait_for(
                &format!("{group}: replica counts known"),
                Duration::from_secs(30),
                || async {
                    let known = store
                        .get_known_replicas(group)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(known.filter(|k| !k.replicas.is_empty()))
                },
            )
            .await;
            if let Err(e) = known {
                tracing::warn!("{e:#}");
            }
        }
        Ok(true)
    }

    async fn read_operation(&self, op_id: &str) -> Result<Option<Operation>> {
        Ok(self.stack.store.get_operation(op_id).await?)
    }

    /// The cluster of `role` in the operation of `rec`.
    fn role_cluster(&self, rec: &OpRecord, role: Role) -> String {
        match role {
            Role::Source => rec.from.clone(),
            Role::Target => rec.to.clone(),
        }
    }

    /// Records what an agent's exit meant.
    fn note(&self, rec: &mut OpRecord, exit: Option<Exit>) {
        match exit {
            Some(Exit::Crash(line)) => {
                tracing::info!("  crashed: {line}");
                rec.crashes.push(line);
            }
            Some(Exit::StartupFailure(line)) => {
                tracing::info!("  failed its start-up checks: {line}");
                rec.startup_failures.push(line);
            }
            Some(Exit::Unexpected(what)) => rec.problems.push(what),
            None => {}
        }
    }
}

/// The other cluster.
fn other_cluster(cluster: &str) -> &'static str {
    if cluster == CLUSTERS[0] {
        CLUSTERS[1]
    } else {
        CLUSTERS[0]
    }
}

/// From the operation's start to its end, as its record says.
fn recorded_duration(op: &Operation) -> Option<Duration> {
    let took = op.finished_at?.duration_since(op.requested_at);
    Duration::try_from(took).ok()
}
