//! One step of a cluster's journal as the `Failover` status keeps it (`status.journal`):
//! one line of text per step, so that `kubectl get failover -o yaml` reads it at a glance
//! and so that the API server, which validates and tracks the managed fields of every
//! field of every write, handles one string per step instead of eight fields (a journal of
//! 60 structured steps made each status write of the object about three times the API
//! server CPU of the same journal as lines).
//!
//! ```text
//! <stage> <task> <STATUS> epoch=<n> attempts=<n> started=<RFC 3339>[ first=<RFC 3339>][ finished=<RFC 3339>][ message=<text to the end>]
//! ```
//!
//! `first=` appears only when the first intent differs from the last (a step started more
//! than once). Spaces in the stage or task key are written as `%20`. A line that does not
//! parse (edited by hand, or an entry of an older agent's structured form, see
//! [`lenient_lines`]) is left out on reading: its step runs again, as after a loss.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer};

use crate::records::{JournalStep, StepStatus};

/// The line of `step` in `status.journal`.
pub fn journal_line(step: &JournalStep) -> String {
    let mut line = format!(
        "{} {} {} epoch={} attempts={} started={}",
        escape(&step.stage),
        escape(&step.task),
        step.status.as_str(),
        step.epoch,
        step.attempts,
        step.started_at
    );
    if let Some(first) = step.first_started_at.filter(|f| *f != step.started_at) {
        line.push_str(&format!(" first={first}"));
    }
    if let Some(finished) = step.finished_at {
        line.push_str(&format!(" finished={finished}"));
    }
    if let Some(message) = &step.message {
        line.push_str(" message=");
        line.push_str(message);
    }
    line
}

/// The step of operation `op_id` in `cluster` that `line` journals; `None` when it does not
/// parse.
pub fn parse_journal_line(line: &str, op_id: &str, cluster: &str) -> Option<JournalStep> {
    let (head, message) = match line.split_once(" message=") {
        Some((head, message)) => (head, Some(message.to_owned())),
        None => (line, None),
    };
    let mut words = head.split(' ');
    let stage = unescape(words.next().filter(|w| !w.is_empty())?);
    let task = unescape(words.next().filter(|w| !w.is_empty())?);
    let status = words.next()?.parse::<StepStatus>().ok()?;
    let (mut epoch, mut attempts, mut started, mut first, mut finished) =
        (None, None, None, None, None);
    for word in words {
        let (key, value) = word.split_once('=')?;
        match key {
            "epoch" => epoch = Some(value.parse::<u64>().ok()?),
            "attempts" => attempts = Some(value.parse::<u32>().ok()?),
            "started" => started = Some(value.parse::<Timestamp>().ok()?),
            "first" => first = Some(value.parse::<Timestamp>().ok()?),
            "finished" => finished = Some(value.parse::<Timestamp>().ok()?),
            _ => return None,
        }
    }
    let started_at = started?;
    Some(JournalStep {
        op_id: op_id.to_owned(),
        cluster: cluster.to_owned(),
        stage,
        task,
        epoch: epoch?,
        status,
        attempts: attempts?,
        started_at,
        first_started_at: Some(first.unwrap_or(started_at)),
        finished_at: finished,
        message,
    })
}

fn escape(key: &str) -> String {
    key.replace(' ', "%20")
}

fn unescape(word: &str) -> String {
    word.replace("%20", " ")
}

/// Deserializes `status.journal`, keeping only its strings: an object written by an agent
/// that kept each step as a structured entry reads as a journal without those steps.
pub(super) fn lenient_lines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Vec::<serde_json::Value>::deserialize(d)?;
    Ok(values
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> JournalStep {
        JournalStep {
            op_id: "op-1".into(),
            cluster: "west".into(),
            stage: "SourceShutdown".into(),
            task: "ScaleDown:Deployment/web".into(),
            epoch: 7,
            status: StepStatus::Done,
            attempts: 1,
            started_at: "2026-11-26T10:00:00.25Z".parse().unwrap(),
            first_started_at: Some("2026-11-26T10:00:00.25Z".parse().unwrap()),
            finished_at: Some("2026-11-26T10:00:01.5Z".parse().unwrap()),
            message: None,
        }
    }

    #[test]
    fn a_step_reads_back_from_its_line() {
        let s = step();
        let line = journal_line(&s);
        assert_eq!(
            line,
            "SourceShutdown ScaleDown:Deployment/web DONE epoch=7 attempts=1 \
             started=2026-11-26T10:00:00.25Z finished=2026-11-26T10:00:01.5Z"
        );
        assert_eq!(parse_journal_line(&line, "op-1", "west"), Some(s));
    }

    #[test]
    fn a_restarted_failed_step_keeps_its_first_start_and_its_whole_message() {
        let s = JournalStep {
            status: StepStatus::Failed,
            attempts: 3,
            first_started_at: Some("2026-11-26T09:59:00Z".parse().unwrap()),
            task: "Wait Ready".into(),
            message: Some("timed out: seen replicas=0 message=x\nsecond line".into()),
            ..step()
        };
        let line = journal_line(&s);
        assert!(line.contains(" first=2026-11-26T09:59:00Z"), "{line}");
        assert!(
            line.starts_with("SourceShutdown Wait%20Ready FAILED "),
            "{line}"
        );
        assert_eq!(parse_journal_line(&line, "op-1", "west"), Some(s));
    }

    #[test]
    fn a_step_journaled_once_without_its_first_start_reads_as_first_started_then() {
        let s = JournalStep {
            first_started_at: None,
            finished_at: None,
            status: StepStatus::Started,
            ..step()
        };
        let back = parse_journal_line(&journal_line(&s), "op-1", "west").unwrap();
        assert_eq!(back.first_started_at, Some(s.started_at));
        assert_eq!(back.first_started(), s.first_started());
    }

    #[test]
    fn lines_that_do_not_parse_are_refused() {
        let good = journal_line(&step());
        for bad in [
            String::new(),
            "SourceShutdown".to_owned(),
            good.replace("DONE", "MAYBE"),
            good.replace("epoch=7", "epoch=seven"),
            good.replace(" started=2026-11-26T10:00:00.25Z", ""),
            good.replace("attempts=1", "attempts=1 colour=blue"),
            good.replace("epoch=7", "epoch"),
        ] {
            assert_eq!(parse_journal_line(&bad, "op-1", "west"), None, "{bad}");
        }
    }
}
