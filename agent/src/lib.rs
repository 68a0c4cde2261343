//! The failover agent: one per cluster. It owns its cluster's side of every failover, talks
//! only to its own Kubernetes API server, and exchanges everything cross-cluster through
//! DynamoDB records and SQS wake-ups (see `docs/protocol.md`).
//!
//! * [`workflow`] – the seed's workflow system: tasks, the pure factory that plans one
//!   cluster's side of an operation, the journaling engine that runs it, and the contexts
//!   tasks get.
//! * [`seam`] – the small sender handles components hold instead of actix addresses.
//! * [`kube_ops`] – the idempotent Kubernetes operations of this cluster.
//! * [`tasks`] – the real tasks: every workflow step bound to Kubernetes, DynamoDB or SQS.
//! * [`adapter`] – the seed's `ManagerAdapter` / `ProcessFailover`.
//! * [`status`] – the `Failover` object each involved cluster keeps for an operation.

pub mod adapter;
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
