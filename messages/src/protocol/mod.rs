//! The rules of `docs/protocol.md` as pure functions: no AWS SDK, no Kubernetes client, no
//! clock of their own (the caller passes `now`). Every front end calls these and only renders
//! their answers, so two front ends cannot disagree about a rule:
//!
//! * [`stages`]: the stages of an operation, their order per mode, which role runs each, and
//!   the words that describe them (the workflow factory, `failoverctl plan`, progress output
//!   and the docs all take them from here);
//! * [`start`]: whether an operation may start ([`start::decide_start`]), used by
//!   `failoverctl failover`, `failoverctl plan`, the `Failover` trigger in the agents and the
//!   store's own re-check right before its conditional write;
//! * [`spec`]: what is wrong with a `FailoverGroup` spec (one validator for the factory and the
//!   FailoverGroup status);
//! * [`lease`]: the serving lease's arithmetic: when a holder must fence, and when an
//!   observer may conclude a holder's lease is over (monotonic clocks only);
//! * [`names`]: the labels, annotations and kind names every component writes and reads.

pub mod lease;
pub mod names;
pub mod spec;
pub mod stages;
pub mod start;
