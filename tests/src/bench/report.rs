//! The benchmark report: a markdown page with the run's facts (date, machine, moto
//! endpoint, the command that reproduces it) and one table row per target side.

use std::fmt::Write as _;
use std::time::Duration;

use super::handoff::{HandoffReport, STAGGER, SideResult, TargetSide};
use super::stats::{Summary, fmt_count, fmt_interval, fmt_latency, fmt_ratio};

/// Design §7 target for the handoff latency: p50.
pub const TARGET_P50: Duration = Duration::from_millis(50);
/// Design §7 target for the handoff latency: p99.
pub const TARGET_P99: Duration = Duration::from_millis(250);

/// What the report says about the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// Logical CPUs this process may use (what `nproc` prints).
    pub nproc: usize,
    /// CPU model (`/proc/cpuinfo`), when known.
    pub cpu: Option<String>,
    /// Total memory (`/proc/meminfo`), when known.
    pub memory: Option<String>,
    /// Operating system and kernel release, when known.
    pub os: Option<String>,
}

impl MachineFacts {
    /// Reads the facts of this machine.
    pub fn probe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let cpu = read("/proc/cpuinfo").and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        });
        let memory = read("/proc/meminfo").and_then(|t| {
            let kib: u64 = t
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            #[allow(clippy::cast_precision_loss)]
            let gib = kib as f64 / (1024.0 * 1024.0);
            Some(format!("{gib:.1} GiB"))
        });
        let os = read("/proc/sys/kernel/osrelease")
            .map(|r| format!("{} {}", std::env::consts::OS, r.trim()));
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory,
            os,
        }
    }
}

/// The row label of a side.
pub fn side_label(side: &TargetSide) -> String {
    match side {
        TargetSide::EventDriven {
            receive_wait_seconds,
        } => format!("event-driven (SQS long poll {receive_wait_seconds} s)"),
        TargetSide::Polling { interval } => format!("polling every {}", fmt_interval(*interval)),
    }
}

/// Calls per handoff by API, in a fixed order: `1 UpdateItem + 1.01 ReceiveMessage …`.
fn calls_breakdown(side: &SideResult) -> String {
    const ORDER: [&str; 7] = [
        "UpdateItem",
        "TransactWriteItems",
        "SendMessage",
        "ReceiveMessage",
        "DeleteMessage",
        "GetItem",
        "Query",
    ];
    let mut apis: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|a| side.calls.contains_key(*a))
        .collect();
    apis.extend(
        side.calls
            .keys()
            .map(String::as_str)
            .filter(|a| !ORDER.contains(a)),
    );
    apis.iter()
        .filter(|a| side.calls.get(**a).is_some_and(|n| *n > 0))
        .map(|a| format!("{} {a}", fmt_count(side.api_calls_per_handoff(Some(a)))))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The markdown table alone (header and one row per side).
pub fn table(report: &HandoffReport) -> String {
    let ours = report
        .sides
        .iter()
        .find(|s| matches!(s.side, TargetSide::EventDriven { .. }))
        .and_then(|s| Summary::of(&s.latencies));
    let mut out = String::new();
    out.push_str(
        "| target side | handoffs | p50 | p90 | p99 | max | AWS calls / handoff | by API, per handoff | p50 vs event-driven |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for side in &report.sides {
        let Some(s) = Summary::of(&side.latencies) else {
            continue;
        };
        let ratio = match (&side.side, ours) {
            (TargetSide::EventDriven { .. }, _) => "1 (ours)".to_owned(),
            (_, Some(o)) => format!("{} slower", fmt_ratio(s.p50, o.p50)),
            (_, None) => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            side_label(&side.side),
            s.count,
            fmt_latency(s.p50),
            fmt_latency(s.p90),
            fmt_latency(s.p99),
            fmt_latency(s.max),
            fmt_count(side.calls_per_handoff()),
            calls_breakdown(side),
            ratio,
        );
    }
    out
}

/// The whole report page.
pub fn markdown(report: &HandoffReport, machine: &MachineFacts, command: &str) -> String {
    let mut out = String::new();
    write_setup(&mut out, report, machine, command);
    out.push_str(
        "Latency: from the moment `mark_all_ready` returned (all `READY_FOR_PROMOTION` records \
         durable, one epoch-conditioned transaction) to the moment the target's strongly \
         consistent query confirmed every volume READY at the operation's epoch.\n\n",
    );
    out.push_str(&table(report));
    out.push('\n');
    write_target(&mut out, report);
    write_notes(&mut out, report);
    out
}

/// The heading and what was run: date, machine, AWS endpoint, handoffs, command.
fn write_setup(out: &mut String, report: &HandoffReport, machine: &MachineFacts, command: &str) {
    let cfg = &report.config;
    out.push_str("# Handoff latency benchmark\n\n");
    let _ = writeln!(
        out,
        "- date: {}",
        report.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
    let mut m = format!("- machine: nproc {}", machine.nproc);
    for fact in [&machine.cpu, &machine.memory, &machine.os]
        .into_iter()
        .flatten()
    {
        let _ = write!(m, ", {fact}");
    }
    out.push_str(&m);
    out.push('\n');
    let _ = writeln!(
        out,
        "- AWS: moto at {} (DynamoDB + SQS on loopback, region {}); one table per handoff, `{}-*`, deleted after the run",
        report.endpoint_url, report.region, report.table_prefix
    );
    let _ = writeln!(
        out,
        "- handoffs: {} per target side, {} volume(s) each, source work before the write {}; run took {}",
        cfg.handoffs,
        cfg.volumes,
        fmt_latency(cfg.source_work),
        fmt_latency(report.wall),
    );
    let _ = writeln!(out, "- reproduce: `{command}`");
    out.push('\n');
}

/// The design target's verdict for the event-driven side (nothing without one).
fn write_target(out: &mut String, report: &HandoffReport) {
    if let Some(ours) = report
        .sides
        .iter()
        .find(|s| matches!(s.side, TargetSide::EventDriven { .. }))
        .and_then(|s| Summary::of(&s.latencies))
    {
        let verdict = |v: Duration, limit: Duration| if v <= limit { "met" } else { "NOT met" };
        let _ = writeln!(
            out,
            "Design §7 target (event-driven): p50 ≤ {} ({}: {}), p99 ≤ {} ({}: {}).\n",
            fmt_latency(TARGET_P50),
            fmt_latency(ours.p50),
            verdict(ours.p50, TARGET_P50),
            fmt_latency(TARGET_P99),
            fmt_latency(ours.p99),
            verdict(ours.p99, TARGET_P99),
        );
    }
}

/// How the rows were measured, what they leave out, and the run's caveats.
fn write_notes(out: &mut String, report: &HandoffReport) {
    out.push_str("Notes:\n\n");
    out.push_str(
        "- Event-driven handoffs run one after another (each its own group and operation), after \
         one unmeasured warm-up. The target task long-polls its inbox, re-reads the handoff \
         records on the `ReadyForPromotion` message and then deletes it.\n",
    );
    let _ = writeln!(
        out,
        "- Polling baselines: one source and one poller task per handoff, all concurrent, their \
         starts {} apart. From its handoff's start, the poller reads at a uniformly random \
         phase and then every interval; the source writes at a uniformly random moment within \
         the first interval (after the source work), so the two are independent. The poller's \
         reads before the write count as calls: they are what waiting costs.",
        fmt_interval(STAGGER)
    );
    out.push_str(
        "- AWS calls count every attempt on the handoff path (source and target): DynamoDB from \
         the store's `CallCounter`, SQS `SendMessage` / `ReceiveMessage` (empty long polls \
         included) / `DeleteMessage` counted around each inbox call. Queue URLs are cached \
         after the warm-up. The coordinator's setup (`register_group` + `start_operation`) is \
         not in the rows: ",
    );
    #[allow(clippy::cast_precision_loss)]
    let setup = report.setup_calls as f64 / report.setup_handoffs.max(1) as f64;
    let _ = writeln!(out, "{} calls per handoff.", fmt_count(setup));
    out.push_str(
        "- While nothing happens, the event-driven target costs one `ReceiveMessage` per 20 s \
         per cluster, whatever the number of groups; a poller costs one `Query` per interval \
         per watched operation.\n",
    );
    for side in &report.sides {
        if side.early > 0 || side.failed_reads > 0 {
            let _ = writeln!(
                out,
                "- {}: {} read(s) saw the records before `mark_all_ready` returned (counted as 0), {} target read(s) failed.",
                side_label(&side.side),
                side.early,
                side.failed_reads
            );
        }
    }
    if report.config.handoffs < 200 {
        let _ = writeln!(
            out,
            "- Only {} handoffs per side: percentiles above p90 are not meaningful.",
            report.config.handoffs
        );
    }
    out.push_str(
        "- Each handoff has its own small table, so concurrent handoffs do not queue on one \
         table inside moto (an emulator artefact).\n",
    );
    out.push_str(
        "- moto on loopback has no network round trip; against AWS in one region every call adds \
         a few milliseconds, the polling rows do not change materially.\n",
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::handoff::HandoffBenchConfig;

    fn side(side: TargetSide, ms: &[u64], calls: &[(&str, u64)]) -> SideResult {
        SideResult {
            side,
            latencies: ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            calls: calls
                .iter()
                .map(|(a, n)| ((*a).to_owned(), *n))
                .collect::<BTreeMap<_, _>>(),
            early: 0,
            failed_reads: 0,
            wall: Duration::from_secs(1),
        }
    }

    #[test]
    fn renders_one_row_per_side_with_ratio() {
        let report = HandoffReport {
            config: HandoffBenchConfig {
                handoffs: 2,
                ..HandoffBenchConfig::default()
            },
            endpoint_url: "http://127.0.0.1:5055".into(),
            region: "us-east-1".into(),
            table_prefix: "bench-t".into(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            wall: Duration::from_secs(3),
            setup_calls: 8,
            setup_handoffs: 2,
            sides: vec![
                side(
                    TargetSide::EventDriven {
                        receive_wait_seconds: 20,
                    },
                    &[10, 20],
                    &[
                        ("TransactWriteItems", 2),
                        ("Query", 2),
                        ("SendMessage", 2),
                        ("ReceiveMessage", 3),
                        ("DeleteMessage", 2),
                    ],
                ),
                side(
                    TargetSide::Polling {
                        interval: Duration::from_secs(30),
                    },
                    &[15_000, 20_000],
                    &[("TransactWriteItems", 2), ("Query", 3)],
                ),
            ],
        };
        let page = markdown(&report, &MachineFacts::default(), "make bench");
        assert!(page.contains("date: 1970-01-01 00:00:00 UTC"), "{page}");
        assert!(page.contains("reproduce: `make bench`"), "{page}");
        assert!(
            page.contains(
                "| event-driven (SQS long poll 20 s) | 2 | 10.0 ms | 20.0 ms | 20.0 ms | 20.0 ms | 5.50 | \
                 1 TransactWriteItems + 1 SendMessage + 1.50 ReceiveMessage + 1 DeleteMessage + 1 Query | 1 (ours) |"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                "| polling every 30 s | 2 | 15.0 s | 20.0 s | 20.0 s | 20.0 s | 2.50 | 1 TransactWriteItems + 1.50 Query | ×1500 slower |"
            ),
            "{page}"
        );
        assert!(page.contains("4 calls per handoff"), "{page}");
        assert!(page.contains("p50 ≤ 50.0 ms (10.0 ms: met)"), "{page}");
    }
}
