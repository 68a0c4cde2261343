//! The overhead benchmark's report: the summary rows, the overhead section and the AWS
//! calls section (markdown), and the figures they are made of.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::super::cpu::CpuUse;
use super::super::fleet::GroupShape;
use super::super::probe;
use super::super::stats::{Summary, fmt_count, fmt_latency};
use super::{
    Case, OverheadReport, TARGET_AWS_ADDED, TARGET_AWS_LATENCY, TARGET_HANDOFF_P50,
    TARGET_HANDOFF_P99, TARGET_OVERHEAD, median,
};

fn fmt_latency_setting(d: Duration) -> String {
    if d.is_zero() {
        "0 ms".into()
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The big group's cases (the ones the overhead is about).
fn big_cases(r: &OverheadReport) -> impl Iterator<Item = &Case> {
    r.cases
        .iter()
        .filter(move |c| c.workloads == r.config.workloads && c.aws_latency.is_zero())
}

/// The handoff latencies of every measured run without added AWS latency.
pub fn handoffs(r: &OverheadReport) -> Option<Summary> {
    let samples: Vec<Duration> = r
        .cases
        .iter()
        .filter(|c| c.aws_latency.is_zero())
        .flat_map(|c| c.runs.iter().filter_map(|x| x.handoff))
        .collect();
    Summary::of(&samples)
}

/// The big group's case with AWS latency added, and its baseline: the big group at the same
/// storage latency without (same run, same proxies).
pub fn aws_latency_cases(r: &OverheadReport) -> Option<(&Case, &Case)> {
    let slow = r
        .cases
        .iter()
        .find(|c| c.workloads == r.config.workloads && !c.aws_latency.is_zero())?;
    let base = big_cases(r).find(|c| c.latency == slow.latency)?;
    Some((base, slow))
}

/// The headline: the median overhead of the big group at the first latency.
pub fn headline(r: &OverheadReport) -> Option<&Case> {
    big_cases(r).next()
}

/// Summary rows for the report's overview table (figure | target | measured | baseline |
/// verdict).
pub fn summary_rows(r: &OverheadReport) -> Vec<String> {
    let mut rows = Vec::new();
    let overheads: Vec<String> = big_cases(r)
        .map(|c| {
            format!(
                "{} at storage latency {}",
                fmt_latency(c.median_overhead()),
                fmt_latency_setting(c.latency)
            )
        })
        .collect();
    let worst = big_cases(r).map(Case::median_overhead).max();
    let totals: Vec<String> = big_cases(r)
        .map(|c| {
            format!(
                "total {} at {}",
                fmt_latency(c.median_total()),
                fmt_latency_setting(c.latency)
            )
        })
        .collect();
    rows.push(format!(
        "| orchestration overhead, CONSISTENCY failover, {} workloads + {} volumes (median total − 2 × storage latency) | ≤ {} | {} | {} | {} |",
        r.config.workloads,
        r.config.workloads,
        fmt_latency(TARGET_OVERHEAD),
        overheads.join("; "),
        totals.join("; "),
        verdict(worst.is_some_and(|w| w <= TARGET_OVERHEAD)),
    ));
    if let Some(h) = handoffs(r) {
        rows.push(format!(
            "| handoff latency p50 / p99 (last READY_FOR_PROMOTION record → the target's claim, from the records the agents wrote), {} real failovers | ≤ {} / ≤ {} | {} / {} | – | {} |",
            h.count,
            fmt_latency(TARGET_HANDOFF_P50),
            fmt_latency(TARGET_HANDOFF_P99),
            fmt_latency(h.p50),
            fmt_latency(h.p99),
            verdict(h.p50 <= TARGET_HANDOFF_P50 && h.p99 <= TARGET_HANDOFF_P99),
        ));
    }
    if let Some((base, slow)) = aws_latency_cases(r) {
        let added = slow.median_total().saturating_sub(base.median_total());
        rows.push(format!(
            "| added cost of {} on every DynamoDB and SQS call of the agents (toxiproxy), CONSISTENCY failover, {} workloads + {} volumes (median total with − without) | ≤ {} | +{} (total {}) | total {} without, same run | {} |",
            fmt_latency(slow.aws_latency),
            r.config.workloads,
            r.config.workloads,
            fmt_latency(TARGET_AWS_ADDED),
            fmt_latency(added),
            fmt_latency(slow.median_total()),
            fmt_latency(base.median_total()),
            verdict(slow.aws_latency == TARGET_AWS_LATENCY && added <= TARGET_AWS_ADDED),
        ));
    }
    let per_n: Vec<String> = r
        .cases
        .iter()
        .filter(|c| c.aws_latency.is_zero())
        .map(|c| {
            format!(
                "{} volume(s), {}: {}",
                c.workloads,
                fmt_latency_setting(c.latency),
                fmt_count(r.net_calls(c))
            )
        })
        .collect();
    rows.push(format!(
        "| DynamoDB calls per group failover, both agents, background subtracted | a fixed count + a small constant per volume | {} | idle background {} calls/s | {} |",
        per_n.join("; "),
        fmt_count(r.idle_rate()),
        per_volume(r).map_or_else(
            || "see table".to_owned(),
            |(fixed, per)| format!("≈ {} + {} × volumes", fmt_count(fixed), fmt_count(per))
        ),
    ));
    rows
}

/// Fixed count and per-volume slope of the net calls, from the small and the big group at
/// the first latency.
pub fn per_volume(r: &OverheadReport) -> Option<(f64, f64)> {
    let l0 = r.config.latencies.first()?;
    let small = r
        .cases
        .iter()
        .find(|c| c.workloads == r.config.small_workloads && c.latency == *l0)?;
    let big = r
        .cases
        .iter()
        .find(|c| c.workloads == r.config.workloads && c.latency == *l0)?;
    if big.workloads == small.workloads {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let per = (r.net_calls(big) - r.net_calls(small)) / (big.workloads - small.workloads) as f64;
    #[allow(clippy::cast_precision_loss)]
    let fixed = r.net_calls(small) - per * small.workloads as f64;
    Some((fixed, per))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// The overhead section (markdown, `##` headings).
pub fn overhead_markdown(r: &OverheadReport) -> String {
    let mut out = String::new();
    write_overhead_setup(&mut out, r);
    write_overhead_table(&mut out, r);
    let big: Vec<&Case> = big_cases(r).collect();
    write_slope_and_target(&mut out, r, &big);
    write_aws_latency(&mut out, r);
    if let Some(h) = handoffs(r) {
        let _ = writeln!(
            out,
            "Handoff in the agents (last `READY_FOR_PROMOTION` record written → the target's \
             claim, from the records, as the target's `failover_handoff_latency_seconds` \
             observes it), {} measured failovers without added AWS latency: min {}, p50 {}, \
             p90 {}, p99 {}, max {} (design target p50 ≤ {}, p99 ≤ {}: {}).\n",
            h.count,
            fmt_latency(h.min),
            fmt_latency(h.p50),
            fmt_latency(h.p90),
            fmt_latency(h.p99),
            fmt_latency(h.max),
            fmt_latency(TARGET_HANDOFF_P50),
            fmt_latency(TARGET_HANDOFF_P99),
            verdict(h.p50 <= TARGET_HANDOFF_P50 && h.p99 <= TARGET_HANDOFF_P99),
        );
    }
    write_stage_breakdown(&mut out, &big);
    write_machine(&mut out, &big);
    write_overhead_notes(&mut out);
    out
}

/// A case's storage latency, and the AWS latency added to it if any.
fn case_label(c: &Case) -> String {
    if c.aws_latency.is_zero() {
        fmt_latency_setting(c.latency)
    } else {
        format!(
            "{} (+{} per AWS call)",
            fmt_latency_setting(c.latency),
            fmt_latency(c.aws_latency)
        )
    }
}

/// The case with AWS latency added, beside its baseline.
fn write_aws_latency(out: &mut String, r: &OverheadReport) {
    let Some((base, slow)) = aws_latency_cases(r) else {
        return;
    };
    let added = slow.median_total().saturating_sub(base.median_total());
    let _ = writeln!(
        out,
        "With {} added to every DynamoDB and SQS answer to both agents (a toxiproxy latency \
         toxic on their proxies, standing for a table and queues in another region; the \
         baseline runs through the same proxies without it): median total {} ({} failovers, \
         {} – {}) against {} at storage latency {}, so **+{}** (design target ≤ {} at {}: \
         {}).\n",
        fmt_latency(slow.aws_latency),
        fmt_latency(slow.median_total()),
        slow.runs.len(),
        fmt_latency(slow.runs.iter().map(|x| x.total).min().unwrap_or_default()),
        fmt_latency(slow.runs.iter().map(|x| x.total).max().unwrap_or_default()),
        fmt_latency(base.median_total()),
        fmt_latency_setting(base.latency),
        fmt_latency(added),
        fmt_latency(TARGET_AWS_ADDED),
        fmt_latency(TARGET_AWS_LATENCY),
        verdict(slow.aws_latency == TARGET_AWS_LATENCY && added <= TARGET_AWS_ADDED),
    );
}

/// The heading and what was run: date, processes, group shape.
fn write_overhead_setup(out: &mut String, r: &OverheadReport) {
    let cfg = &r.config;
    out.push_str("## Orchestration overhead of a CONSISTENCY failover\n\n");
    let _ = writeln!(
        out,
        "- date: {}; run took {}; load average before {} / after {}",
        r.started_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        fmt_latency(r.wall),
        r.load.0.as_deref().unwrap_or("?"),
        r.load.1.as_deref().unwrap_or("?"),
    );
    let _ = writeln!(
        out,
        "- real processes: 2 × `failover-agent` (heartbeat {}, re-read {}), `failover-storage-sim` per namespace, kube-apiservers east/west (kwok), moto; one fresh table",
        humantime::format_duration(cfg.agents.heartbeat_interval),
        humantime::format_duration(cfg.agents.reread_interval),
    );
    let _ = writeln!(
        out,
        "- group: {} workloads ({} Deployments + {} StatefulSets, 1 replica each) and {} VolumeReplications (+ PVCs) in both clusters; {} measured failovers per row after 1 warm-up, alternating east → west / west → east",
        cfg.workloads,
        GroupShape::mixed(cfg.workloads).deployments,
        GroupShape::mixed(cfg.workloads).statefulsets,
        cfg.workloads,
        cfg.runs
    );
    out.push('\n');
}

/// One row per storage latency of the big cases: totals, subtraction and overhead.
fn write_overhead_table(out: &mut String, r: &OverheadReport) {
    out.push_str(
        "| storage latency (per transition) | failovers | total: median (min – max) | warm-up total | 2 × latency subtracted | overhead (median) | agents' `timings.totalMs` (median) |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in big_cases(r) {
        let min = c.runs.iter().map(|x| x.total).min().unwrap_or_default();
        let max = c.runs.iter().map(|x| x.total).max().unwrap_or_default();
        let agent = median(c.runs.iter().filter_map(|x| x.agent_total).collect());
        let _ = writeln!(
            out,
            "| {} | {} | {} ({} – {}) | {} | {} | {} | {} |",
            fmt_latency_setting(c.latency),
            c.runs.len(),
            fmt_latency(c.median_total()),
            fmt_latency(min),
            fmt_latency(max),
            fmt_latency(c.warmup),
            fmt_latency(c.latency * 2),
            fmt_latency(c.median_overhead()),
            fmt_latency(agent),
        );
    }
    out.push('\n');
}

/// The measured slope of the total over the storage latency, and the design target's
/// verdict.
fn write_slope_and_target(out: &mut String, r: &OverheadReport, big: &[&Case]) {
    if let (Some(first), Some(last)) = (big.first(), big.last())
        && last.latency > first.latency
    {
        let slope = (last.median_total().as_secs_f64() - first.median_total().as_secs_f64())
            / (last.latency - first.latency).as_secs_f64();
        let _ = writeln!(
            out,
            "Measured slope of the median total over the storage latency: {slope:.2} (the subtraction assumes 2: one demotion, then one promotion, each group's volumes in parallel).\n"
        );
    }
    if let Some(c) = headline(r) {
        let _ = writeln!(
            out,
            "Design §7 target: overhead ≤ {} ({} at storage latency {}: {}).\n",
            fmt_latency(TARGET_OVERHEAD),
            fmt_latency(c.median_overhead()),
            fmt_latency_setting(c.latency),
            verdict(big.iter().all(|c| c.median_overhead() <= TARGET_OVERHEAD)),
        );
    }
}

/// Stage breakdown, medians over the runs of each big case (nothing when no run reported
/// stages).
fn write_stage_breakdown(out: &mut String, big: &[&Case]) {
    let mut labels: Vec<String> = big
        .iter()
        .flat_map(|c| {
            c.runs
                .iter()
                .flat_map(|x| x.stages_ms.keys().map(|k| stage_label(k)))
        })
        .collect();
    labels.sort_by_key(|l| {
        (
            STAGE_ORDER
                .iter()
                .position(|s| s == l)
                .unwrap_or(STAGE_ORDER.len()),
            l.clone(),
        )
    });
    labels.dedup();
    if labels.is_empty() {
        return;
    }
    out.push_str(
        "Where the time goes: the agents' `timings.stagesMs`, median per stage (a stage of \
         both sides shows the longer side; the two sides' stages overlap, so they do not \
         add up to the total):\n\n",
    );
    out.push_str("| stage |");
    for c in big {
        let _ = write!(out, " latency {} |", fmt_latency_setting(c.latency));
    }
    out.push_str("\n|---|");
    for _ in big {
        out.push_str("---:|");
    }
    out.push('\n');
    for label in &labels {
        let _ = write!(out, "| {label} |");
        for c in big {
            let v = median(
                c.runs
                    .iter()
                    .filter_map(|x| stage_value(&x.stages_ms, label).map(Duration::from_millis))
                    .collect(),
            );
            let _ = write!(out, " {} |", fmt_latency(v));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// How busy the machine was during the measured failovers: the overhead includes waiting
/// for CPU that the API servers, moto and the controllers share.
fn write_machine(out: &mut String, big: &[&Case]) {
    for c in big {
        let mut used: Vec<&CpuUse> = c.runs.iter().filter_map(|r| r.cpu.as_ref()).collect();
        if used.is_empty() {
            continue;
        }
        used.sort_by(|a, b| a.busy_share().total_cmp(&b.busy_share()));
        let mid = used[used.len() / 2];
        let _ = writeln!(
            out,
            "The machine during the failovers at latency {} (start → target active; `/proc/stat`, `/proc/<pid>/stat`): busy {:.0} % to {:.0} % of its {} cores; the median run used {} ({}).\n",
            fmt_latency_setting(c.latency),
            used[0].busy_share() * 100.0,
            used[used.len() - 1].busy_share() * 100.0,
            mid.cores,
            mid.summary(),
            mid.components_cell(),
        );
    }
}

/// How the section's numbers were measured and what they leave out.
fn write_overhead_notes(out: &mut String) {
    out.push_str("Notes:\n\n");
    out.push_str(
        "- total: wall time from just before the coordinator's `start_operation` transaction \
         (followed by `OperationStarted` to both inboxes, as `failoverctl failover` does) to \
         the first consistent read of the group state showing the target active with no \
         operation in flight (read every 20 ms).\n",
    );
    out.push_str(
        "- subtracted: 2 × the simulated storage latency, the demotion on the source and the \
         promotion on the target that a CONSISTENCY failover must wait for one after the \
         other. Not subtracted: pod start and stop (kwok's default stages add no delay, but \
         the real kube-controller-manager, scheduler and kwok need their time), the storage \
         simulator's reaction (a watch event and two status writes per transition), moto's \
         and the apiservers' response times. The overhead is therefore an upper bound of \
         what the agents add.\n",
    );
    out.push_str(
        "- the agents' own `timings.totalMs` starts when an agent picks the operation up, so \
         it excludes the start transaction and the notification.\n",
    );
}

/// The stages of a CONSISTENCY failover, in order.
const STAGE_ORDER: [&str; 6] = [
    "Initialization",
    "SourceShutdown",
    "VolumeTransitionSource",
    "VolumeTransitionTarget",
    "TargetActivation",
    "Completion",
];

/// A `timings.stagesMs` key without its cluster (`east/SourceShutdown` → `SourceShutdown`):
/// the report folds the two directions into one row per stage.
fn stage_label(key: &str) -> String {
    key.rsplit_once('/').map_or(key, |(_, s)| s).to_owned()
}

/// A stage's time in one run: the longest of its keys (a stage that runs on both sides,
/// such as `Initialization`, shows the longer side).
fn stage_value(stages: &BTreeMap<String, u64>, label: &str) -> Option<u64> {
    stages
        .iter()
        .filter(|(k, _)| stage_label(k) == label)
        .map(|(_, v)| *v)
        .max()
}

/// The AWS calls section.
pub fn calls_markdown(r: &OverheadReport) -> String {
    let mut out = String::new();
    out.push_str("## AWS calls per group failover\n\n");
    let _ = writeln!(
        out,
        "Both agents' `/metrics` scraped before and after each measured failover of the overhead runs above (same processes); idle background measured right after over {} with no operation: {} DynamoDB calls ({} calls/s, both agents: {}).\n",
        fmt_latency(r.idle_window),
        r.idle.aws_total(),
        fmt_count(r.idle_rate()),
        breakdown(&r.idle.aws_calls, 1.0),
    );
    out.push_str(
        "| volumes (= workloads) | storage latency | failovers | scrape window (mean) | DynamoDB calls / failover (raw) | background subtracted | net | by store operation / API (raw, per failover) | inbox messages handled / failover | SQS calls / failover, by API (raw) | coordinator |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|\n");
    for c in &r.cases {
        let (aws, sqs) = c.mean_calls();
        let bg = r.idle_rate() * c.mean_window().as_secs_f64();
        let mut merged = probe::Counters::new();
        let mut sqs_calls = probe::Counters::new();
        for run in &c.runs {
            for (k, v) in &run.calls.aws_calls {
                *merged.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &run.calls.sqs_calls {
                *sqs_calls.entry(k.clone()).or_default() += v;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let n = c.runs.len().max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let coord = c.runs.iter().map(|x| x.coordinator_calls).sum::<u64>() as f64 / n;
        #[allow(clippy::cast_precision_loss)]
        let sqs_per = sqs_calls.values().sum::<u64>() as f64 / n;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}: {} | {} DynamoDB + 2 SendMessage |",
            c.workloads,
            case_label(c),
            c.runs.len(),
            fmt_latency(c.mean_window()),
            fmt_count(aws),
            fmt_count(bg),
            fmt_count(r.net_calls(c)),
            breakdown(&merged, n),
            fmt_count(sqs),
            fmt_count(sqs_per),
            breakdown(&sqs_calls, n),
            fmt_count(coord),
        );
    }
    out.push('\n');
    if let Some((fixed, per)) = per_volume(r) {
        let _ = writeln!(
            out,
            "Fit from the {}-volume and {}-volume rows at the same latency: ≈ {} + {} × volumes DynamoDB calls per failover (both agents). Rows at different storage latencies with the same volumes show whether waiting longer costs calls (a polling loop would).\n",
            r.config.small_workloads,
            r.config.workloads,
            fmt_count(fixed),
            fmt_count(per),
        );
    }
    out.push_str("Notes:\n\n");
    out.push_str(
        "- counted: `failover_aws_calls_total{operation, api, outcome}` (outcomes summed), every \
         DynamoDB call attempt of the agents (retries included). SQS: \
         `failover_sqs_calls_total{api, outcome}` (outcomes summed), every SQS call of the \
         agents: the notifications they send, their `ReceiveMessage` long polls (time-bound: \
         one 20 s poll at a time while idle, one more after each message) and the \
         `DeleteMessage` of each handled message; `failover_sqs_messages_total` counts the \
         messages handled.\n",
    );
    out.push_str(
        "- background subtracted: the idle rate (both agents, no operation in flight) × the \
         run's scrape window. The window includes waiting for both agents to finish their \
         side, so it is longer than the failover.\n",
    );
    out
}

#[allow(clippy::cast_precision_loss)]
fn breakdown(counters: &probe::Counters, per: f64) -> String {
    let mut v: Vec<(&String, &u64)> = counters.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{} {k}", fmt_count(**n as f64 / per)))
        .collect::<Vec<_>>()
        .join(", ")
}
