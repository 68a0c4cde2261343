//! The failover agent: one per cluster. It owns its cluster's side of every failover, talks
//! only to its own Kubernetes API server, and exchanges everything cross-cluster through
//! DynamoDB records and SQS wake-ups (see `docs/protocol.md`).
//!
//! Each folder is one concern, and imports point down only (checked by
//! `agent/tests/layering.rs`), lowest layer first:
//!
//! 1. Leaves, which import nothing of the agent:
//!    * [`boxed`] – futures built straight into a box (small poll frames in debug builds);
//!    * [`errors`] – an error and its sources on one line;
//!    * [`metrics`] – the Prometheus metrics;
//!    * [`seam`] – the small sender handles components hold instead of actor addresses;
//!    * [`kube_ops`] – the idempotent Kubernetes operations of this cluster;
//!    * [`kube_events`] – publishing Kubernetes Events;
//!    * [`conditions`] – status conditions as both objects keep them.
//! 2. [`workflow`] – the seed's workflow system: the steps (in four groups: Kubernetes,
//!    records, waits, notifications), the pure factory that plans one cluster's side of an
//!    operation, the journaling engine that runs it, its progress stream, and the contexts
//!    tasks get.
//! 3. The two objects, independent of each other:
//!    * [`failover_object`] – the `Failover`: its names, the fold of a run's progress into
//!      its status, the reporter that follows the run, its Events, and the trigger that
//!      submits a user's `Failover`;
//!    * [`failover_group`] – the `FailoverGroup`: spec validation, role, resources, status,
//!      Events, and self-fencing.
//! 4. [`tasks`] – the real tasks: every workflow step bound to Kubernetes, DynamoDB or SQS,
//!    one file per group of steps.
//! 5. [`adapter`] – the seed's `ManagerAdapter` / `ProcessFailover`: an operation record in,
//!    this cluster's run out.
//! 6. [`runtime`] – the `failover-agent` binary: configuration, start-up checks, the actors
//!    and the admin endpoints. The only place (with [`seam`]) that knows the actor library.

pub mod adapter;
pub mod boxed;
pub mod conditions;
pub mod errors;
pub mod failover_group;
pub mod failover_object;
pub mod kube_events;
pub mod kube_ops;
pub mod metrics;
pub mod runtime;
pub mod seam;
pub mod tasks;
pub mod workflow;
