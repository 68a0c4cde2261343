//! The report as one self-contained HTML page: a summary, the drawing ([`super::svg`])
//! inline, a legend, and each lane's steps as a table. No script, no stylesheet, font or
//! image from elsewhere: the file opens offline. Pure: a function of the [`Report`].

use std::fmt::Write as _;

use super::svg::{self, escape};
use super::{Lane, Report};

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
table.summary th { width: 160px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.FAILED td { background: #fde2e2; }
tr.STARTED td { background: #f1f1f1; font-style: italic; }
tr.unjournaled td { color: #888; font-style: italic; }
.legend span { display: inline-block; margin-right: 16px; font-size: 12px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; }
.drawing { overflow-x: auto; border: 1px solid #ddd; margin: 8px 0; }
";

fn row(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(
        out,
        "<tr><th>{}</th><td>{}</td></tr>",
        escape(name),
        escape(value)
    );
}

fn seconds(ms: Option<u64>) -> String {
    ms.map_or("-".to_owned(), |ms| format!("{:.2}s", ms as f64 / 1000.0))
}

fn summary(report: &Report) -> String {
    let op = &report.operation;
    let mut out = String::from("<table class=\"summary\">\n");
    row(&mut out, "group", &op.group.to_string());
    row(&mut out, "operation", &op.id);
    row(&mut out, "mode", &op.mode.to_string());
    row(&mut out, "source cluster", &op.source);
    row(&mut out, "target cluster", &op.target);
    row(&mut out, "phase", &op.phase.to_string());
    row(&mut out, "epoch", &op.epoch.to_string());
    row(&mut out, "forced", if op.force { "yes" } else { "no" });
    row(
        &mut out,
        "requested",
        &format!("{} by {}", op.requested_at, op.requested_by),
    );
    if !op.reason.is_empty() {
        row(&mut out, "reason", &op.reason);
    }
    if let Some(t) = op.finished_at {
        row(&mut out, "closed", &t.to_string());
    }
    row(&mut out, "total", &seconds(op.timings.total_ms));
    let downtime = match report.downtime {
        Some(w) => format!(
            "{} (recorded: {})",
            report.window_text(w),
            seconds(op.timings.downtime_ms)
        ),
        None => format!("none drawn (recorded: {})", seconds(op.timings.downtime_ms)),
    };
    row(&mut out, "downtime", &downtime);
    if let Some(w) = report.dual_active {
        row(&mut out, "dual-active window", &report.window_text(w));
    }
    if let Some(t) = op.promotion_started_at {
        row(
            &mut out,
            "promotion claimed",
            &format!("+{:.2}s", report.offset(t)),
        );
    }
    if let Some(t) = op.abort_requested_at {
        row(
            &mut out,
            "abort requested",
            &format!("+{:.2}s", report.offset(t)),
        );
    }
    if let Some(m) = &op.message {
        row(&mut out, "message", m);
    }
    out.push_str("</table>\n");
    out
}

fn legend() -> String {
    let items = [
        ("#1f77b4", "stage / step done (colour per stage)"),
        ("#d62728", "failed step (✕)"),
        ("#bbbbbb", "step without outcome (hatched)"),
        ("rgba(214,39,40,0.25)", "downtime"),
        ("rgba(255,127,14,0.35)", "dual-active window"),
        ("#17becf", "volume READY_FOR_PROMOTION"),
        ("#9467bd", "volume PROMOTED"),
    ];
    let mut out = String::from("<p class=\"legend\">");
    for (colour, text) in items {
        let _ = write!(
            out,
            "<span><i class=\"swatch\" style=\"background:{colour}\"></i>{}</span>",
            escape(text)
        );
    }
    out.push_str("</p>\n");
    out
}

fn steps_table(report: &Report, lane: &Lane) -> String {
    let mut out = format!(
        "<h2>{} cluster {}</h2>\n",
        escape(lane.role),
        escape(&lane.cluster)
    );
    if lane.steps.is_empty() {
        out.push_str("<p>No step journaled.</p>\n");
        return out;
    }
    out.push_str(
        "<table><tr><th>stage</th><th>step</th><th>status</th><th>start</th><th>end</th>\
         <th>duration</th><th>attempts</th><th>message</th></tr>\n",
    );
    for step in &lane.steps {
        let title = lane
            .stages
            .iter()
            .find(|s| s.key == step.stage)
            .map_or(step.stage.as_str(), |s| s.title.as_str());
        let (a, b) = (
            report.offset(step.window.from),
            report.offset(step.window.to),
        );
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">+{a:.2}s</td>\
             <td class=\"num\">+{b:.2}s</td><td class=\"num\">{:.2}s</td><td class=\"num\">{}</td><td>{}</td></tr>",
            step.status,
            escape(title),
            escape(&step.task),
            step.status,
            b - a,
            step.attempts,
            escape(step.message.as_deref().unwrap_or(""))
        );
    }
    for (key, title) in &lane.unjournaled {
        let _ = writeln!(
            out,
            "<tr class=\"unjournaled\"><td>{}</td><td colspan=\"7\">no step journaled ({})</td></tr>",
            escape(title),
            escape(key)
        );
    }
    out.push_str("</table>\n");
    out
}

fn volumes_table(report: &Report) -> String {
    if report.volumes.is_empty() {
        return String::new();
    }
    let at = |t: Option<jiff::Timestamp>| {
        t.map_or("-".to_owned(), |t| format!("+{:.2}s", report.offset(t)))
    };
    let mut out = String::from(
        "<h2>Volume handoff</h2>\n<table><tr><th>volume</th><th>state</th>\
         <th>ready for promotion</th><th>promoted</th><th>written by</th></tr>\n",
    );
    for v in &report.volumes {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&v.volume),
            v.state,
            at(v.ready_at),
            at(v.promoted_at),
            escape(&v.writer)
        );
    }
    out.push_str("</table>\n");
    out
}

/// The report as one HTML document.
pub fn render(report: &Report) -> String {
    let title = escape(&report.title());
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Failover report: {}</h1>\n",
        escape(&report.operation.group.to_string())
    );
    out.push_str(&summary(report));
    out.push_str("<div class=\"drawing\">\n");
    out.push_str(&svg::render(report));
    out.push_str("</div>\n");
    out.push_str(&legend());
    for lane in &report.lanes {
        out.push_str(&steps_table(report, lane));
    }
    out.push_str(&volumes_table(report));
    out.push_str("</body>\n</html>\n");
    out
}
