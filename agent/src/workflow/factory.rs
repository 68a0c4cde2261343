//! The seed's Factory: a pure function from (mode, role, group spec, force) to the
//! [`Workflow`] one cluster runs. No client, no clock, no I/O; everything it decides is
//! unit-tested in `factory/tests.rs`.
//!
//! # CONSISTENCY (never two Primary volumes, never two writers)
//!
//! | # | stage | source | target |
//! |---|---|---|---|
//! | 1 | Initialization | validate, renew lease, preflight, notify target, wait for the target's preflight | validate, renew lease, preflight, notify source, wait for the source's preflight (not when forced) |
//! | 2 | Source Cluster Shutdown | traffic off → **Flux suspended** → replicas recorded → workloads scaled to 0, CronJobs suspended → pods gone | – |
//! | 3 | Volume Transition (Source) | demote each → wait each Secondary → mark **all** ready (one conditional write) → notify target | – |
//! | 4 | Volume Transition (Target) | – | wait until every volume is ready at the epoch (skipped when forced) → claim promotion → promote each → wait each Primary → verify each → mark promoted |
//! | 5 | Target Cluster Activation | – | scale up → resume CronJobs → resume Flux → wait ready → traffic on |
//! | 6 | Completion | wait until closed → group status | complete operation → notify source → group status |
//!
//! One deliberate change from the seed: Flux is suspended **before** the workloads are
//! scaled down (the seed scales down first), because a Flux reconcile between the two steps
//! would scale them up again.
//!
//! # UPTIME (target first; the dual-active window is measured)
//!
//! | # | stage | source | target |
//! |---|---|---|---|
//! | 1 | Initialization | as in CONSISTENCY, then replica counts recorded | as in CONSISTENCY |
//! | 2 | Volume Transition (Target) | – | claim promotion (no handoff records) → promote → wait Primary → record dual-active start → verify → mark promoted |
//! | 3 | Target Cluster Activation | – | as in CONSISTENCY, then notify source |
//! | 4 | Source Cluster Shutdown | wait until the target serves → as in CONSISTENCY | – |
//! | 5 | Volume Transition (Source) | demote → wait Secondary → record dual-active end | – |
//! | 6 | Volume Resync (Source) | resync each → wait each resynced → notify target | – |
//! | 7 | Completion | wait until closed → group status | wait until the source is done → complete operation → notify source → group status |
//!
//! The target completes only after the source has finished (resync included), because
//! completion closes the operation and every later journal or dual-active write of the
//! source would be refused.
//!
//! `force` changes only the target's CONSISTENCY plan: instead of waiting for the handoff
//! within the source's stage limits, it waits until the source *released* its side (the same
//! handoff records, written by a source that is alive) **or** until every other cluster that
//! may serve the group has certainly lost its serving lease (`WaitSourceReleased`), then
//! claims the promotion without requiring handoff records. A source that is still alive
//! during a forced operation shuts down exactly as for a normal one. Forced operations are
//! always started in CONSISTENCY mode.
//!
//! # What the factory rejects
//!
//! A spec with any problem of [`spec::problems`] ([`FactoryError::InvalidSpec`], every
//! problem naming its field): a timeout that does not parse or is zero, more volumes than
//! one conditional write can hand off, an object named twice, and a volume whose
//! `workload` is not in the group (its pods would not be stopped before the volume is
//! demoted). The FailoverGroup status reports the same problems, from the same validator.

use std::time::Duration;

use failover_messages::crd::{DurationError, FailoverGroupSpec, TimeoutStage, WorkloadKind};
use failover_messages::envelope::EnvelopeKind;
use failover_messages::protocol::spec::{self, SpecProblem};
use failover_messages::records::Mode;

use super::definition::{
    CheckStep, DualActiveEnd, KubeStep, NotifyStep, PeerStep, Preflight, RecordStep, Release,
    Stage, Step, WaitStep, Workflow,
};
use super::stages::{Role, StageId};

/// A group spec the factory cannot build a workflow for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactoryError {
    /// The spec has problems ([`spec::problems`], the same the FailoverGroup status reports),
    /// each naming its field.
    #[error("cannot plan the failover: {}", spec::problems_message(.0))]
    InvalidSpec(Vec<SpecProblem>),
}

impl From<DurationError> for FactoryError {
    fn from(e: DurationError) -> Self {
        Self::InvalidSpec(vec![e.into()])
    }
}

/// The seed's Factory. See the module docs for the plans it builds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

/// The resolved `spec.timeouts`.
struct Limits {
    spec: [(TimeoutStage, Duration); 6],
}

impl Limits {
    fn new(spec: &FailoverGroupSpec) -> Result<Self, DurationError> {
        let mut out = [(TimeoutStage::Initialization, Duration::ZERO); 6];
        for (slot, stage) in out.iter_mut().zip(TimeoutStage::ALL) {
            *slot = (stage, spec.timeouts.get(stage)?);
        }
        Ok(Self { spec: out })
    }

    fn of(&self, stage: StageId) -> Duration {
        let want = stage.timeout_stage();
        self.spec
            .iter()
            .find(|(s, _)| *s == want)
            .map_or(want.default_timeout(), |(_, d)| *d)
    }

    /// The sum of the limits of the stages the peer passes through.
    fn sum(&self, stages: &[StageId]) -> Duration {
        stages
            .iter()
            .fold(Duration::ZERO, |acc, s| acc.saturating_add(self.of(*s)))
    }
}

/// The group's objects, as the steps need them.
struct Objects<'a> {
    spec: &'a FailoverGroupSpec,
    volumes: Vec<String>,
}

impl<'a> Objects<'a> {
    fn new(spec: &'a FailoverGroupSpec) -> Result<Self, FactoryError> {
        let problems = spec::problems(spec);
        if !problems.is_empty() {
            return Err(FactoryError::InvalidSpec(problems));
        }
        Ok(Self {
            spec,
            volumes: spec
                .volume_replications
                .iter()
                .map(|v| v.name.clone())
                .collect(),
        })
    }

    /// Deployments and StatefulSets, which are scaled.
    fn scaled(&self) -> impl Iterator<Item = (WorkloadKind, &'a str)> + '_ {
        self.spec
            .workloads
            .iter()
            .filter(|w| w.kind != WorkloadKind::CronJob)
            .map(|w| (w.kind, w.name.as_str()))
    }

    /// CronJobs, which are suspended.
    fn cron_jobs(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.spec
            .workloads
            .iter()
            .filter(|w| w.kind == WorkloadKind::CronJob)
            .map(|w| w.name.as_str())
    }
}

impl Factory {
    /// The workflow `role` runs for a failover of a group with `spec` in `mode`.
    pub fn build(
        mode: Mode,
        role: Role,
        spec: &FailoverGroupSpec,
        force: bool,
    ) -> Result<Workflow, FactoryError> {
        let objects = Objects::new(spec)?;
        let limits = Limits::new(spec)?;
        let plan = Planner {
            mode,
            force,
            limits: &limits,
            objects: &objects,
        };
        let (mut workflow, peer) = match role {
            Role::Source => (plan.source(), plan.target()),
            Role::Target => (plan.target(), plan.source()),
        };
        mark_published(&mut workflow, &peer);
        Ok(workflow)
    }

    /// The rollback the source runs after an abort granted before any promotion: volumes
    /// back to Primary (each guarded by the entitlement check), workloads scaled up to the
    /// recorded counts, CronJobs and Flux resumed, ready, traffic on, then the operation
    /// closed as `Aborted`. Every step is idempotent, so it is safe whatever part of the
    /// shutdown had run.
    pub fn rollback(
        mode: Mode,
        spec: &FailoverGroupSpec,
        force: bool,
    ) -> Result<Workflow, FactoryError> {
        let objects = Objects::new(spec)?;
        let limits = Limits::new(spec)?;
        let plan = Planner {
            mode,
            force,
            limits: &limits,
            objects: &objects,
        };
        let volumes = &objects.volumes;
        let mut steps: Vec<Step> = volumes
            .iter()
            .map(|v| Step::Kube(KubeStep::Reactivate { volume: v.clone() }))
            .collect();
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::WaitPrimary { volume: v.clone() })),
        );
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::VerifyData { volume: v.clone() })),
        );
        steps.extend(plan.activation().into_iter().filter(|s| {
            !matches!(
                s,
                Step::Notify(NotifyStep::Notify { .. }) | Step::Wait(WaitStep::WaitPeer { .. })
            )
        }));
        steps.extend([
            Step::Record(RecordStep::FinishAbort),
            Step::Notify(NotifyStep::Notify {
                to: Role::Target,
                kind: EnvelopeKind::OperationCompleted,
            }),
            Step::Notify(NotifyStep::UpdateGroupStatus),
        ]);
        Ok(plan.workflow(Role::Source, vec![(StageId::Rollback, steps)]))
    }

    /// Both sides' workflows (source, target), e.g. to check them against each other.
    pub fn build_both(
        mode: Mode,
        spec: &FailoverGroupSpec,
        force: bool,
    ) -> Result<(Workflow, Workflow), FactoryError> {
        Ok((
            Self::build(mode, Role::Source, spec, force)?,
            Self::build(mode, Role::Target, spec, force)?,
        ))
    }
}

/// Marks the steps of `workflow` that `peer` (the other side's plan) waits for, so their
/// stage is published right after them ([`Stage::published`](super::definition::Stage)).
fn mark_published(workflow: &mut Workflow, peer: &Workflow) {
    let waited: Vec<&PeerStep> = peer
        .steps()
        .filter_map(|(_, step)| match step {
            Step::Wait(WaitStep::WaitPeer { peer, .. })
            | Step::Wait(WaitStep::WaitSourceReleased {
                release: Release::Step(peer),
                ..
            }) => Some(peer),
            _ => None,
        })
        .filter(|p| p.role == workflow.role)
        .collect();
    for stage in &mut workflow.stages {
        for p in waited.iter().filter(|p| p.stage == stage.id) {
            if !stage.published.contains(&p.task) {
                stage.published.push(p.task.clone());
            }
        }
    }
}

struct Planner<'a> {
    mode: Mode,
    force: bool,
    limits: &'a Limits,
    objects: &'a Objects<'a>,
}

impl Planner<'_> {
    fn workflow(&self, role: Role, stages: Vec<(StageId, Vec<Step>)>) -> Workflow {
        Workflow {
            mode: self.mode,
            role,
            force: self.force,
            stages: stages
                .into_iter()
                .filter(|(_, tasks)| !tasks.is_empty())
                .map(|(id, tasks)| Stage {
                    id,
                    number: id.number(self.mode).unwrap_or(0),
                    name: id.title(),
                    timeout: self.limits.of(id),
                    tasks,
                    published: Vec::new(),
                })
                .collect(),
        }
    }

    fn source(&self) -> Workflow {
        match self.mode {
            Mode::Consistency => self.workflow(
                Role::Source,
                vec![
                    (StageId::Initialization, self.source_initialization()),
                    (StageId::SourceShutdown, self.shutdown()),
                    (StageId::VolumeTransitionSource, self.demotion()),
                    (
                        StageId::Completion,
                        vec![
                            Step::Wait(WaitStep::WaitOperationClosed {
                                within: self.limits.sum(&[
                                    StageId::VolumeTransitionTarget,
                                    StageId::TargetActivation,
                                    StageId::Completion,
                                ]),
                            }),
                            Step::Notify(NotifyStep::UpdateGroupStatus),
                        ],
                    ),
                ],
            ),
            Mode::Uptime => {
                let target_serving = self
                    .target_until_completion()
                    .last_journaled_before(None)
                    .expect("a target plan always claims the promotion");
                let mut shutdown = vec![Step::Wait(WaitStep::WaitPeer {
                    peer: target_serving,
                    within: self.limits.sum(&[
                        StageId::Initialization,
                        StageId::VolumeTransitionTarget,
                        StageId::TargetActivation,
                    ]),
                })];
                shutdown.extend(self.shutdown());
                self.workflow(
                    Role::Source,
                    vec![
                        (StageId::Initialization, self.source_initialization()),
                        (StageId::SourceShutdown, shutdown),
                        (StageId::VolumeTransitionSource, self.demotion()),
                        (StageId::VolumeResync, self.resync()),
                        (
                            StageId::Completion,
                            vec![
                                Step::Wait(WaitStep::WaitOperationClosed {
                                    within: self.limits.of(StageId::Completion),
                                }),
                                Step::Notify(NotifyStep::UpdateGroupStatus),
                            ],
                        ),
                    ],
                )
            }
        }
    }

    /// The target's stages before completion.
    fn target_until_completion(&self) -> Workflow {
        self.workflow(
            Role::Target,
            vec![
                (StageId::Initialization, self.initialization(Role::Target)),
                (StageId::VolumeTransitionTarget, self.promotion()),
                (StageId::TargetActivation, self.activation()),
            ],
        )
    }

    fn target(&self) -> Workflow {
        let mut completion = Vec::new();
        if self.mode == Mode::Uptime {
            let source_done = self
                .source()
                .last_journaled_before(Some(StageId::Completion))
                .expect("an UPTIME source plan always waits for the target");
            completion.push(Step::Wait(WaitStep::WaitPeer {
                peer: source_done,
                within: self.limits.sum(&[
                    StageId::SourceShutdown,
                    StageId::VolumeTransitionSource,
                    StageId::VolumeResync,
                ]),
            }));
        }
        completion.extend([
            Step::Record(RecordStep::CompleteOperation),
            Step::Notify(NotifyStep::Notify {
                to: Role::Source,
                kind: EnvelopeKind::OperationCompleted,
            }),
            Step::Notify(NotifyStep::UpdateGroupStatus),
        ]);
        let mut workflow = self.target_until_completion();
        workflow.stages.extend(
            self.workflow(Role::Target, vec![(StageId::Completion, completion)])
                .stages,
        );
        workflow
    }

    /// Source Cluster Shutdown: traffic off → Flux suspended → workloads down → pods gone
    /// (the replica counts were recorded in Initialization).
    fn shutdown(&self) -> Vec<Step> {
        let spec = self.objects.spec;
        let mut steps: Vec<Step> = spec
            .network
            .iter()
            .map(|n| {
                Step::Kube(KubeStep::TrafficOff {
                    kind: n.kind,
                    name: n.name.clone(),
                })
            })
            .collect();
        steps.extend(spec.flux.iter().map(|f| {
            Step::Kube(KubeStep::SuspendFlux {
                kind: f.kind,
                namespace: f.namespace.clone(),
                name: f.name.clone(),
            })
        }));
        steps.extend(self.objects.scaled().map(|(kind, name)| {
            Step::Kube(KubeStep::ScaleDown {
                kind,
                name: name.to_owned(),
            })
        }));
        steps.extend(self.objects.cron_jobs().map(|name| {
            Step::Kube(KubeStep::SuspendCronJob {
                name: name.to_owned(),
            })
        }));
        steps.extend(spec.workloads.iter().map(|w| {
            Step::Kube(KubeStep::WaitPodsGone {
                kind: w.kind,
                name: w.name.clone(),
            })
        }));
        steps
    }

    /// Record the Deployments' and StatefulSets' replica counts (none without them).
    fn record_replicas(&self) -> Option<Step> {
        let scaled: Vec<(WorkloadKind, String)> = self
            .objects
            .scaled()
            .map(|(k, n)| (k, n.to_owned()))
            .collect();
        (!scaled.is_empty()).then_some(Step::Record(RecordStep::RecordReplicas {
            workloads: scaled,
        }))
    }

    /// Volume Transition (Source): demote each → wait each Secondary → (CONSISTENCY) mark
    /// all ready and notify the target / (UPTIME) record the dual-active end.
    fn demotion(&self) -> Vec<Step> {
        let volumes = &self.objects.volumes;
        let mut steps: Vec<Step> = volumes
            .iter()
            .map(|v| Step::Kube(KubeStep::Demote { volume: v.clone() }))
            .collect();
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::WaitSecondary { volume: v.clone() })),
        );
        match self.mode {
            Mode::Consistency => {
                steps.push(Step::Record(RecordStep::MarkAllReady {
                    volumes: volumes.clone(),
                }));
                steps.push(Step::Notify(NotifyStep::Notify {
                    to: Role::Target,
                    kind: EnvelopeKind::ReadyForPromotion,
                }));
            }
            Mode::Uptime => {
                if !volumes.is_empty() {
                    steps.push(Step::Record(RecordStep::RecordDualActive {
                        end: DualActiveEnd::Ended,
                    }));
                }
            }
        }
        steps
    }

    /// Volume Resync (Source, UPTIME): resync each → wait each → notify the target.
    fn resync(&self) -> Vec<Step> {
        let volumes = &self.objects.volumes;
        let mut steps: Vec<Step> = volumes
            .iter()
            .map(|v| Step::Kube(KubeStep::Resync { volume: v.clone() }))
            .collect();
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::WaitResynced { volume: v.clone() })),
        );
        steps.push(Step::Notify(NotifyStep::Notify {
            to: Role::Target,
            kind: EnvelopeKind::Wake,
        }));
        steps
    }

    /// Volume Transition (Target): (CONSISTENCY, not forced) wait for the handoff → claim →
    /// promote each → wait each Primary → (UPTIME) dual-active start → verify each → mark
    /// promoted.
    fn promotion(&self) -> Vec<Step> {
        let volumes = &self.objects.volumes;
        let consistency = self.mode == Mode::Consistency;
        let handoff = consistency && !self.force;
        let mut steps = Vec::new();
        if consistency {
            let within = self.limits.sum(&[
                StageId::Initialization,
                StageId::SourceShutdown,
                StageId::VolumeTransitionSource,
            ]);
            // No record to wait for without volumes: the source's journaled handoff step is
            // the signal.
            let ready = || {
                self.source()
                    .steps()
                    .find(|(_, s)| matches!(s, Step::Record(RecordStep::MarkAllReady { .. })))
                    .map(|(stage, s)| super::definition::PeerStep {
                        role: Role::Source,
                        stage: stage.id,
                        task: s.key(),
                    })
                    .expect("a CONSISTENCY source plan always hands off")
            };
            steps.push(Step::Wait(match (handoff, volumes.is_empty()) {
                (true, true) => WaitStep::WaitPeer {
                    peer: ready(),
                    within,
                },
                (true, false) => WaitStep::WaitAllReady {
                    volumes: volumes.clone(),
                    within,
                },
                // Forced: the source's release, or the end of its serving lease.
                (false, true) => WaitStep::WaitSourceReleased {
                    release: Release::Step(ready()),
                    within,
                },
                (false, false) => WaitStep::WaitSourceReleased {
                    release: Release::Volumes(volumes.clone()),
                    within,
                },
            }));
        }
        steps.push(Step::Record(RecordStep::ClaimPromotion {
            ready_volumes: if handoff { volumes.clone() } else { Vec::new() },
        }));
        // UPTIME: the window opens before the first promotion is asked for, so the recorded
        // window always covers the time both sides may be Primary (recorded after the
        // promotions, it started late by as long as they took).
        if self.mode == Mode::Uptime && !volumes.is_empty() {
            steps.push(Step::Record(RecordStep::RecordDualActive {
                end: DualActiveEnd::Started,
            }));
        }
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::Promote { volume: v.clone() })),
        );
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::WaitPrimary { volume: v.clone() })),
        );
        steps.extend(
            volumes
                .iter()
                .map(|v| Step::Kube(KubeStep::VerifyData { volume: v.clone() })),
        );
        if !volumes.is_empty() {
            steps.push(Step::Record(RecordStep::MarkPromoted {
                volumes: volumes.clone(),
            }));
        }
        steps
    }

    /// Target Cluster Activation: scale up → resume CronJobs → resume Flux → wait ready →
    /// traffic on (→ UPTIME: notify the source).
    fn activation(&self) -> Vec<Step> {
        let spec = self.objects.spec;
        let mut steps = Vec::new();
        // (Not when forced: the source may be gone; see the tasks' replica fallbacks.)
        if self.mode == Mode::Uptime
            && !self.force
            && let Some(record) = self.record_replicas()
        {
            // UPTIME: the source is still up; its counts are what the target scales to.
            steps.push(Step::Wait(WaitStep::WaitPeer {
                peer: super::definition::PeerStep {
                    role: Role::Source,
                    stage: StageId::Initialization,
                    task: record.key(),
                },
                within: self.limits.of(StageId::Initialization),
            }));
        }
        steps.extend(self.objects.scaled().map(|(kind, name)| {
            Step::Kube(KubeStep::ScaleUp {
                kind,
                name: name.to_owned(),
            })
        }));
        steps.extend(self.objects.cron_jobs().map(|name| {
            Step::Kube(KubeStep::ResumeCronJob {
                name: name.to_owned(),
            })
        }));
        steps.extend(spec.flux.iter().map(|f| {
            Step::Kube(KubeStep::ResumeFlux {
                kind: f.kind,
                namespace: f.namespace.clone(),
                name: f.name.clone(),
            })
        }));
        steps.extend(self.objects.scaled().map(|(kind, name)| {
            Step::Kube(KubeStep::WaitReady {
                kind,
                name: name.to_owned(),
            })
        }));
        steps.extend(spec.network.iter().map(|n| {
            Step::Kube(KubeStep::TrafficOn {
                kind: n.kind,
                name: n.name.clone(),
            })
        }));
        if self.mode == Mode::Uptime {
            steps.push(Step::Notify(NotifyStep::Notify {
                to: Role::Source,
                kind: EnvelopeKind::Promoted,
            }));
        }
        steps
    }
}

/// Initialization, the same on both sides.
impl Planner<'_> {
    /// Initialization: validate, renew the lease, the preflight (what can be known before
    /// anything changes, in this cluster), a wake-up to the peer, then a wait for the peer's
    /// preflight, so that nothing changes in either cluster before both have passed. A forced
    /// operation's target does not wait (its source may be gone).
    /// The source's Initialization: the common steps, then the replica counts recorded once
    /// both preflights passed, before any change (UPTIME: the target scales up before this
    /// side shuts down, and waits for them). That write also marks the operation `Running`.
    fn source_initialization(&self) -> Vec<Step> {
        let mut steps = self.initialization(Role::Source);
        steps.extend(self.record_replicas());
        steps
    }

    /// Whether `role`'s `ValidateOperation` marks the operation `Running` (one write, one
    /// side): the target of a forced operation, whose source may be gone; else the source
    /// when it records no replica counts (that write marks it otherwise).
    fn marks_running(&self, role: Role) -> bool {
        match role {
            Role::Target => self.force,
            Role::Source => !self.force && self.record_replicas().is_none(),
        }
    }

    fn initialization(&self, role: Role) -> Vec<Step> {
        let preflight = self.preflight(role);
        let peer_preflight = PeerStep {
            role: role.peer(),
            stage: StageId::Initialization,
            task: preflight.key(),
        };
        let mut steps = vec![
            Step::Record(RecordStep::ValidateOperation {
                mark_running: self.marks_running(role),
            }),
            Step::Record(RecordStep::RenewLease),
            preflight,
            Step::Notify(NotifyStep::Notify {
                to: role.peer(),
                kind: EnvelopeKind::Wake,
            }),
        ];
        // The target of a CONSISTENCY operation changes nothing before the source's READY,
        // so it does not wait for the source's preflight (a failed one fails the operation,
        // which ends the target's wait for READY); nor does a forced target, whose source
        // may be gone.
        let target_waits = self.mode == Mode::Uptime && !self.force;
        if role == Role::Source || target_waits {
            steps.push(Step::Wait(WaitStep::WaitPeer {
                peer: peer_preflight,
                within: self.limits.of(StageId::Initialization),
            }));
        }
        steps
    }

    /// The preflight of `role`: every object the group names, and (target) the workloads it
    /// scales up with the replica counts the spec declares.
    fn preflight(&self, role: Role) -> Step {
        let spec = self.objects.spec;
        let checks = Preflight {
            workloads: spec
                .workloads
                .iter()
                .map(|w| (w.kind, w.name.clone()))
                .collect(),
            network: spec
                .network
                .iter()
                .map(|n| (n.kind, n.name.clone()))
                .collect(),
            flux: spec
                .flux
                .iter()
                .map(|f| (f.kind, f.namespace.clone(), f.name.clone()))
                .collect(),
            volumes: self.objects.volumes.clone(),
            scale_up: match role {
                Role::Source => Vec::new(),
                Role::Target => spec
                    .workloads
                    .iter()
                    .filter(|w| w.kind != WorkloadKind::CronJob)
                    .map(|w| (w.kind, w.name.clone(), w.replicas))
                    .collect(),
            },
        };
        Step::Check(CheckStep::Preflight {
            role,
            checks: Box::new(checks),
        })
    }
}

#[cfg(test)]
mod tests;
