//! The `Failover` object.

pub mod failover_events;
pub mod failover_names;
pub mod failover_reporter;
pub mod failover_status;
pub mod trigger;
