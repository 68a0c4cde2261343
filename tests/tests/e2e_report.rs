//! `failoverctl report` on a real failover: both agents move the shared scenario's group
//! east -> west (CONSISTENCY), then the report is drawn from DynamoDB alone as HTML, SVG and
//! text with the real binary. The HTML page is opened in headless Chromium (Debian's,
//! installed by `tests/env/build.sh`): its DOM (`--dump-dom`) must name every stage of the
//! mode, both clusters, the operation and every volume, and a screenshot is taken
//! (`FAILOVER_REPORT_SCREENSHOT=<path>` copies it there, e.g. `docs/report.png`).
//! `failoverctl history --report` names the report command of the operation, and a report
//! of an unknown operation is exit 7.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use failover_messages::protocol::stages::StageId;
use failover_messages::records::Mode;
use failover_tests::agents::{AgentStart, expect_exit};
use failover_tests::fixtures::VOLUMES;
use failover_tests::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_real_failover_names_every_stage_in_a_browser() -> Result<()> {
    let mut s = Scenario::new("e2e-report").await?;
    let res = Box::pin(report_of_a_failover(&mut s)).await;
    s.finish(res).await
}

async fn report_of_a_failover(s: &mut Scenario) -> Result<()> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let args = s.failover_args("west", "report drill", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_exit(&s.stack.failoverctl(&args)?, 0, "failover to west")?;
    let op = s.succeeded_on("west", "report drill").await?;
    let dir = s.stack.dir.join("report");
    std::fs::create_dir_all(&dir)?;

    let html_path = dir.join("report.html");
    let html_arg = html_path.to_string_lossy().into_owned();
    let (out, _) = expect_exit(
        &s.stack
            .failoverctl(&["report", &op.id, "--out", &html_arg])?,
        0,
        "report --out",
    )?;
    ensure!(out.contains(&html_arg), "{out}");
    let html = std::fs::read_to_string(&html_path)?;
    for forbidden in ["<script", "<link", "src=", "href=", "@import"] {
        ensure!(!html.contains(forbidden), "the page references {forbidden}");
    }

    let (text, _) = expect_exit(
        &s.stack
            .failoverctl(&["report", &op.id, "--format", "text"])?,
        0,
        "report --format text",
    )?;
    ensure!(
        text.contains("source east:") && text.contains("target west:"),
        "{text}"
    );
    ensure!(text.contains("downtime: +"), "no downtime window: {text}");
    let (svg, _) = expect_exit(
        &s.stack
            .failoverctl(&["report", &op.id, "--format", "svg"])?,
        0,
        "report --format svg",
    )?;
    ensure!(svg.starts_with("<svg "), "{svg}");

    let dom = chromium(&dir, &["--dump-dom"], &html_path)?;
    let page = visible_text(&dom);
    let mut wanted: Vec<String> = vec!["east".into(), "west".into(), op.id.clone()];
    for stage in StageId::order(Mode::Consistency) {
        wanted.push(stage.title().to_owned());
        wanted.push(stage.key().to_owned());
    }
    wanted.extend(VOLUMES.iter().map(|(volume, _, _)| (*volume).to_owned()));
    for want in &wanted {
        ensure!(
            page.contains(want.as_str()),
            "the page does not show {want:?}"
        );
    }

    let png = dir.join("report.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(&dir, &[&shot, "--window-size=1440,2000"], &html_path)?;
    let bytes = std::fs::read(&png).context("no screenshot")?;
    ensure!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "not a screenshot of a page: {} bytes",
        bytes.len()
    );
    if let Ok(copy) = std::env::var("FAILOVER_REPORT_SCREENSHOT") {
        std::fs::copy(&png, &copy).with_context(|| format!("copying the screenshot to {copy}"))?;
    }

    let g = s.group.to_string();
    let (history, _) = expect_exit(
        &s.stack.failoverctl(&["history", &g, "--report"])?,
        0,
        "history --report",
    )?;
    ensure!(
        history.contains(&format!("report {} --format html --out", op.id)),
        "{history}"
    );
    let (_, err) = expect_exit(
        &s.stack.failoverctl(&["report", "no-such-operation"])?,
        7,
        "report of an unknown operation",
    )?;
    ensure!(err.contains("no-such-operation"), "{err}");
    Ok(())
}

/// Headless Chromium on `page` with `args`, its profile under `dir`; its stdout.
fn chromium(dir: &Path, args: &[&str], page: &Path) -> Result<String> {
    let url = format!("file://{}", page.canonicalize()?.display());
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .arg(&url)
        .output()
        .context("running chromium (Debian package; tests/env/build.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "chromium {args:?} exited {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// The text of a DOM dump: tags removed, entities of the report's escaping decoded.
fn visible_text(dom: &str) -> String {
    let mut out = String::with_capacity(dom.len());
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
