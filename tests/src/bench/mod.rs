//! Benchmarks behind `make bench` (design §7), run by the `failover-bench` binary.
//!
//! * [`handoff`]: handoff latency, source's `READY_FOR_PROMOTION` durable → target confirmed,
//!   event-driven (SQS notification + consistent re-read) against polling baselines measured
//!   in the same run, with AWS calls per handoff.
//! * [`overhead`]: orchestration overhead of a CONSISTENCY failover (10 workloads, 10
//!   volumes) with real agent processes, at two storage latencies, and the DynamoDB calls
//!   per group failover (1 and 10 volumes) from the agents' `/metrics`, idle background
//!   subtracted.
//! * [`fanout`]: 50 groups failed over at once against one group with the same agents, and
//!   the agents' peak RSS, with the machine's CPU during each step.
//! * [`cpu`]: the machine's and each environment process's CPU time between two readings,
//!   and the floor it sets (CPU work / cores).
//! * [`fleet`]: the FailoverGroup fixtures of any size those two use.
//! * [`probe`]: scraping `/metrics`, `/proc/<pid>/status`, starting and awaiting failovers.
//! * [`report`], [`page`]: the handoff section, and the whole page with its overview table
//!   (sections merged into an existing report).
//! * [`stats`]: percentiles and number formatting.
//!
//! Measurements are returned as data, so tests can check them without timing thresholds.

pub mod cpu;
pub mod fanout;
pub mod fleet;
pub mod handoff;
pub mod overhead;
pub mod page;
pub mod probe;
pub mod report;
pub mod stats;

pub use fanout::{FanoutConfig, FanoutReport, run_fanout_bench};
pub use handoff::{HandoffBenchConfig, HandoffReport, SideResult, TargetSide, run_handoff_bench};
pub use overhead::{AgentTiming, OverheadConfig, OverheadReport, run_overhead_bench};
pub use page::Section;
pub use report::{MachineFacts, markdown};

/// The overhead benchmark as two sections: `overhead` and `aws-calls`.
pub fn overhead_sections(r: &OverheadReport) -> Vec<Section> {
    let rows = overhead::summary_rows(r);
    let (first, rest) = rows.split_at(rows.len().min(1));
    vec![
        Section {
            key: "overhead".into(),
            summary: first.to_vec(),
            body: overhead::overhead_markdown(r),
        },
        Section {
            key: "aws-calls".into(),
            summary: rest.to_vec(),
            body: overhead::calls_markdown(r),
        },
    ]
}

/// The fan-out benchmark as a section.
pub fn fanout_section(r: &FanoutReport) -> Section {
    Section {
        key: "fanout".into(),
        summary: fanout::summary_rows(r),
        body: fanout::markdown(r),
    }
}
