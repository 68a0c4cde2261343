//! The whole `make bench` report: one overview table of the design §7 figures, then one
//! section per benchmark. Each section is delimited by HTML comments and carries its
//! overview rows, so a subcommand that measures one figure rewrites its own section and
//! keeps the others of an earlier run (each section says when it was measured).

use std::fmt::Write as _;

use super::handoff::{HandoffReport, TargetSide};
use super::report::{MachineFacts, TARGET_P50, TARGET_P99, markdown};
use super::stats::{Summary, fmt_interval, fmt_latency};

/// The sections in the order the page shows them.
pub const ORDER: [&str; 4] = ["handoff", "overhead", "aws-calls", "fanout"];

const BEGIN: &str = "<!-- bench-section: ";
const END: &str = "<!-- /bench-section: ";
const ROW: &str = "<!-- summary-row: ";

/// One benchmark's part of the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// One of [`ORDER`].
    pub key: String,
    /// Rows of the overview table (`| figure | target | measured | baseline | verdict |`).
    pub summary: Vec<String>,
    /// The markdown body (`##` heading first).
    pub body: String,
}

impl Section {
    /// The section as stored in the page.
    fn render(&self) -> String {
        let mut out = format!("{BEGIN}{} -->\n", self.key);
        for row in &self.summary {
            let _ = writeln!(out, "{ROW}{} -->", row.replace("-->", "→"));
        }
        out.push_str(self.body.trim_end());
        let _ = writeln!(out, "\n{END}{} -->", self.key);
        out
    }
}

/// The sections of a page written by [`compose`] (an older page without markers has none).
pub fn parse(page: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut current: Option<Section> = None;
    for line in page.lines() {
        if let Some(key) = line
            .strip_prefix(BEGIN)
            .and_then(|r| r.strip_suffix(" -->"))
        {
            current = Some(Section {
                key: key.to_owned(),
                summary: Vec::new(),
                body: String::new(),
            });
        } else if line.starts_with(END) {
            if let Some(s) = current.take() {
                out.push(s);
            }
        } else if let Some(s) = current.as_mut() {
            if let Some(row) = line.strip_prefix(ROW).and_then(|r| r.strip_suffix(" -->")) {
                s.summary.push(row.to_owned());
            } else {
                s.body.push_str(line);
                s.body.push('\n');
            }
        }
    }
    out
}

/// `old` with every section of `new` replacing the one of the same key.
pub fn merge(old: Vec<Section>, new: Vec<Section>) -> Vec<Section> {
    let mut out: Vec<Section> = old
        .into_iter()
        .filter(|o| new.iter().all(|n| n.key != o.key))
        .collect();
    out.extend(new);
    out.sort_by_key(|s| {
        ORDER
            .iter()
            .position(|k| *k == s.key)
            .unwrap_or(ORDER.len())
    });
    out
}

/// The page: title, facts of this invocation, the overview table, the sections.
pub fn compose(sections: &[Section], machine: &MachineFacts, command: &str) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks (`make bench`)\n\n");
    let _ = writeln!(
        out,
        "- written: {}",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC")
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
    let _ = writeln!(out, "- last command: `{command}`");
    out.push_str("- each section below names when it was measured; every figure's baseline comes from the same run as the figure\n\n");
    out.push_str("| figure (design §7) | target | measured | baseline, same run | verdict |\n");
    out.push_str("|---|---|---|---|---|\n");
    for s in sections {
        for row in &s.summary {
            out.push_str(row);
            out.push('\n');
        }
    }
    out.push('\n');
    for s in sections {
        out.push_str(&s.render());
        out.push('\n');
    }
    out
}

/// The handoff benchmark as a section: its page with a `##` heading, and its overview row.
pub fn handoff_section(report: &HandoffReport, machine: &MachineFacts, command: &str) -> Section {
    let page = markdown(report, machine, command);
    let body = page.replacen("# Handoff latency benchmark", "## Handoff latency", 1);
    let ours = report
        .sides
        .iter()
        .find(|s| matches!(s.side, TargetSide::EventDriven { .. }))
        .and_then(|s| Summary::of(&s.latencies));
    let baselines: Vec<String> = report
        .sides
        .iter()
        .filter_map(|s| match s.side {
            TargetSide::Polling { interval } => Summary::of(&s.latencies).map(|x| {
                format!(
                    "polling every {}: {} / {}",
                    fmt_interval(interval),
                    fmt_latency(x.p50),
                    fmt_latency(x.p99)
                )
            }),
            TargetSide::EventDriven { .. } => None,
        })
        .collect();
    let row = ours.map(|o| {
        let met = o.p50 <= TARGET_P50 && o.p99 <= TARGET_P99;
        format!(
            "| handoff latency p50 / p99 (READY_FOR_PROMOTION durable → target confirmed), {} handoffs | ≤ {} / ≤ {} | {} / {} | {} | {} |",
            o.count,
            fmt_latency(TARGET_P50),
            fmt_latency(TARGET_P99),
            fmt_latency(o.p50),
            fmt_latency(o.p99),
            baselines.join("; "),
            if met { "met" } else { "NOT met" },
        )
    });
    Section {
        key: "handoff".into(),
        summary: row.into_iter().collect(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(key: &str, row: &str) -> Section {
        Section {
            key: key.into(),
            summary: vec![format!("| {row} | x | y | z | met |")],
            body: format!("## {key}\n\nbody of {key}\n"),
        }
    }

    #[test]
    fn sections_survive_a_round_trip_and_merge_by_key() {
        let page = compose(
            &[section("handoff", "h"), section("fanout", "f")],
            &MachineFacts::default(),
            "make bench",
        );
        assert!(
            page.contains("| h | x | y | z | met |\n| f | x | y | z | met |"),
            "{page}"
        );
        let parsed = parse(&page);
        assert_eq!(
            parsed,
            vec![section("handoff", "h"), section("fanout", "f")]
        );
        let merged = merge(
            parsed,
            vec![section("overhead", "o"), section("fanout", "F")],
        );
        let keys: Vec<&str> = merged.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["handoff", "overhead", "fanout"]);
        assert_eq!(merged[2].summary[0], "| F | x | y | z | met |");
    }
}
