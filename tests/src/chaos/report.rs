//! What a chaos run found, and its markdown report (pure: built from the records the run
//! kept, unit-tested on made-up ones).

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use failover_messages::records::Phase;

use super::schedule::{FaultClass, OpPlan, secs};

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It reached this terminal phase on its own.
    Closed(Phase),
    /// It ended `Failed` with the group still named, and the run aborted it to go on.
    FailedThenAborted,
    /// Not terminal by its deadline (a violation); its phase then.
    Stuck(Option<Phase>),
    /// `failoverctl failover` did not start it (a violation); what it said.
    NotStarted(String),
}

impl Outcome {
    /// The row of "operations by outcome".
    pub fn label(&self) -> String {
        match self {
            Outcome::Closed(p) => p.to_string(),
            Outcome::FailedThenAborted => "Failed, then aborted by the run".to_owned(),
            Outcome::Stuck(_) => "stuck (not terminal by its deadline)".to_owned(),
            Outcome::NotStarted(_) => "not started".to_owned(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Stuck(Some(p)) => write!(f, "stuck in {p}"),
            Outcome::NotStarted(why) => write!(f, "not started: {why}"),
            other => f.write_str(&other.label()),
        }
    }
}

/// What `failoverctl abort` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortAnswer {
    /// Exit 0: the abort was granted.
    Accepted,
    /// Exit 3: refused (the promotion was claimed, or the operation had closed).
    Refused,
    /// Not sent: the operation ended before its time.
    Late,
    /// Anything else (a violation).
    Error(String),
}

impl fmt::Display for AbortAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortAnswer::Accepted => f.write_str("accepted"),
            AbortAnswer::Refused => f.write_str("refused"),
            AbortAnswer::Late => f.write_str("not sent (ended before)"),
            AbortAnswer::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// One operation as it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// What the seed planned (index 0: the baseline).
    pub plan: OpPlan,
    /// The group, `<namespace>/<name>`.
    pub group: String,
    /// Source and target cluster.
    pub from: String,
    /// Target cluster.
    pub to: String,
    /// The operation's id (`None`: not started).
    pub op_id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// From its start to its terminal phase.
    pub duration: Option<Duration>,
    /// The abort's answer, when the plan aborts it.
    pub abort: Option<AbortAnswer>,
    /// Which of the plan's faults were applied (the others fell after the operation ended).
    pub applied: Vec<usize>,
    /// The failpoint crashes seen during it (`<cluster>: failpoint …: crash`).
    pub crashes: Vec<String>,
    /// Agents that failed their start-up checks during it and were started again
    /// (`<cluster>: <error line>`).
    pub startup_failures: Vec<String>,
    /// What went wrong during it or was first seen after it (violations).
    pub problems: Vec<String>,
}

impl OpRecord {
    /// The classes of the faults applied.
    pub fn applied_classes(&self) -> impl Iterator<Item = FaultClass> + '_ {
        self.applied
            .iter()
            .map(|i| self.plan.faults[*i].kind.class())
    }
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Operations asked for.
    pub ops: usize,
    /// The groups, `<namespace>/<name>`.
    pub groups: Vec<String>,
    /// How the agents ran, in words.
    pub settings: String,
    /// The operation run first, without faults.
    pub baseline: Option<OpRecord>,
    /// The seeded operations, in order.
    pub records: Vec<OpRecord>,
    /// Problems seen only at the end of the run.
    pub final_problems: Vec<String>,
    /// Why the run stopped early, when it did (the harness's own failure).
    pub error: Option<String>,
    /// When it started (UTC, as text).
    pub started: String,
    /// How long it took.
    pub wall: Duration,
    /// Where the processes' logs are (markdown).
    pub logs: String,
}

impl RunReport {
    /// Every violation: `(where, what)`.
    pub fn violations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in self.baseline.iter().chain(&self.records) {
            let at = op_name(r.plan.index);
            out.extend(r.problems.iter().map(|p| (at.clone(), p.clone())));
        }
        out.extend(
            self.final_problems
                .iter()
                .map(|p| ("end of run".to_owned(), p.clone())),
        );
        out
    }

    /// Faults applied across the seeded operations.
    pub fn faults_applied(&self) -> usize {
        self.records.iter().map(|r| r.applied.len()).sum()
    }

    /// The last line on stdout.
    pub fn summary_line(&self) -> String {
        format!(
            "chaos: {} operations, {} faults, {} violations",
            self.records.len(),
            self.faults_applied(),
            self.violations().len()
        )
    }

    /// 0 clean, 1 with violations, 2 when the run itself failed.
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() {
            2
        } else if self.violations().is_empty() {
            0
        } else {
            1
        }
    }

    /// The reference duration (the fastest of the baseline and the un-faulted seeded
    /// operations that succeeded), the slowest seeded operation that succeeded, and what the
    /// faults added to it.
    pub fn worst_added_latency(&self) -> Option<(Duration, &OpRecord, Duration)> {
        let succeeded = |r: &&OpRecord| r.outcome == Outcome::Closed(Phase::Succeeded);
        let reference = self
            .baseline
            .iter()
            .chain(self.records.iter().filter(|r| r.applied.is_empty()))
            .filter(succeeded)
            .filter_map(|r| r.duration)
            .min()?;
        let slowest = self
            .records
            .iter()
            .filter(succeeded)
            .filter(|r| r.duration.is_some())
            .max_by_key(|r| r.duration)?;
        let added = slowest.duration?.saturating_sub(reference);
        Some((reference, slowest, added))
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.write_head(&mut s);
        self.write_outcomes(&mut s);
        self.write_faults(&mut s);
        self.write_violations(&mut s);
        self.write_operations(&mut s);
        self.write_schedule(&mut s);
        s
    }

    fn write_head(&self, s: &mut String) {
        let planned: usize = self.records.iter().map(|r| r.plan.faults.len()).sum();
        let _ = writeln!(s, "# Chaos run, seed {}\n", self.seed);
        let _ = writeln!(
            s,
            "`make chaos SEED={} OPS={}` replays this schedule: the same operations and the same \
             faults in the same order at the same times from each operation's start.\n",
            self.seed, self.ops
        );
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| started | {} |", self.started);
        let _ = writeln!(s, "| wall time | {} |", minutes(self.wall));
        let _ = writeln!(
            s,
            "| operations | {} of {} (after a baseline without faults) on {} groups: {} |",
            self.records.len(),
            self.ops,
            self.groups.len(),
            self.groups.join(", ")
        );
        let _ = writeln!(
            s,
            "| faults | {} applied of {planned} planned (the others fell after their operation ended) |",
            self.faults_applied()
        );
        let _ = writeln!(s, "| violations | {} |", self.violations().len());
        let latency = match self.worst_added_latency() {
            Some((reference, slowest, added)) => format!(
                "{} (operation {}: {} against {} for the fastest without faults)",
                secs(added),
                slowest.plan.index,
                secs(slowest.duration.unwrap_or_default()),
                secs(reference)
            ),
            None => "n/a (no operation succeeded)".to_owned(),
        };
        let _ = writeln!(s, "| worst added latency | {latency} |");
        let _ = writeln!(s, "| agents | {} |", self.settings);
        let _ = writeln!(s, "| logs | {} |", self.logs);
        if let Some(e) = &self.error {
            let _ = writeln!(s, "\n**The run stopped early:** {e}");
        }
    }

    fn write_outcomes(&self, s: &mut String) {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for r in &self.records {
            *by.entry(r.outcome.label()).or_default() += 1;
        }
        let aborts = |want: fn(&AbortAnswer) -> bool| {
            self.records
                .iter()
                .filter(|r| r.abort.as_ref().is_some_and(want))
                .count()
        };
        let _ = writeln!(
            s,
            "\n## Operations by outcome\n\n| outcome | operations |\n|---|---|"
        );
        for (label, n) in &by {
            let _ = writeln!(s, "| {label} | {n} |");
        }
        let _ = writeln!(
            s,
            "\nAborts: {} accepted, {} refused (claimed or closed), {} not sent (ended first).",
            aborts(|a| *a == AbortAnswer::Accepted),
            aborts(|a| *a == AbortAnswer::Refused),
            aborts(|a| *a == AbortAnswer::Late)
        );
    }

    fn write_faults(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Faults applied by kind\n\n| kind | applied | planned |\n|---|---|---|"
        );
        for class in FaultClass::ALL {
            let planned = self
                .records
                .iter()
                .flat_map(|r| &r.plan.faults)
                .filter(|f| f.kind.class() == class)
                .count();
            let applied = self
                .records
                .iter()
                .flat_map(OpRecord::applied_classes)
                .filter(|c| *c == class)
                .count();
            let _ = writeln!(s, "| {class} | {applied} | {planned} |");
        }
        let crashes: usize = self.records.iter().map(|r| r.crashes.len()).sum();
        let startups: usize = self.records.iter().map(|r| r.startup_failures.len()).sum();
        let _ = writeln!(
            s,
            "\nFailpoint crashes seen: {crashes}. Agents that failed their start-up checks (a \
             restart while a link was cut) and were started again: {startups}."
        );
    }

    fn write_violations(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Violations\n");
        let violations = self.violations();
        if violations.is_empty() {
            let _ = writeln!(s, "None.");
        }
        for (at, what) in violations {
            let _ = writeln!(s, "- {at}: {}", what.replace('\n', "\n  "));
        }
    }

    fn write_operations(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\n## Operations\n\n| # | group | mode | from → to | abort | faults | outcome | duration |\n|---|---|---|---|---|---|---|---|"
        );
        for r in self.baseline.iter().chain(&self.records) {
            let mode = if r.plan.force {
                format!("{}, forced", r.plan.mode)
            } else {
                r.plan.mode.to_string()
            };
            let abort = match (&r.plan.abort_after, &r.abort) {
                (Some(t), Some(a)) => format!("t+{}: {a}", secs(*t)),
                (Some(t), None) => format!("t+{}", secs(*t)),
                _ => "–".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {mode} | {} → {} | {abort} | {} of {} | {} | {} |",
                op_name(r.plan.index),
                r.group,
                r.from,
                r.to,
                r.applied.len(),
                r.plan.faults.len(),
                r.outcome,
                r.duration.map_or("–".to_owned(), secs)
            );
        }
    }

    fn write_schedule(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Schedule\n");
        for r in &self.records {
            let _ = writeln!(
                s,
                "- **{}** {} ({} → {}){}",
                r.plan.index,
                r.plan.describe(),
                r.from,
                r.to,
                r.op_id
                    .as_ref()
                    .map_or(String::new(), |id| format!(", `{id}`"))
            );
            for (i, f) in r.plan.faults.iter().enumerate() {
                let note = if r.applied.contains(&i) {
                    ""
                } else {
                    " (not applied)"
                };
                let _ = writeln!(s, "  - {f}{note}");
            }
            for c in &r.crashes {
                let _ = writeln!(s, "  - crashed: {c}");
            }
            for c in &r.startup_failures {
                let _ = writeln!(s, "  - failed its start-up checks: {c}");
            }
        }
    }
}

/// `operation 3`, or `baseline` for index 0.
fn op_name(index: usize) -> String {
    if index == 0 {
        "baseline".to_owned()
    } else {
        format!("operation {index}")
    }
}

/// `12 min 3 s`.
fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{} min {} s", s / 60, s % 60)
}

#[cfg(test)]
mod tests;
