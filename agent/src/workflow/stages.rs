//! The stages of an operation and the two roles, from the protocol module
//! ([`failover_messages::protocol::stages`]): the order per mode, titles, the role that runs
//! each stage and its time limit are defined there once, for the factory here and for
//! `failoverctl plan`, progress output and the docs.

pub use failover_messages::protocol::stages::{Role, StageId};
