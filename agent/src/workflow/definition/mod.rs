//! The plain-data workflow definition the [`Factory`](super::Factory) builds: a
//! [`Workflow`] is a list of [`Stage`]s, each a list of [`Step`]s. A step says what to do
//! to which object; it does nothing by itself (a [`TaskBuilder`](super::TaskBuilder) turns
//! it into a task).
//!
//! # Stages
//!
//! The stages ([`StageId`], in [`stages`](super::stages)) are the seed's CONSISTENCY stages
//! 1–6, split by role, plus one stage of its own for UPTIME's resync. Their numbers give the
//! order in which the whole operation (both clusters) passes through them, so they differ by
//! mode:
//!
//! | stage | runs on | CONSISTENCY | UPTIME | time limit (`spec.timeouts`) |
//! |---|---|---|---|---|
//! | Initialization | both | 1 | 1 | `initialization` |
//! | Source Cluster Shutdown | source | 2 | 4 | `sourceShutdown` |
//! | Volume Transition (Source) | source | 3 | 5 | `volumeDemotion` |
//! | Volume Transition (Target) | target | 4 | 2 | `volumePromotion` |
//! | Target Cluster Activation | target | 5 | 3 | `targetActivation` |
//! | Volume Resync (Source) | source | – | 6 | `volumeDemotion` (no field of its own yet) |
//! | Completion | both | 6 | 7 | `completion` |
//!
//! # Steps, by group
//!
//! A [`Step`] is one of five groups, each a file of its own; the group says who carries the
//! step out:
//!
//! | group | file | what | carried out |
//! |---|---|---|---|
//! | [`Step::Kube`] | [`kube`] | traffic, Flux, workloads, volumes: one object of this cluster | by the actor of its [`Concern`] |
//! | [`Step::Record`] | [`record`] | reads and conditional writes of the operation's DynamoDB records | in the operation's task |
//! | [`Step::Wait`] | [`wait`] | waits for the other cluster, each with its own limit | in the operation's task |
//! | [`Step::Notify`] | [`notify`] | a wake-up to the other cluster, this cluster's `FailoverGroup` status | in the operation's task |
//! | [`Step::Check`] | [`check`] | the preflight: what can be known before anything changes, read in this cluster | in the operation's task |
//!
//! Adding a step: a variant (with its name and description) in its group's file, one match
//! arm in the tasks' file of that group (`crate::tasks`), and the factory line that plans it.
//!
//! # Journal keys
//!
//! A stage's journal key is [`StageId::key`] (e.g. `SourceShutdown`); a step's is
//! [`Step::key`]: its name and object (e.g. `ScaleDown:Deployment/orders-api`), unique within
//! its stage, at most 128 characters (longer ones are cut and end in a hash), without `#` or
//! whitespace, as the journal's sort key requires. The group is not part of the key.
//!
//! # Deadlines
//!
//! A step that does this cluster's own work may run at most its stage's time limit, and the
//! stage's own work together also at most that limit. A step that waits for the other
//! cluster ([`Step::Wait`]: [`WaitStep::WaitAllReady`], [`WaitStep::WaitPeer`],
//! [`WaitStep::WaitOperationClosed`]) carries its own limit (`within`), the sum of the limits
//! of the peer's stages it waits through, and does not count against its stage's limit.
//! Both limits count from the first start the journal recorded, across resumes (see
//! [`Engine`](super::Engine)).

pub mod check;
pub mod kube;
pub mod notify;
pub mod record;
pub mod wait;

use std::fmt;
use std::time::Duration;

use failover_messages::keys::MAX_STEP_NAME_LEN;
use failover_messages::records::Mode;

use super::stages::{Role, StageId};

pub use self::check::{CheckStep, Preflight};
pub use self::kube::{Concern, KubeStep};
pub use self::notify::NotifyStep;
pub use self::record::{DualActiveEnd, RecordStep};
pub use self::wait::{PeerStep, Release, WaitStep};

/// One step of a workflow and what it touches. Plain data: the factory builds these, a
/// [`TaskBuilder`](super::TaskBuilder) turns them into tasks. Every step's task must be
/// idempotent (see [`WorkflowTask`](super::WorkflowTask)). See the module docs for the
/// groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// A step on one Kubernetes object of this cluster (traffic, Flux, workloads, volumes).
    Kube(KubeStep),
    /// A read or conditional write of the operation's DynamoDB records.
    Record(RecordStep),
    /// A wait for the other cluster.
    Wait(WaitStep),
    /// A wake-up to the other cluster, or this cluster's `FailoverGroup` status.
    Notify(NotifyStep),
    /// A check before anything changes (the preflight).
    Check(CheckStep),
}

impl Step {
    /// The task's name, e.g. `ScaleDown`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kube(s) => s.name(),
            Self::Record(s) => s.name(),
            Self::Wait(s) => s.name(),
            Self::Notify(s) => s.name(),
            Self::Check(s) => s.name(),
        }
    }

    /// The one object the step touches, e.g. `Deployment/orders-api`,
    /// `HelmRelease/flux-system/orders`, `VolumeReplication/orders-db-data` (`None` for steps
    /// on records or on several objects).
    pub fn object(&self) -> Option<String> {
        match self {
            Self::Kube(s) => Some(s.object()),
            Self::Record(_) | Self::Wait(_) | Self::Notify(_) | Self::Check(_) => None,
        }
    }

    /// The concern whose actor carries out the step; `None` for steps on records, waits for
    /// the other cluster, notifications and status.
    pub fn concern(&self) -> Option<Concern> {
        match self {
            Self::Kube(s) => Some(s.concern()),
            Self::Record(_) | Self::Wait(_) | Self::Notify(_) | Self::Check(_) => None,
        }
    }

    /// The journal key: the name, plus the object or what distinguishes the step, e.g.
    /// `ScaleDown:Deployment/orders-api`, `Notify:target:ReadyForPromotion`. At most 128
    /// characters (longer keys are cut and end in `~<hash>`), never `#` or whitespace.
    pub fn key(&self) -> String {
        let detail = match self {
            Self::Kube(s) => Some(s.object()),
            Self::Record(s) => s.detail(),
            Self::Wait(s) => s.detail(),
            Self::Notify(s) => s.detail(),
            Self::Check(s) => s.detail(),
        };
        let key = match detail {
            Some(d) => format!("{}:{d}", self.name()),
            None => self.name().to_owned(),
        };
        bounded_key(key)
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        match self {
            Self::Kube(s) => s.description(),
            Self::Record(s) => s.description(),
            Self::Wait(s) => s.description(),
            Self::Notify(s) => s.description(),
            Self::Check(s) => s.description(),
        }
    }

    /// Whether the engine journals the step's intent and outcome.
    ///
    /// Every step is, except those that may run after the operation is closed, when every
    /// journal write (conditioned on `opId = id`) is refused: [`RecordStep::CompleteOperation`]
    /// (it closes the operation), [`RecordStep::FinishAbort`] (it closes an aborted one),
    /// every [`Step::Notify`] ([`NotifyStep::Notify`], [`NotifyStep::UpdateGroupStatus`]) and
    /// [`WaitStep::WaitOperationClosed`]. All are idempotent (a duplicate notification is a
    /// harmless hint, completion is a conditional write that recognises itself) and run
    /// again on a resume.
    pub fn journaled(&self) -> bool {
        !matches!(
            self,
            Self::Record(RecordStep::CompleteOperation | RecordStep::FinishAbort)
                | Self::Notify(_)
                | Self::Wait(WaitStep::WaitOperationClosed { .. })
        )
    }

    /// The kind of a Kubernetes step the engine checks ([`KubeStep::checked_by_engine`]),
    /// e.g. `ScaleUp`; `None` for every other step (records, waits for the other side and
    /// notifications read or write DynamoDB under their own conditions; Kubernetes waits
    /// change nothing; the promotion checks the claim itself). The engine reads the group
    /// state before the first of each run of checked steps of one kind.
    pub fn kube_kind(&self) -> Option<&'static str> {
        match self {
            Self::Kube(k) if k.checked_by_engine() => Some(k.name()),
            _ => None,
        }
    }

    /// Whether the step's task writes the operation item anyway, so that journal stages
    /// can be published with that write instead of one of their own (see the engine's
    /// carried publications): the replica counts and the close.
    pub fn carries_publication(&self) -> bool {
        matches!(
            self,
            Self::Record(RecordStep::RecordReplicas { .. } | RecordStep::CompleteOperation)
        )
    }

    /// Whether the engine writes the step's intent while the step acts instead of before.
    ///
    /// * The claim ([`RecordStep::ClaimPromotion`]): it ends the handoff, so the intent's
    ///   write in the cluster would add its whole round trip to every failover's handoff, and
    ///   it is harmless to repeat (a conditional write of the group state that a claim by the
    ///   same cluster satisfies again), which is all a step that acted without its intent
    ///   written can cost: running again on a resume.
    /// * The waits for the other cluster's published steps or READY records
    ///   ([`WaitStep::WaitPeer`], [`WaitStep::WaitAllReady`]): they only read DynamoDB, and
    ///   their intent only records that they started (for their limit and a resume). The
    ///   source's wait for the target's preflight is on every failover's critical path.
    ///
    /// Not the Kubernetes waits, though they change nothing too: started alongside their
    /// intents, they made 50 groups at once take a third more API server CPU, with as many
    /// requests (measured with the fanout benchmark; the likely cause is that a wait started
    /// sooner finds its object short of the goal more often and opens a watch).
    pub fn intent_alongside(&self) -> bool {
        match self {
            Self::Record(RecordStep::ClaimPromotion { .. }) => true,
            Self::Wait(w) => matches!(w, WaitStep::WaitPeer { .. } | WaitStep::WaitAllReady { .. }),
            Self::Kube(_) | Self::Record(_) | Self::Notify(_) | Self::Check(_) => false,
        }
    }

    /// The kind shared by the Kubernetes steps that may run together: consecutive steps of
    /// a stage with the same batch kind (ten `Demote`, ten `WaitPrimary`) touch different
    /// objects and none needs another's result, so the engine runs them side by side.
    pub fn batch_kind(&self) -> Option<&'static str> {
        match self {
            Self::Kube(k) => Some(k.name()),
            _ => None,
        }
    }

    /// Steps the journal must never redo blindly (a claim or a promotion): when an earlier
    /// attempt is journaled `STARTED`, the task checks the current state first.
    pub fn is_promotion(&self) -> bool {
        matches!(
            self,
            Self::Record(RecordStep::ClaimPromotion { .. }) | Self::Kube(KubeStep::Promote { .. })
        )
    }

    /// The step's own limit, for steps that wait for the other cluster (they neither count
    /// against nor are bounded by their stage's limit).
    pub fn own_deadline(&self) -> Option<Duration> {
        match self {
            Self::Wait(s) => Some(s.within()),
            Self::Kube(_) | Self::Record(_) | Self::Notify(_) | Self::Check(_) => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// `key` if it fits the journal's limit, else its first characters, `~` and a 64-bit FNV-1a
/// hash of the whole (stable across builds, so a resumed agent finds its steps again).
fn bounded_key(key: String) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c == '#' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if key.len() <= MAX_STEP_NAME_LEN {
        return key;
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut cut = MAX_STEP_NAME_LEN - 17;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &key[..cut])
}

/// One stage of a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Which stage.
    pub id: StageId,
    /// Its number in the operation's mode (1-based; see the module docs).
    pub number: u8,
    /// The seed's name for it, e.g. `Source Cluster Shutdown`.
    pub name: &'static str,
    /// Its time limit (`spec.timeouts`): for each step doing this cluster's own work and for
    /// all of them together.
    pub timeout: Duration,
    /// Its steps, in order.
    pub tasks: Vec<Step>,
    /// The keys of its steps the other cluster's plan waits for ([`WaitStep::WaitPeer`], a
    /// forced target's [`Release::Step`]): the stage is published to DynamoDB right after
    /// each of them; a stage with none is published after its last journaled step.
    pub published: Vec<String>,
}

impl Stage {
    /// The stage's journal key.
    pub fn key(&self) -> &'static str {
        self.id.key()
    }

    /// How long `step` may run: its own limit, or the stage's.
    pub fn deadline_of(&self, step: &Step) -> Duration {
        step.own_deadline().unwrap_or(self.timeout)
    }
}

/// What one cluster does in one operation: its stages in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workflow {
    /// CONSISTENCY or UPTIME.
    pub mode: Mode,
    /// This cluster's role.
    pub role: Role,
    /// Whether the operation is forced.
    pub force: bool,
    /// The stages, in order (stages with nothing to do are left out).
    pub stages: Vec<Stage>,
}

impl Workflow {
    /// Every step with its stage, in order.
    pub fn steps(&self) -> impl Iterator<Item = (&Stage, &Step)> {
        self.stages
            .iter()
            .flat_map(|stage| stage.tasks.iter().map(move |step| (stage, step)))
    }

    /// The step with journal key `task` in stage `stage`.
    pub fn find(&self, stage: StageId, task: &str) -> Option<&Step> {
        self.stages
            .iter()
            .filter(|s| s.id == stage)
            .flat_map(|s| &s.tasks)
            .find(|step| step.key() == task)
    }

    /// The stage `id`, if the workflow has it.
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The last journaled step of the stages before `before` (all stages when `None`), as
    /// the other cluster names it in a [`WaitStep::WaitPeer`].
    pub fn last_journaled_before(&self, before: Option<StageId>) -> Option<PeerStep> {
        self.stages
            .iter()
            .take_while(|s| Some(s.id) != before)
            .flat_map(|s| s.tasks.iter().map(move |t| (s.id, t)))
            .filter(|(_, t)| t.journaled())
            .last()
            .map(|(stage, t)| PeerStep {
                role: self.role,
                stage,
                task: t.key(),
            })
    }
}

#[cfg(test)]
mod tests;
