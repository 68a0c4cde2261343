//! Failover agent library (filled in by the agent work).
