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
//! Only the mailbox lives here. Which step belongs to which concern is
//! [`KubeStep::concern`](crate::workflow::KubeStep::concern), the work is the step's task
//! ([`crate::tasks`]), and tasks reach the actors only through
//! [`Concerns`] (seam handles), which [`start`] returns.

use actix::{Actor, ActorFutureExt, Context, Handler, ResponseActFuture, WrapFuture};

use crate::metrics::Metrics;
use crate::seam::{Ask, AsyncSender};
use crate::tasks::concerns::{ConcernJob, Concerns, job_outcome};
use crate::workflow::{Concern, TaskError};

/// Starts one [`ConcernActor`] per concern on the current actix system and returns their
/// handles.
pub fn start(metrics: Metrics) -> Concerns {
    Concerns::new(
        Concern::ALL
            .into_iter()
            .map(|c| {
                let addr = ConcernActor::new(c, metrics.clone()).start();
                (c, AsyncSender::from_addr(addr))
            })
            .collect(),
    )
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
    use super::*;

    #[actix_rt::test]
    async fn a_job_runs_on_its_concern_actor_and_a_panicking_one_is_an_error_of_that_step() {
        let concerns = start(Metrics::new());
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
