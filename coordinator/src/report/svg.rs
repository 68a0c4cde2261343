//! The report's drawing: one SVG with a time axis in seconds from the request, a source and
//! a target lane (a row of stage bars, then one row per step), one row per volume (ready
//! for promotion, promoted), the downtime and dual-active windows shaded over every row,
//! and lines at the promotion claim, an abort request and the end. Failed steps are red and
//! crossed; steps without an outcome are hatched. Every bar has a `<title>` with its
//! details. Pure: a function of the [`Report`].

use std::fmt::Write as _;

use failover_messages::records::StepStatus;
use jiff::Timestamp;

use super::{Lane, Report, Window};

const WIDTH: f64 = 1400.0;
const LABEL: f64 = 330.0;
const RIGHT: f64 = 30.0;
const ROW: f64 = 17.0;
const TOP: f64 = 64.0;
const FAILED: &str = "#d62728";

/// A colour per stage key (the same stage, the same colour in both lanes).
fn stage_colour(key: &str) -> &'static str {
    match key {
        "Initialization" => "#7f7f7f",
        "SourceShutdown" => "#1f77b4",
        "VolumeTransitionSource" => "#17becf",
        "VolumeTransitionTarget" => "#9467bd",
        "TargetActivation" => "#2ca02c",
        "VolumeResync" => "#bcbd22",
        "Completion" => "#8c564b",
        "Rollback" => "#e377c2",
        _ => "#aaaaaa",
    }
}

/// Text for SVG and HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where things go: seconds to x, and the rows drawn so far.
struct Canvas<'a> {
    report: &'a Report,
    out: String,
    y: f64,
}

impl Canvas<'_> {
    fn x(&self, t: Timestamp) -> f64 {
        let plot = WIDTH - LABEL - RIGHT;
        LABEL + (self.report.offset(t) / self.report.span()).clamp(0.0, 1.0) * plot
    }

    fn label(&mut self, text: &str, indent: f64, class: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{:.1}" y="{:.1}" class="{class}">{}</text>"#,
            8.0 + indent,
            self.y + ROW * 0.72,
            escape(text)
        );
    }

    /// A bar over `w` on the current row.
    fn bar(&mut self, w: Window, fill: &str, extra: &str, title: &str) {
        let (x0, x1) = (self.x(w.from), self.x(w.to));
        let _ = writeln!(
            self.out,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}" {extra}><title>{}</title></rect>"#,
            self.y + 2.0,
            (x1 - x0).max(2.0),
            ROW - 4.0,
            escape(title)
        );
    }

    fn lane(&mut self, lane: &Lane) {
        let r = self.report;
        let _ = writeln!(
            self.out,
            r#"<rect x="0" y="{:.1}" width="{WIDTH}" height="{ROW}" class="lanehead"/>"#,
            self.y
        );
        self.label(
            &format!("{} cluster {}", lane.role, lane.cluster),
            0.0,
            "lane",
        );
        self.y += ROW;
        for stage in &lane.stages {
            let fill = if stage.failed {
                FAILED
            } else {
                stage_colour(&stage.key)
            };
            let title = format!(
                "{} {}: {} {}{}",
                lane.cluster,
                stage.title,
                stage.key,
                r.window_text(stage.window),
                if stage.failed { " FAILED" } else { "" }
            );
            self.label(&stage.title, 6.0, "stage");
            self.bar(stage.window, fill, r#"class="stagebar""#, &title);
            let x = self.x(stage.window.from) + 4.0;
            let _ = writeln!(
                self.out,
                r#"<text x="{x:.1}" y="{:.1}" class="onbar">{}</text>"#,
                self.y + ROW * 0.72,
                escape(&stage.key)
            );
            self.y += ROW;
            for step in lane.steps.iter().filter(|s| s.stage == stage.key) {
                self.label(&step.task, 18.0, "step");
                let (fill, extra) = match step.status {
                    StepStatus::Done => (stage_colour(&step.stage), r#"fill-opacity="0.75""#),
                    StepStatus::Failed => (FAILED, ""),
                    StepStatus::Started => ("url(#open)", r##"stroke="#555""##),
                };
                let mut title = format!(
                    "{} {}/{} {} {}",
                    lane.cluster,
                    step.stage,
                    step.task,
                    step.status,
                    r.window_text(step.window)
                );
                if step.attempts > 1 {
                    let _ = write!(title, ", {} attempts", step.attempts);
                }
                if let Some(m) = &step.message {
                    let _ = write!(title, ": {m}");
                }
                self.bar(step.window, fill, extra, &title);
                if step.status == StepStatus::Failed {
                    let x = self.x(step.window.to);
                    let _ = writeln!(
                        self.out,
                        r#"<text x="{:.1}" y="{:.1}" class="cross">✕ failed</text>"#,
                        x + 3.0,
                        self.y + ROW * 0.75
                    );
                }
                self.y += ROW;
            }
        }
        for (key, title) in &lane.unjournaled {
            self.label(title, 6.0, "stage unjournaled");
            let _ = writeln!(
                self.out,
                r#"<text x="{:.1}" y="{:.1}" class="unjournaled">{} ({key}): no step journaled</text>"#,
                LABEL + 4.0,
                self.y + ROW * 0.72,
                escape(title)
            );
            self.y += ROW;
        }
        self.y += ROW * 0.5;
    }

    fn volumes(&mut self) {
        let r = self.report;
        if r.volumes.is_empty() {
            return;
        }
        let _ = writeln!(
            self.out,
            r#"<rect x="0" y="{:.1}" width="{WIDTH}" height="{ROW}" class="lanehead"/>"#,
            self.y
        );
        self.label("volume handoff", 0.0, "lane");
        self.y += ROW;
        for v in &r.volumes {
            self.label(&format!("{} ({})", v.volume, v.state), 6.0, "step");
            let cy = self.y + ROW / 2.0;
            if let (Some(a), Some(b)) = (v.ready_at, v.promoted_at) {
                let _ = writeln!(
                    self.out,
                    r##"<line x1="{:.1}" y1="{cy:.1}" x2="{:.1}" y2="{cy:.1}" stroke="#9467bd" stroke-width="2"/>"##,
                    self.x(a),
                    self.x(b)
                );
            }
            if let Some(t) = v.ready_at {
                let title = format!("{} READY_FOR_PROMOTION at +{:.2}s", v.volume, r.offset(t));
                let _ = writeln!(
                    self.out,
                    r##"<circle cx="{:.1}" cy="{cy:.1}" r="5" fill="#17becf"><title>{}</title></circle>"##,
                    self.x(t),
                    escape(&title)
                );
            }
            if let Some(t) = v.promoted_at {
                let x = self.x(t);
                let title = format!("{} PROMOTED at +{:.2}s", v.volume, r.offset(t));
                let _ = writeln!(
                    self.out,
                    r##"<path d="M{:.1} {cy:.1} l6 -6 l6 6 l-6 6 z" fill="#9467bd"><title>{}</title></path>"##,
                    x - 6.0,
                    escape(&title)
                );
            }
            self.y += ROW;
        }
    }

    /// Shaded windows and vertical marks over the rows from `top` to the current row.
    fn overlays(&mut self, top: f64) {
        let r = self.report;
        let op = &r.operation;
        let height = self.y - top;
        for (w, class, name) in [
            (r.downtime, "downtime", "downtime"),
            (r.dual_active, "dual", "dual-active"),
        ] {
            let Some(w) = w else { continue };
            let (x0, x1) = (self.x(w.from), self.x(w.to));
            let text = format!("{name} {:.2}s", r.offset(w.to) - r.offset(w.from));
            let _ = writeln!(
                self.out,
                r#"<rect x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{height:.1}" class="{class}"><title>{}</title></rect>"#,
                (x1 - x0).max(1.0),
                escape(&format!("{name} {}", r.window_text(w)))
            );
            let _ = writeln!(
                self.out,
                r#"<text x="{:.1}" y="{:.1}" class="{class}label">{}</text>"#,
                x0 + 3.0,
                // Above the tick labels, below the title.
                top - 24.0 - if class == "dual" { 12.0 } else { 0.0 },
                escape(&text)
            );
        }
        for (t, name) in [
            (op.promotion_started_at, "promotion claimed"),
            (op.abort_requested_at, "abort requested"),
            (op.finished_at, "closed"),
        ] {
            let Some(t) = t else { continue };
            let x = self.x(t);
            let _ = writeln!(
                self.out,
                r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" class="mark"><title>{name} at +{:.2}s</title></line>"#,
                self.y,
                r.offset(t)
            );
            // Near the right edge the label goes left of its line.
            let (lx, anchor) = if x > WIDTH - RIGHT - 110.0 {
                (x - 2.0, "end")
            } else {
                (x + 2.0, "start")
            };
            let _ = writeln!(
                self.out,
                r#"<text x="{lx:.1}" y="{:.1}" class="marklabel" text-anchor="{anchor}">{name}</text>"#,
                self.y + 11.0
            );
        }
    }

    /// The axis with ticks every 1, 2, 5, 10, … seconds, and grid lines down to `bottom`.
    fn axis(&mut self, bottom: f64) {
        let span = self.report.span();
        let step = [
            0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ]
        .into_iter()
        .find(|s| span / s <= 14.0)
        .unwrap_or(1800.0);
        let plot = WIDTH - LABEL - RIGHT;
        for i in 0..=((span / step + 1e-9).floor() as u32) {
            let s = f64::from(i) * step;
            let x = LABEL + s / span * plot;
            let text = if (s - s.round()).abs() < 1e-9 {
                format!("{s:.0}s")
            } else {
                format!("{s:.1}s")
            };
            let _ = writeln!(
                self.out,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" class="grid"/><text x="{x:.1}" y="{:.1}" class="tick">{text}</text>"#,
                TOP - 6.0,
                TOP - 10.0,
            );
        }
    }
}

const STYLE: &str = "
text { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 11px; fill: #222; }
text.lane { font-weight: bold; font-size: 12px; }
text.stage { font-weight: bold; }
text.step { font-family: 'DejaVu Sans Mono', monospace; font-size: 10px; fill: #444; }
text.onbar { font-size: 10px; fill: #fff; }
text.tick { font-size: 10px; fill: #666; text-anchor: middle; }
text.cross { fill: #d62728; font-weight: bold; }
text.downtimelabel { fill: #b22222; font-weight: bold; }
text.duallabel { fill: #d2691e; font-weight: bold; }
text.marklabel { font-size: 10px; fill: #555; }
text.unjournaled { font-size: 10px; fill: #888; font-style: italic; }
text.stage.unjournaled { font-size: 11px; }
rect.lanehead { fill: #eef1f5; }
rect.downtime { fill: #d62728; fill-opacity: 0.12; }
rect.dual { fill: #ff7f0e; fill-opacity: 0.18; }
line.grid { stroke: #e4e4e4; }
line.mark { stroke: #555; stroke-dasharray: 4 3; }
";

/// The report's drawing as a standalone SVG document.
pub fn render(report: &Report) -> String {
    let mut c = Canvas {
        report,
        out: String::new(),
        y: TOP,
    };
    for lane in &report.lanes {
        c.lane(lane);
    }
    c.volumes();
    let bottom = c.y;
    c.overlays(TOP);
    let body = std::mem::take(&mut c.out);
    c.axis(bottom);
    let axis = std::mem::take(&mut c.out);
    let height = bottom + 24.0;
    let title = escape(&report.title());
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{title}">
<title>{title}</title>
<style>{STYLE}</style>
<defs><pattern id="open" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/><line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="3"/></pattern></defs>
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="18" class="lane">{title}</text>
<text x="8" y="{:.0}" class="tick" style="text-anchor:start">seconds since the request ({})</text>
{axis}{body}</svg>
"##,
        TOP - 24.0,
        escape(&report.operation.requested_at.to_string()),
    )
}
