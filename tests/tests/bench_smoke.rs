//! Smoke tests of the benchmarks behind `make bench`, at tiny sizes, so their code does
//! not rot:
//!
//! * the handoff latency benchmark (`failover-bench handoff`) against moto: a few handoffs
//!   per side, short pollers, and checks of the report's shape and of the call counts;
//! * the agent benchmarks (`failover-bench overhead` and `fanout`) against the whole test
//!   environment with real agent processes: one measured failover per case of a 2-volume
//!   and a 1-volume group, and 3 groups at once; checks that every figure has its row in
//!   the report and that the counters moved.
//!
//! No timing thresholds: durations only have to be positive.

use std::time::Duration;

use anyhow::Result;
use failover_tests::aws::moto;
use failover_tests::bench::fleet::GroupShape;
use failover_tests::bench::{
    AgentTiming, FanoutConfig, HandoffBenchConfig, MachineFacts, OverheadConfig, TargetSide,
    fanout_section, markdown, overhead_sections, page, run_fanout_bench, run_handoff_bench,
    run_overhead_bench,
};
use failover_tests::kube::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_bench_reports_three_sides_with_sane_numbers() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,failover_tests::bench=info".into()),
        )
        .with_test_writer()
        .try_init();
    let env = moto().await?;
    let config = HandoffBenchConfig {
        handoffs: 5,
        volumes: 3,
        // A 1 s poller, and a 2 s one standing in for the reference design's 30 s.
        poll_intervals: vec![Duration::from_secs(1), Duration::from_secs(2)],
        // The source works 1.5 s before it marks the volumes ready: the event-driven target
        // waits in one long poll, the pollers keep reading.
        source_work: Duration::from_millis(1500),
        ..HandoffBenchConfig::default()
    };
    let report = run_handoff_bench(&env, &config).await?;

    assert_eq!(report.sides.len(), 3);
    assert!(matches!(
        report.sides[0].side,
        TargetSide::EventDriven {
            receive_wait_seconds: 20
        }
    ));
    // Counts allow one retried call (the store retries transport failures and 5xx).
    let about = |side: &failover_tests::bench::SideResult, api: &str, n: u64| {
        let got = side.calls.get(api).copied().unwrap_or(0);
        assert!(
            (n..=n + 1).contains(&got),
            "{api}: {got} calls, expected {n}: {side:?}"
        );
    };
    for side in &report.sides {
        assert_eq!(side.handoffs(), 5, "{side:?}");
        assert!(side.latencies.iter().any(|l| !l.is_zero()), "{side:?}");
        // One ready write (an `UpdateItem` of the group state) per handoff, on every side.
        about(side, "UpdateItem", 5);
        assert!(!side.calls.contains_key("TransactWriteItems"), "{side:?}");
    }

    // Event-driven: every latency is positive (the read follows the notification), and the
    // calls are a small constant per handoff: 1 update, 1 send, 1 receive (the 1.5 s
    // wait fits in one long poll), 2 reads (the operation, then the group state that
    // carries its handoff), 1 delete, plus at most one receive in flight.
    let ours = &report.sides[0];
    assert!(ours.latencies.iter().all(|l| !l.is_zero()), "{ours:?}");
    assert_eq!(ours.failed_reads, 0, "{ours:?}");
    for api in ["SendMessage", "DeleteMessage"] {
        about(ours, api, 5);
    }
    about(ours, "GetItem", 10);
    // Receives are counted when issued: the long poll already open when the counters were
    // reset after the warm-up delivers the first measured message uncounted, and the next
    // poll may or may not be issued before the counters are read: 4 to 6 are all right.
    let receives = ours.calls.get("ReceiveMessage").copied().unwrap_or(0);
    assert!(
        (4..=6).contains(&receives),
        "ReceiveMessage: {receives} calls: {ours:?}"
    );
    assert!(ours.calls_per_handoff() <= 7.0, "{ours:?}");

    // A poller pays for the source's 1.5 s of work with reads: at 1 s that is at least one
    // read before the write and one after it.
    let poll_1s = &report.sides[1];
    assert!(
        poll_1s.api_calls_per_handoff(Some("GetItem")) >= 4.0,
        "{poll_1s:?}"
    );

    let page = markdown(
        &report,
        &MachineFacts::probe(),
        "cargo test --test bench_smoke",
    );
    let rows: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| target side"))
        .collect();
    assert_eq!(rows.len(), 3, "{page}");
    assert!(
        rows[0].starts_with("| event-driven (SQS long poll 20 s) | 5 |"),
        "{page}"
    );
    assert!(rows[1].starts_with("| polling every 1 s | 5 |"), "{page}");
    assert!(rows[2].starts_with("| polling every 2 s | 5 |"), "{page}");
    assert!(page.contains("moto at http://127.0.0.1:"), "{page}");
    assert!(page.contains("nproc "), "{page}");
    Ok(())
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,failover_tests::bench=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Short agent intervals, so the idle window sees some background; a 15 s lease, so the
/// agents keep it while the benchmark loads moto (a renewal may wait seconds there).
fn fast_agents() -> AgentTiming {
    AgentTiming {
        heartbeat_interval: Duration::from_secs(5),
        reread_interval: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead_bench_reports_every_case_and_the_calls_per_failover() -> Result<()> {
    init_tracing();
    let env = TestEnv::attach().await?;
    let config = OverheadConfig {
        workloads: 2,
        latencies: vec![Duration::ZERO, Duration::from_millis(100)],
        small_workloads: 1,
        runs: 1,
        idle_window: Duration::from_secs(3),
        agents: fast_agents(),
        ..OverheadConfig::default()
    };
    let report = Box::pin(run_overhead_bench(&env, &config)).await?;

    // Two cases of the 2-volume group, the 1-volume one, then the 2-volume one with 30 ms
    // added to every AWS answer.
    let shapes: Vec<(usize, Duration, Duration)> = report
        .cases
        .iter()
        .map(|c| (c.workloads, c.latency, c.aws_latency))
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(
        shapes,
        [
            (2, Duration::ZERO, Duration::ZERO),
            (2, ms(100), Duration::ZERO),
            (1, Duration::ZERO, Duration::ZERO),
            (2, Duration::ZERO, ms(30)),
        ]
    );
    for case in &report.cases {
        assert_eq!(case.runs.len(), 1, "{case:?}");
        let run = &case.runs[0];
        assert_eq!(run.direction, "west → east", "{run:?}");
        assert!(!run.total.is_zero(), "{run:?}");
        assert!(run.window >= run.total, "{run:?}");
        // Each side of a failover writes records, and each agent handles at least its
        // OperationStarted message.
        assert!(run.calls.aws_total() > 0, "{run:?}");
        assert!(run.calls.sqs_total() >= 2, "{run:?}");
        assert!(run.coordinator_calls >= 1, "{run:?}");
        assert!(!run.stages_ms.is_empty(), "{run:?}");
    }
    assert!(
        report.idle.aws_total() > 0,
        "heartbeats while idle: {report:?}"
    );
    assert!(report.net_calls(&report.cases[0]) > 0.0, "{report:?}");

    let sections = overhead_sections(&report);
    let page = page::compose(
        &sections,
        &MachineFacts::probe(),
        "cargo test --test bench_smoke",
    );
    assert!(
        page.contains("| orchestration overhead, CONSISTENCY failover, 2 workloads + 2 volumes"),
        "{page}"
    );
    assert!(
        page.contains("| DynamoDB calls per group failover"),
        "{page}"
    );
    assert!(
        page.contains("| added cost of 30.0 ms on every DynamoDB and SQS call of the agents"),
        "{page}"
    );
    // Every CONSISTENCY failover hands off: one latency per measured run without added AWS
    // latency.
    let handoffs = failover_tests::bench::overhead::handoffs(&report).expect("handoff latencies");
    assert_eq!(handoffs.count, 3, "{handoffs:?}");
    assert!(
        page.contains("| handoff latency p50 / p99 (last READY_FOR_PROMOTION record"),
        "{page}"
    );
    assert!(
        page.contains("## Orchestration overhead of a CONSISTENCY failover"),
        "{page}"
    );
    assert!(page.contains("## AWS calls per group failover"), "{page}");
    assert!(page.contains("| 0 ms | 1 | "), "{page}");
    assert!(page.contains("| 100 ms | 1 | "), "{page}");
    // One row per case in the calls table: volumes | latency | failovers.
    for row in ["| 2 | 0 ms | 1 |", "| 2 | 100 ms | 1 |", "| 1 | 0 ms | 1 |"] {
        assert!(page.contains(row), "{row}: {page}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_bench_reports_both_steps_and_the_agents_memory() -> Result<()> {
    init_tracing();
    let env = TestEnv::attach().await?;
    let config = FanoutConfig {
        groups: 3,
        shape: GroupShape {
            deployments: 1,
            statefulsets: 0,
        },
        latency: Duration::ZERO,
        agents: fast_agents(),
        timeout: Duration::from_secs(120),
    };
    let report = Box::pin(run_fanout_bench(&env, &config)).await?;
    assert_eq!(report.one.groups, 1);
    assert_eq!(report.many.groups, 3);
    for step in [&report.one, &report.many] {
        assert!(!step.wall.is_zero(), "{step:?}");
        assert!(step.first <= step.wall, "{step:?}");
        assert_eq!(step.memory.len(), 2, "{step:?}");
        assert!(
            step.memory
                .iter()
                .all(|(_, m)| m.peak_kib >= m.rss_kib && m.rss_kib > 0)
        );
    }
    // VmHWM only grows.
    for ((_, idle), (_, after)) in report.idle_memory.iter().zip(&report.many.memory) {
        assert!(after.peak_kib >= idle.peak_kib, "{report:?}");
    }

    // Merged into a page that already has another section: both stay.
    let mut old_section = fanout_section(&report);
    old_section.key = "handoff".into();
    old_section.summary = vec!["| handoff | x | y | z | met |".into()];
    let old = page::compose(&[old_section], &MachineFacts::default(), "old");
    let merged = page::merge(page::parse(&old), vec![fanout_section(&report)]);
    let page = page::compose(
        &merged,
        &MachineFacts::probe(),
        "cargo test --test bench_smoke",
    );
    assert!(page.contains("| handoff | x | y | z | met |"), "{page}");
    assert!(page.contains("| 3 groups failed over at once"), "{page}");
    assert!(
        page.contains("| agent peak RSS (`VmHWM`) after the 3-group run"),
        "{page}"
    );
    assert!(page.contains("| one group (baseline) | 1 |"), "{page}");
    assert!(page.contains("| all at once | 3 |"), "{page}");
    Ok(())
}
