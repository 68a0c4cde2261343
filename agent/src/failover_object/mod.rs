//! The `Failover` object.

pub mod failover_status;
pub mod trigger;
