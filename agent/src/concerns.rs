//! The per-concern actors: one each for workloads (Deployments, StatefulSets, CronJobs and
//! their pods), traffic (VirtualServices, Ingresses), GitOps (Flux) and volumes
//! (VolumeReplications). Every workflow step that touches one of these kinds in this
//! cluster is handed to its concern's actor as a [`ConcernJob`] and awaited; steps on
//! records (DynamoDB) and waits for the other cluster run in the operation's own task.
//!
//! An actor owns its concern's bookkeeping: how many jobs are in flight and how they ended
//! (`failover_kube_jobs_in_flight{concern}`, `failover_kube_jobs_total{concern,outcome}`).
//! It runs each job as a task of its own, so jobs of different operations proceed side by
//! side (a long wait for pods to go never holds up another group's volume), and a job that
//! panics ends as an error of that one step: the run stops there and, like any interrupted
//! run, is resumed from the journal on the runner's next tick. The actor itself never runs
//! job code on its own stack, so it does not die with a job.
//!
//! Decisions stay in [`Concern::of`] (which step belongs to which concern), a plain
//! function; tasks reach the actors only through [`Concerns`] (seam handles). Without a
//! [`Concerns`] handle in the task context (in-process tests), steps run directly.

use std::fmt;

use actix::{Actor, ActorFutureExt, Context, Handler, ResponseActFuture, WrapFuture};
use futures::future::BoxFuture;

use crate::metrics::Metrics;
use crate::seam::{Ask, AsyncSender};
use crate::workflow::{Step, TaskError};

/// A local concern with an actor of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Concern {
    /// Deployments, StatefulSets, CronJobs and their pods.
    Workloads,
    /// VirtualServices and Ingresses.
    Traffic,
    /// Flux HelmReleases and Kustomizations.
    GitOps,
    /// VolumeReplications.
    Volumes,
}

impl Concern {
    /// Every concern.
    pub const ALL: [Concern; 4] = [Self::Workloads, Self::Traffic, Self::GitOps, Self::Volumes];

    /// The concern whose actor carries out `step`; `None` for steps on records, waits for
    /// the other cluster, notifications and status.
    pub fn of(step: &Step) -> Option<Concern> {
        match step {
            Step::TrafficOff { .. } | Step::TrafficOn { .. } => Some(Self::Traffic),
            Step::SuspendFlux { .. } | Step::ResumeFlux { .. } => Some(Self::GitOps),
            Step::ScaleDown { .. }
            | Step::ScaleUp { .. }
            | Step::SuspendCronJob { .. }
            | Step::ResumeCronJob { .. }
            | Step::WaitPodsGone { .. }
            | Step::WaitReady { .. } => Some(Self::Workloads),
            Step::Demote { .. }
            | Step::WaitSecondary { .. }
            | Step::Resync { .. }
            | Step::WaitResynced { .. }
            | Step::Promote { .. }
            | Step::WaitPrimary { .. }
            | Step::VerifyData { .. }
            | Step::Reactivate { .. } => Some(Self::Volumes),
            Step::ValidateOperation
            | Step::RenewLease
            | Step::RecordReplicas { .. }
            | Step::MarkAllReady { .. }
            | Step::WaitAllReady { .. }
            | Step::ClaimPromotion { .. }
            | Step::MarkPromoted { .. }
            | Step::RecordDualActive { .. }
            | Step::Notify { .. }
            | Step::WaitPeer { .. }
            | Step::WaitOperationClosed { .. }
            | Step::CompleteOperation
            | Step::FinishAbort
            | Step::UpdateGroupStatus => None,
        }
    }

    /// The `concern` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workloads => "workloads",
            Self::Traffic => "traffic",
            Self::GitOps => "gitops",
            Self::Volumes => "volumes",
        }
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step's work on a concern's objects.
pub struct ConcernJob {
    /// The operation it is for.
    pub operation: String,
    /// The object it touches (for errors and logs).
    pub object: String,
    /// The work.
    pub work: BoxFuture<'static, Result<(), TaskError>>,
}

impl fmt::Debug for ConcernJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcernJob")
            .field("operation", &self.operation)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// A concern actor's handle.
pub type ConcernHandle = AsyncSender<ConcernJob, Result<(), TaskError>>;

/// The four concern handles, as a task-context handle.
#[derive(Clone)]
pub struct Concerns {
    handles: Vec<(Concern, ConcernHandle)>,
}

impl fmt::Debug for Concerns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.handles.iter().map(|(c, _)| c))
            .finish()
    }
}

impl Concerns {
    /// Handles for every concern (tests may pass channel-backed ones).
    pub fn new(handles: Vec<(Concern, ConcernHandle)>) -> Self {
        Self { handles }
    }

    /// Starts one [`ConcernActor`] per concern on the current actix system.
    pub fn start(metrics: Metrics) -> Self {
        Self::new(
            Concern::ALL
                .into_iter()
                .map(|c| {
                    let addr = ConcernActor::new(c, metrics.clone()).start();
                    (c, AsyncSender::from_addr(addr))
                })
                .collect(),
        )
    }

    /// Hands `job` to `concern`'s actor and waits for its result.
    pub async fn run(&self, concern: Concern, job: ConcernJob) -> Result<(), TaskError> {
        let Some((_, handle)) = self.handles.iter().find(|(c, _)| *c == concern) else {
            return Err(TaskError::MissingDependency {
                what: "a concern actor for this step",
            });
        };
        let object = job.object.clone();
        handle.ask(job).await.map_err(|e| {
            TaskError::failed(format!(
                "the {concern} actor did not answer for {object}: {e}"
            ))
        })?
    }
}

/// One concern's actor (see the module docs).
pub struct ConcernActor {
    concern: Concern,
    in_flight: i64,
    metrics: Metrics,
}

impl ConcernActor {
    /// An actor for `concern`, reporting to `metrics`.
    pub fn new(concern: Concern, metrics: Metrics) -> Self {
        Self {
            concern,
            in_flight: 0,
            metrics,
        }
    }
}

impl Actor for ConcernActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.kube_jobs_in_flight(self.concern.as_str(), 0);
    }
}

/// The `outcome` label of a finished job.
pub fn job_outcome(r: &Result<(), TaskError>) -> &'static str {
    match r {
        Ok(()) => "done",
        Err(TaskError::GaveUp { .. }) => "gave_up",
        Err(_) => "failed",
    }
}

impl Handler<Ask<ConcernJob, Result<(), TaskError>>> for ConcernActor {
    type Result = ResponseActFuture<Self, Result<(), TaskError>>;

    fn handle(
        &mut self,
        msg: Ask<ConcernJob, Result<(), TaskError>>,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let ConcernJob {
            operation,
            object,
            work,
        } = msg.0;
        self.in_flight += 1;
        self.metrics
            .kube_jobs_in_flight(self.concern.as_str(), self.in_flight);
        let concern = self.concern;
        tracing::debug!(%concern, %operation, %object, "job started");
        // Its own task: a panic ends this job only.
        let task = actix_rt::spawn(work);
        Box::pin(
            async move {
                match task.await {
                    Ok(r) => r,
                    Err(e) => Err(TaskError::failed(format!(
                        "the {concern} job for {object} of operation {operation} panicked: {e}"
                    ))),
                }
            }
            .into_actor(self)
            .map(move |r, act, _| {
                act.in_flight -= 1;
                act.metrics
                    .kube_jobs_in_flight(act.concern.as_str(), act.in_flight);
                act.metrics.kube_job(act.concern.as_str(), job_outcome(&r));
                r
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use failover_messages::crd::{FluxKind, NetworkKind, WorkloadKind};

    use super::*;

    #[test]
    fn each_kubernetes_step_belongs_to_its_concern_and_record_steps_to_none() {
        let name = || "x".to_owned();
        assert_eq!(
            Concern::of(&Step::TrafficOn {
                kind: NetworkKind::Ingress,
                name: name()
            }),
            Some(Concern::Traffic)
        );
        assert_eq!(
            Concern::of(&Step::SuspendFlux {
                kind: FluxKind::HelmRelease,
                namespace: name(),
                name: name()
            }),
            Some(Concern::GitOps)
        );
        assert_eq!(
            Concern::of(&Step::WaitPodsGone {
                kind: WorkloadKind::CronJob,
                name: name()
            }),
            Some(Concern::Workloads)
        );
        assert_eq!(
            Concern::of(&Step::Reactivate { volume: name() }),
            Some(Concern::Volumes)
        );
        assert_eq!(
            Concern::of(&Step::ClaimPromotion {
                ready_volumes: vec![]
            }),
            None
        );
        assert_eq!(
            Concern::of(&Step::RecordReplicas { workloads: vec![] }),
            None
        );
    }

    #[actix_rt::test]
    async fn a_job_runs_on_its_concern_actor_and_a_panicking_one_is_an_error_of_that_step() {
        let concerns = Concerns::start(Metrics::new());
        let ok = concerns
            .run(
                Concern::Volumes,
                ConcernJob {
                    operation: "op".into(),
                    object: "VolumeReplication/a".into(),
                    work: Box::pin(async { Ok(()) }),
                },
            )
            .await;
        assert!(ok.is_ok());
        let panicked = concerns
            .run(
                Concern::Volumes,
                ConcernJob {
                    operation: "op".into(),
                    object: "VolumeReplication/b".into(),
                    work: Box::pin(async {
                        if true {
                            panic!("boom");
                        }
                        Ok(())
                    }),
                },
            )
            .await;
        let err = panicked.unwrap_err().to_string();
        assert!(
            err.contains("panicked") && err.contains("VolumeReplication/b"),
            "{err}"
        );
        // The actor lives on.
        let again = concerns
            .run(
                Concern::Volumes,
                ConcernJob {
                    operation: "op".into(),
                    object: "VolumeReplication/c".into(),
                    work: Box::pin(async { Ok(()) }),
                },
            )
            .await;
        assert!(again.is_ok());
    }
}
