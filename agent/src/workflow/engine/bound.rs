//! A workflow whose steps are bound to tasks ([`BoundWorkflow`]): what the
//! [`Engine`](super::Engine) runs. [`Workflow::bind`] makes one from the factory's plan and
//! a [`TaskBuilder`]; tests build them by hand.

use std::time::Duration;

use crate::workflow::definition::Workflow;
use crate::workflow::task::{BoxedTask, TaskBuilder};

/// One step bound to the task that carries it out.
pub struct BoundStep {
    /// Journal key (unique within the stage).
    pub key: String,
    /// The object the step touches, for errors and progress.
    pub object: Option<String>,
    /// The step's own limit (steps waiting for the other cluster); `None`: the stage's.
    pub own_deadline: Option<Duration>,
    /// Whether intent and outcome are journaled.
    pub journaled: bool,
    /// Whether it is a claim or a promotion (resumes are logged as warnings).
    pub promotion: bool,
    /// Whether the engine reads the group state (alongside its intent's write, before it
    /// acts) and stops unless the
    /// operation is still in flight at its epoch ([`Journal::current`]): the first of each
    /// run of Kubernetes steps of one kind (ten `Demote` steps in a row share one read, as
    /// one "demote every volume" step would).
    ///
    /// [`Journal::current`]: crate::workflow::Journal::current
    pub checks_current: bool,
    /// Whether its stage is published right after its outcome (the other cluster waits for
    /// it); see [`BoundStage::publication`].
    pub publishes: bool,
    /// Whether its intent is written while it acts instead of before
    /// ([`Step::intent_alongside`](crate::workflow::Step::intent_alongside)).
    pub intent_alongside: bool,
    /// Whether its task's write of the operation item can publish journal stages with it
    /// ([`Step::carries_publication`](crate::workflow::Step::carries_publication)).
    pub carries: bool,
    /// Consecutive steps with the same batch kind run side by side
    /// ([`Step::batch_kind`](crate::workflow::Step::batch_kind)); `None`: alone.
    pub batch: Option<&'static str>,
    /// The task.
    pub task: BoxedTask,
}

impl std::fmt::Debug for BoundStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundStep")
            .field("key", &self.key)
            .field("object", &self.object)
            .field("own_deadline", &self.own_deadline)
            .field("journaled", &self.journaled)
            .field("promotion", &self.promotion)
            .field("checks_current", &self.checks_current)
            .field("publishes", &self.publishes)
            .field("intent_alongside", &self.intent_alongside)
            .field("carries", &self.carries)
            .field("batch", &self.batch)
            .field("task", &self.task.name())
            .finish()
    }
}

impl BoundStep {
    /// A journaled step `key` run by `task`, limited by its stage.
    pub fn new(key: impl Into<String>, task: BoxedTask) -> Self {
        Self {
            key: key.into(),
            object: None,
            own_deadline: None,
            journaled: true,
            promotion: false,
            checks_current: false,
            publishes: false,
            intent_alongside: false,
            carries: false,
            batch: None,
            task,
        }
    }

    /// Publishes journal stages with its task's write of the operation item.
    pub fn carrying(mut self) -> Self {
        self.carries = true;
        self
    }

    /// Reads the group state before it acts.
    pub fn checking_current(mut self) -> Self {
        self.checks_current = true;
        self
    }

    /// Publishes its stage right after its outcome.
    pub fn publishing(mut self) -> Self {
        self.publishes = true;
        self
    }

    /// Names the object.
    pub fn on(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    /// Gives the step its own limit, outside its stage's.
    pub fn within(mut self, limit: Duration) -> Self {
        self.own_deadline = Some(limit);
        self
    }

    /// Writes its intent while it acts.
    pub fn intent_alongside(mut self) -> Self {
        self.intent_alongside = true;
        self
    }

    /// Runs the step side by side with its neighbours of the same batch kind.
    pub fn batched(mut self, kind: &'static str) -> Self {
        self.batch = Some(kind);
        self
    }

    /// Runs the step without journaling it.
    pub fn unjournaled(mut self) -> Self {
        self.journaled = false;
        self
    }
}

/// One stage of bound steps.
#[derive(Debug)]
pub struct BoundStage {
    /// Journal key.
    pub key: String,
    /// Number in the operation's mode.
    pub number: u8,
    /// The seed's name.
    pub title: String,
    /// The limit of each step and of all of them together (waits for the peer excepted).
    pub timeout: Duration,
    /// The steps, in order.
    pub steps: Vec<BoundStep>,
}

impl BoundStage {
    /// An empty stage.
    pub fn new(key: impl Into<String>, number: u8, timeout: Duration) -> Self {
        let key = key.into();
        Self {
            title: key.clone(),
            key,
            number,
            timeout,
            steps: Vec::new(),
        }
    }

    /// Appends a step.
    pub fn step(mut self, step: BoundStep) -> Self {
        self.steps.push(step);
        self
    }

    /// The end (exclusive) of the batch starting at step `start`: the steps after it with
    /// its batch kind; `start + 1` for a step that runs alone.
    pub fn batch_end(&self, start: usize) -> usize {
        let Some(kind) = self.steps.get(start).and_then(|s| s.batch) else {
            return start + 1;
        };
        self.steps[start..]
            .iter()
            .position(|s| s.batch != Some(kind))
            .map_or(self.steps.len(), |n| start + n)
    }

    /// The indexes of the steps after whose outcome the stage is published: every journaled
    /// step marked [`BoundStep::publishes`] (the other cluster waits for it), else the
    /// stage's last step (none when nothing is journaled). After the last step, not the last
    /// journaled one: a notification that ends a stage (READY handed over, the operation
    /// completed) goes out before the publication's two writes, not after them.
    pub fn publication(&self) -> Vec<usize> {
        let marked: Vec<usize> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.journaled && s.publishes)
            .map(|(i, _)| i)
            .collect();
        if marked.is_empty() {
            if self.steps.iter().any(|s| s.journaled) {
                vec![self.steps.len() - 1]
            } else {
                Vec::new()
            }
        } else {
            marked
        }
    }
}

/// A workflow whose steps are bound to tasks: what [`Engine::run`](super::Engine::run) runs.
#[derive(Debug, Default)]
pub struct BoundWorkflow {
    /// The stages, in order.
    pub stages: Vec<BoundStage>,
}

impl Workflow {
    /// Binds every step to the task `builder` makes for it.
    pub fn bind(&self, builder: &dyn TaskBuilder) -> BoundWorkflow {
        BoundWorkflow {
            stages: self
                .stages
                .iter()
                .map(|stage| BoundStage {
                    key: stage.key().to_owned(),
                    number: stage.number,
                    title: stage.name.to_owned(),
                    timeout: stage.timeout,
                    steps: stage
                        .tasks
                        .iter()
                        .enumerate()
                        .map(|(i, step)| BoundStep {
                            checks_current: step.kube_kind().is_some()
                                && (i == 0 || stage.tasks[i - 1].kube_kind() != step.kube_kind()),
                            key: step.key(),
                            object: step.object(),
                            own_deadline: step.own_deadline(),
                            journaled: step.journaled(),
                            promotion: step.is_promotion(),
                            publishes: stage.published.contains(&step.key()),
                            intent_alongside: step.intent_alongside(),
                            carries: step.carries_publication(),
                            batch: step.batch_kind(),
                            task: builder.task_for(step),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
