//! What a workflow knows about its operation ([`WorkflowContext`], the seed's "workflow
//! context") and what a task is handed when it runs ([`TaskContext`], the seed's
//! `DependencyInjector`).
//!
//! A [`TaskContext`] holds the workflow context, this cluster's name and role, the clock, a
//! tracing span (the logger), and the handles tasks use: a Kubernetes client and the DynamoDB
//! [`Store`], both optional, plus any other handle by type ([`TaskContext::with_handle`]).
//! Nothing here does I/O, so unit tests build a context with no client at all; a task that
//! needs a handle the agent was not given fails with [`TaskError::MissingDependency`]
//! naming it.
//!
//! The engine hands each task a copy of the context that also describes the running step
//! ([`TaskContext::step`]): its stage, journal key, deadline and whether an earlier attempt
//! was interrupted ([`Attempt`]). Copies are cheap (everything inside is shared).
//!
//! A step whose task writes the operation item anyway (the replica counts, the close) may
//! also be handed journal stages to publish with that write ([`Carry`],
//! [`TaskContext::carried`]): publishing them then costs no DynamoDB write of its own.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_messages::keys::GroupRef;
use failover_messages::records::{JournalStage, JournalStep, Lease, Mode, Operation, StepStatus};
use failover_messages::store::{CarriedStages, Clock, OpRef, Store, SystemClock};
use jiff::Timestamp;

use super::stages::Role;
use super::task_error::TaskError;

/// When things happened, as far as this agent knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowTimings {
    /// When the operation was started (the coordinator's start).
    pub requested_at: Timestamp,
    /// When this agent started (or resumed) running its workflow.
    pub started_at: Timestamp,
}

/// The operation a workflow runs for (the seed's workflow context): operation id, group,
/// source, target, mode, force, epoch, lease and timings. Built from the operation record
/// ([`WorkflowContext::from_operation`]); immutable while the workflow runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowContext {
    /// Operation id (`OP#<id>`).
    pub operation_id: String,
    /// The group that moves.
    pub group: GroupRef,
    /// Cluster the group moves away from.
    pub source: String,
    /// Cluster the group moves to.
    pub target: String,
    /// CONSISTENCY or UPTIME.
    pub mode: Mode,
    /// Started without the handoff (source unreachable).
    pub force: bool,
    /// The promotion was claimed when this run started: the operation only goes forward, so
    /// each run gets its stages' whole limits again and a limit that runs out is retried,
    /// not a failure (see `ManagerAdapter::process`).
    pub claimed: bool,
    /// The group's epoch this operation runs at; every journal write is conditioned on it.
    pub epoch: u64,
    /// The lease as last read or renewed, if known.
    pub lease: Option<Lease>,
    /// When the operation and this run started.
    pub timings: WorkflowTimings,
}

impl WorkflowContext {
    /// The context of `op`, for a run starting at `started_at`.
    pub fn from_operation(op: &Operation, lease: Option<Lease>, started_at: Timestamp) -> Self {
        Self {
            operation_id: op.id.clone(),
            group: op.group.clone(),
            source: op.source.clone(),
            target: op.target.clone(),
            mode: op.mode,
            force: op.force,
            claimed: op.promotion_started_at.is_some(),
            epoch: op.epoch,
            lease,
            timings: WorkflowTimings {
                requested_at: op.requested_at,
                started_at,
            },
        }
    }

    /// The operation at its epoch, as the store's conditional writes want it.
    pub fn op_ref(&self) -> OpRef {
        OpRef {
            id: self.operation_id.clone(),
            group: self.group.clone(),
            epoch: self.epoch,
        }
    }

    /// The role of `cluster` in this operation, if it takes part.
    pub fn role_of(&self, cluster: &str) -> Option<Role> {
        if cluster == self.source {
            Some(Role::Source)
        } else if cluster == self.target {
            Some(Role::Target)
        } else {
            None
        }
    }

    /// The cluster playing `role`.
    pub fn cluster_of(&self, role: Role) -> &str {
        match role {
            Role::Source => &self.source,
            Role::Target => &self.target,
        }
    }
}

/// A [`TaskContext`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The cluster is neither the source nor the target of the operation.
    #[error(
        "cluster {cluster} takes no part in operation {op_id} (source {source_cluster}, target {target_cluster})"
    )]
    NotInvolved {
        /// This cluster.
        cluster: String,
        /// The operation.
        op_id: String,
        /// Its source.
        source_cluster: String,
        /// Its target.
        target_cluster: String,
    },
    /// Source and target are the same cluster, so the role would be ambiguous.
    #[error("operation {op_id} has the same source and target cluster {cluster}")]
    SameCluster {
        /// The operation.
        op_id: String,
        /// The cluster named twice.
        cluster: String,
    },
}

/// How this attempt at a step relates to earlier ones, from the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// No earlier attempt is journaled.
    First,
    /// An earlier attempt is journaled with `previous` (`STARTED`: it was interrupted, its
    /// effect unknown; `FAILED`: it failed and the operation is being resumed).
    Resumed {
        /// The journaled status of the earlier attempt.
        previous: StepStatus,
        /// Intents written before this one.
        attempts: u32,
    },
}

impl Attempt {
    /// True when an earlier attempt was started and never finished (the agent stopped
    /// during it): its effect is unknown, so the task must look at the current state before
    /// acting. For a promotion this is the rule "never redo a promote blindly".
    pub fn interrupted(self) -> bool {
        matches!(
            self,
            Attempt::Resumed {
                previous: StepStatus::Started,
                ..
            }
        )
    }
}

/// The step a task runs as, set by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepInfo {
    /// Journal key of the stage.
    pub stage: String,
    /// Journal key of the step.
    pub task: String,
    /// The object the step touches, if one.
    pub object: Option<String>,
    /// How long the step may run.
    pub deadline: Duration,
    /// Earlier attempts.
    pub attempt: Attempt,
}

/// Handles by type, for what a task needs beyond the Kubernetes client and the store
/// (an SQS notifier, a sender to an actor, a fake in tests).
#[derive(Clone, Default)]
struct Handles(Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

/// What a task gets when it runs (the seed's `DependencyInjector`): the workflow context,
/// this cluster's name and role, the clock, the logger (a tracing span) and the handles.
#[derive(Clone)]
pub struct TaskContext {
    workflow: Arc<WorkflowContext>,
    cluster: Arc<str>,
    role: Role,
    clock: Arc<dyn Clock>,
    kube: Option<kube::Client>,
    store: Option<Store>,
    handles: Handles,
    step: Option<Arc<StepInfo>>,
    carry: Option<Arc<Carry>>,
    span: tracing::Span,
}

/// Journal stages the engine hands a step whose task writes the operation item anyway, to
/// publish with that write (set by the engine, read by the task through
/// [`TaskContext::carried`]). The step's own entry, when its own stage is among them, is
/// published `DONE` as of the write: that write is the step's effect.
#[derive(Debug)]
pub struct Carry {
    op: OpRef,
    cluster: String,
    /// Each stage's key and steps as this cluster's journal holds them.
    stages: Vec<(String, Vec<JournalStep>)>,
    /// The running step `(stage, task)`, published `DONE`.
    own: Option<(String, String)>,
    built: Mutex<Option<Arc<CarriedStages>>>,
}

impl Carry {
    /// `stages` of `cluster`'s journal of `op`; `own` the running step, if its stage is one.
    pub fn new(
        op: OpRef,
        cluster: &str,
        stages: Vec<(String, Vec<JournalStep>)>,
        own: Option<(String, String)>,
    ) -> Self {
        Self {
            op,
            cluster: cluster.to_owned(),
            stages,
            own,
            built: Mutex::new(None),
        }
    }

    /// The stage keys carried.
    pub fn stage_keys(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|(k, _)| k.as_str())
    }

    /// The stages as of `now`, for the write that carries them (remembered, so
    /// [`Carry::written`] can tell whether that write landed).
    pub fn stages_at(&self, now: Timestamp) -> Arc<CarriedStages> {
        let op = &self.op;
        let stages = self
            .stages
            .iter()
            .map(|(stage, steps)| JournalStage {
                op_id: op.id.clone(),
                cluster: self.cluster.clone(),
                stage: stage.clone(),
                epoch: op.epoch,
                published_at: now,
                steps: steps
                    .iter()
                    .cloned()
                    .map(|mut s| {
                        if self
                            .own
                            .as_ref()
                            .is_some_and(|(st, t)| *st == s.stage && *t == s.task)
                        {
                            s.status = StepStatus::Done;
                            s.finished_at = Some(now);
                            s.message = None;
                        }
                        s
                    })
                    .collect(),
            })
            .collect();
        let built = Arc::new(CarriedStages::new(stages));
        *self.built.lock().unwrap_or_else(|e| e.into_inner()) = Some(built.clone());
        built
    }

    /// Whether the task's write carried the stages.
    pub fn written(&self) -> bool {
        self.built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|b| b.written())
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("operation", &self.workflow.operation_id)
            .field("group", &self.workflow.group.to_string())
            .field("cluster", &self.cluster)
            .field("role", &self.role)
            .field("kube", &self.kube.is_some())
            .field("store", &self.store.is_some())
            .field("handles", &self.handles.0.len())
            .field("step", &self.step)
            .finish()
    }
}

impl TaskContext {
    /// A context for `cluster`'s side of the operation, with the system clock and no
    /// handles. Fails when the cluster takes no part in the operation.
    pub fn new(workflow: WorkflowContext, cluster: &str) -> Result<Self, ContextError> {
        if workflow.source == workflow.target {
            return Err(ContextError::SameCluster {
                op_id: workflow.operation_id.clone(),
                cluster: workflow.source.clone(),
            });
        }
        let role = workflow
            .role_of(cluster)
            .ok_or_else(|| ContextError::NotInvolved {
                cluster: cluster.to_owned(),
                op_id: workflow.operation_id.clone(),
                source_cluster: workflow.source.clone(),
                target_cluster: workflow.target.clone(),
            })?;
        let span = tracing::info_span!(
            "workflow",
            op = %workflow.operation_id,
            group = %workflow.group,
            cluster = %cluster,
            role = %role,
            epoch = workflow.epoch,
        );
        Ok(Self {
            workflow: Arc::new(workflow),
            cluster: Arc::from(cluster),
            role,
            clock: Arc::new(SystemClock),
            kube: None,
            store: None,
            handles: Handles::default(),
            step: None,
            carry: None,
            span,
        })
    }

    /// Uses `clock` for every time reading.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Gives tasks this cluster's Kubernetes client.
    pub fn with_kube(mut self, client: kube::Client) -> Self {
        self.kube = Some(client);
        self
    }

    /// Gives tasks the DynamoDB store.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a handle of type `T` (replacing one of the same type).
    pub fn with_handle<T: Any + Send + Sync>(mut self, handle: T) -> Self {
        let mut map = (*self.handles.0).clone();
        map.insert(TypeId::of::<T>(), Arc::new(handle));
        self.handles = Handles(Arc::new(map));
        self
    }

    /// The copy the engine hands a task for one step (also how a task's unit test
    /// simulates a step, e.g. an interrupted earlier attempt).
    pub fn for_step(&self, step: StepInfo) -> Self {
        let span = tracing::info_span!(
            parent: &self.span,
            "step",
            stage = %step.stage,
            task = %step.task,
        );
        Self {
            step: Some(Arc::new(step)),
            carry: None,
            span,
            ..self.clone()
        }
    }

    /// The operation.
    pub fn workflow(&self) -> &WorkflowContext {
        &self.workflow
    }

    /// The operation at its epoch, for conditional writes.
    pub fn op_ref(&self) -> OpRef {
        self.workflow.op_ref()
    }

    /// This cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// This cluster's role in the operation.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The other cluster's name.
    pub fn peer_cluster(&self) -> &str {
        self.workflow.cluster_of(self.role.peer())
    }

    /// The injected clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time by the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The logger: a span naming the operation, cluster and (inside a step) stage and task.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The running step (set by the engine; `None` outside one).
    pub fn step(&self) -> Option<&StepInfo> {
        self.step.as_deref()
    }

    /// Earlier attempts at the running step ([`Attempt::First`] outside one).
    pub fn attempt(&self) -> Attempt {
        self.step().map_or(Attempt::First, |s| s.attempt)
    }

    /// The Kubernetes client of this cluster.
    pub fn kube(&self) -> Result<&kube::Client, TaskError> {
        self.kube.as_ref().ok_or(TaskError::MissingDependency {
            what: "a Kubernetes client",
        })
    }

    /// The DynamoDB store.
    pub fn store(&self) -> Result<&Store, TaskError> {
        self.store.as_ref().ok_or(TaskError::MissingDependency {
            what: "the DynamoDB store",
        })
    }

    /// This copy, for a step that carries `carry` (set by the engine).
    pub fn carrying(mut self, carry: Arc<Carry>) -> Self {
        self.carry = Some(carry);
        self
    }

    /// The journal stages the running step's write of the operation item publishes, as of
    /// now (none unless the engine handed some over); the write marks them written.
    pub fn carried(&self) -> Arc<CarriedStages> {
        match &self.carry {
            Some(c) => c.stages_at(truncate(self.now())),
            None => Arc::new(CarriedStages::default()),
        }
    }

    /// The handle of type `T`.
    pub fn handle<T: Any + Send + Sync>(&self) -> Result<&T, TaskError> {
        self.handles
            .0
            .get(&TypeId::of::<T>())
            .and_then(|h| h.downcast_ref::<T>())
            .ok_or(TaskError::MissingDependency {
                what: std::any::type_name::<T>(),
            })
    }
}

/// Journal times are kept to the millisecond.
fn truncate(at: Timestamp) -> Timestamp {
    failover_messages::records::truncate_to_millis(at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn workflow_context(mode: Mode, force: bool) -> WorkflowContext {
        let at = Timestamp::from_second(1_780_000_000).unwrap();
        WorkflowContext {
            operation_id: "op-1".into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            source: "east".into(),
            target: "west".into(),
            mode,
            force,
            claimed: false,
            epoch: 7,
            lease: None,
            timings: WorkflowTimings {
                requested_at: at,
                started_at: at,
            },
        }
    }

    #[test]
    fn the_role_follows_from_the_cluster_name() {
        let wf = workflow_context(Mode::Consistency, false);
        let east = TaskContext::new(wf.clone(), "east").unwrap();
        assert_eq!(east.role(), Role::Source);
        assert_eq!(east.peer_cluster(), "west");
        let west = TaskContext::new(wf.clone(), "west").unwrap();
        assert_eq!(west.role(), Role::Target);
        assert_eq!(west.peer_cluster(), "east");
        assert_eq!(
            west.op_ref(),
            OpRef {
                id: "op-1".into(),
                group: GroupRef::new("shop", "orders").unwrap(),
                epoch: 7
            }
        );
    }

    #[test]
    fn a_cluster_outside_the_operation_gets_a_clear_error() {
        let err = TaskContext::new(workflow_context(Mode::Uptime, false), "north").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("north") && msg.contains("op-1"), "{msg}");
        let mut wf = workflow_context(Mode::Uptime, false);
        wf.target = "east".into();
        assert!(matches!(
            TaskContext::new(wf, "east"),
            Err(ContextError::SameCluster { .. })
        ));
    }

    #[test]
    fn missing_handles_are_named_and_present_ones_are_found() {
        #[derive(Debug, PartialEq)]
        struct Notifier(&'static str);
        let ctx = TaskContext::new(workflow_context(Mode::Consistency, false), "east").unwrap();
        let Err(err) = ctx.kube() else {
            panic!("no client was given")
        };
        assert!(err.to_string().contains("Kubernetes"));
        assert!(ctx.store().unwrap_err().to_string().contains("DynamoDB"));
        assert!(
            ctx.handle::<Notifier>()
                .unwrap_err()
                .to_string()
                .contains("Notifier")
        );
        let ctx = ctx.with_handle(Notifier("sqs"));
        assert_eq!(ctx.handle::<Notifier>().unwrap(), &Notifier("sqs"));
    }

    #[test]
    fn the_injected_clock_is_used() {
        let at = Timestamp::from_second(42).unwrap();
        let ctx = TaskContext::new(workflow_context(Mode::Consistency, false), "east")
            .unwrap()
            .with_clock(Arc::new(move || at));
        assert_eq!(ctx.now(), at);
        assert_eq!(ctx.attempt(), Attempt::First);
        assert!(ctx.step().is_none());
    }

    #[test]
    fn only_a_started_attempt_counts_as_interrupted() {
        assert!(!Attempt::First.interrupted());
        assert!(
            Attempt::Resumed {
                previous: StepStatus::Started,
                attempts: 1
            }
            .interrupted()
        );
        assert!(
            !Attempt::Resumed {
                previous: StepStatus::Failed,
                attempts: 1
            }
            .interrupted()
        );
    }
}
