//! Benchmarks behind `make bench` (design §7), run by the `failover-bench` binary.
//!
//! * [`handoff`]: handoff latency, source's `READY_FOR_PROMOTION` durable → target confirmed,
//!   event-driven (SQS notification + consistent re-read) against polling baselines measured
//!   in the same run, with AWS calls per handoff.
//! * [`report`]: the markdown page (facts of the run and one table row per side).
//! * [`stats`]: percentiles and number formatting.
//!
//! Measurements are returned as data, so tests can check them without timing thresholds.

pub mod handoff;
pub mod report;
pub mod stats;

pub use handoff::{HandoffBenchConfig, HandoffReport, SideResult, TargetSide, run_handoff_bench};
pub use report::{MachineFacts, markdown};
