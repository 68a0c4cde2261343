//! The test environment harness: real kube-apiservers (kwok) and moto, per-test
//! namespaces and table names, wait helpers, the storage simulator, the run checker, and
//! the seeded chaos runs.

pub mod agents;
pub mod aws;
pub mod bench;
pub mod chaos;
pub mod chart;
pub mod checker;
pub mod env;
pub mod faults;
pub mod fixtures;
pub mod isolation;
pub mod kube;
pub mod netcut;
pub mod observe;
pub mod process;
pub mod scenario;
pub mod storage_sim;
