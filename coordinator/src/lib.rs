//! The failover coordinator library.
