//! The workflow system of the seed (`failover-workflow-system.md`), ported.
//!
//! | seed | here |
//! |---|---|
//! | `WorkflowTask` (`Execute`, `GetName`, `GetDescription`) | [`WorkflowTask`] ([`task`]), [`TaskError`] ([`task_error`]) |
//! | Factory | [`Factory`] ([`factory`]): pure, (mode, role, group spec, force) → [`Workflow`] |
//! | workflow definitions | [`Workflow`], [`Stage`], [`Step`] in five groups ([`definition`]) |
//! | stages, roles | [`StageId`], [`Role`] ([`stages`]) |
//! | Engine | [`Engine`] ([`engine`]): stages in order, journal, deadlines, progress |
//! | DependencyInjector | [`TaskContext`] ([`context`]) |
//! | workflow context | [`WorkflowContext`] ([`context`]) |
//! | (new) journal of step intents and outcomes | [`Journal`] ([`journal`]) |
//! | (new) progress for status and metrics | [`Progress`], [`RunReport`] ([`progress`]) |
//!
//! How the pieces fit: the agent reads an operation record, builds the [`WorkflowContext`]
//! and a [`TaskContext`] for its cluster, asks the [`Factory`] for its side's [`Workflow`]
//! (plain data, unit-tested), binds each [`Step`] to a task with a [`TaskBuilder`], and
//! hands the result to the [`Engine`], which journals and runs it.
//!
//! Inside, the files import downward only (checked by `agent/tests/layering.rs`):
//! [`stages`] and [`task_error`] import nothing; [`definition`] imports `stages`;
//! [`context`] `stages` and `task_error`; [`task`] `context`, `definition` and `task_error`;
//! [`factory`] `definition` and `stages`; [`engine`] everything but `factory`. [`journal`]
//! and [`progress`] stand alone. This `mod.rs` only re-exports.

pub mod context;
pub mod definition;
pub mod engine;
pub mod factory;
pub mod journal;
pub mod progress;
pub mod stages;
pub mod task;
pub mod task_error;

pub use self::context::{
    Attempt, ContextError, StepInfo, TaskContext, WorkflowContext, WorkflowTimings,
};
pub use self::definition::{
    CheckStep, Concern, DualActiveEnd, KubeStep, NotifyStep, PeerStep, Preflight, RecordStep,
    Release, Stage, Step, WaitStep, Workflow,
};
pub use self::engine::{BoundStage, BoundStep, BoundWorkflow, Engine, EngineError};
pub use self::factory::{Factory, FactoryError};
pub use self::journal::{
    Journal, JournalError, JournalWrite, MemoryJournal, check_outcome, intent_step, outcome_step,
};
pub use self::progress::{Progress, ProgressEvent, RunReport, SideResult, StageReport, StepReport};
pub use self::stages::{Role, StageId};
pub use self::task::{BoxedTask, DynWorkflowTask, FnTask, TaskBuilder, WorkflowTask, boxed};
pub use self::task_error::TaskError;
