//! Smoke test of the handoff latency benchmark (`failover-bench handoff`) against moto:
//! a few handoffs per side, short pollers, and checks of the report's shape and of the
//! call counts. No timing thresholds: latencies only have to be positive.

use std::time::Duration;

use anyhow::Result;
use failover_tests::aws::moto;
use failover_tests::bench::{
    HandoffBenchConfig, MachineFacts, TargetSide, markdown, run_handoff_bench,
};

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
        // One ready transaction per handoff, on every side.
        about(side, "TransactWriteItems", 5);
    }

    // Event-driven: every latency is positive (the read follows the notification), and the
    // calls are a small constant per handoff: 1 transaction, 1 send, 1 receive (the 1.5 s
    // wait fits in one long poll), 1 query, 1 delete, plus at most one receive in flight.
    // (Pollers may see a transaction half-applied in moto and fail a read; the event-driven
    // target reads only after the transaction returned.)
    let ours = &report.sides[0];
    assert!(ours.latencies.iter().all(|l| !l.is_zero()), "{ours:?}");
    assert_eq!(ours.failed_reads, 0, "{ours:?}");
    for api in ["SendMessage", "DeleteMessage", "Query"] {
        about(ours, api, 5);
    }
    // Receives are counted when issued: the long poll already open when the counters were
    // reset after the warm-up delivers the first measured message uncounted, and the next
    // poll may or may not be issued before the counters are read: 4 to 6 are all right.
    let receives = ours.calls.get("ReceiveMessage").copied().unwrap_or(0);
    assert!(
        (4..=6).contains(&receives),
        "ReceiveMessage: {receives} calls: {ours:?}"
    );
    assert!(ours.calls_per_handoff() <= 6.0, "{ours:?}");

    // A poller pays for the source's 1.5 s of work with reads: at 1 s that is at least one
    // read before the write and one after it.
    let poll_1s = &report.sides[1];
    assert!(
        poll_1s.api_calls_per_handoff(Some("Query")) >= 2.0,
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
