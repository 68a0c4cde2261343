//! Exit codes of `failoverctl`, one per error category, so scripts can tell a refusal from
//! an outage without parsing messages.
//!
//! | code | category | meaning |
//! |---|---|---|
//! | 0 | success | the command did what was asked, or found it already done (`setup` on a set-up table, `register` of a group registered with the same active cluster) |
//! | 2 | usage | the command line is wrong (clap's code): unknown flag, a group not of the form `<namespace>/<name>`, an invalid cluster or table name, no AWS region |
//! | 3 | refused | the current state forbids it: another coordinator won the race, an operation holds the group (its lease is live), the group is active elsewhere or already on the target, the group is suspended, a promotion is claimed (`abort` after the claim), `plan` found blockers, an existing table has another schema |
//! | 4 | failed | AWS or the server failed: connection refused, credentials rejected, throttling that outlasted the retries, an SDK timeout; or the operation waited on (`failover --wait`, `watch`) ended `Failed` |
//! | 5 | timed out | a wait of `failoverctl`'s own ran out (a new table never became `ACTIVE`; `--timeout` of `failover --wait` or `watch`, after which the operation continues) |
//! | 6 | aborted | the operation waited on (`failover --wait`, `watch`) ended `Aborted` or `RolledBack` |
//! | 7 | not found | an unknown group, operation, cluster (no inbox queue) or table |

/// Why `failoverctl` exits with what it exits. See the module docs for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// 0: done (or already done).
    Success,
    /// 2: the command line is wrong.
    Usage,
    /// 3: the current state forbids it.
    Refused,
    /// 4: AWS or the server failed.
    Failed,
    /// 5: a wait ran out.
    TimedOut,
    /// 6: the operation was aborted.
    Aborted,
    /// 7: an unknown group, cluster or table.
    NotFound,
}

impl ExitStatus {
    /// Every status, in code order.
    pub const ALL: [ExitStatus; 7] = [
        Self::Success,
        Self::Usage,
        Self::Refused,
        Self::Failed,
        Self::TimedOut,
        Self::Aborted,
        Self::NotFound,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Usage => 2,
            Self::Refused => 3,
            Self::Failed => 4,
            Self::TimedOut => 5,
            Self::Aborted => 6,
            Self::NotFound => 7,
        }
    }

    /// One line for `--help`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Success => "success (also when it was already done)",
            Self::Usage => "usage: invalid command line, group, cluster or table name",
            Self::Refused => "refused: lost a race, conflict, group active elsewhere",
            Self::Failed => "failed: AWS or server error (connection, credentials, throttling)",
            Self::TimedOut => "timed out waiting",
            Self::Aborted => "the operation was aborted",
            Self::NotFound => "not found: unknown group, cluster or table",
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// The exit-code section of `failoverctl --help` (kept in step with [`ExitStatus`] by a test).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (also when it was already done)
  2  usage: invalid command line, group, cluster or table name
  3  refused: lost a race, conflict, group active elsewhere
  4  failed: AWS or server error (connection, credentials, throttling)
  5  timed out waiting
  6  the operation was aborted
  7  not found: unknown group, cluster or table

Results go to stdout; errors go to stderr as `error: <message>` followed by their causes.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_exit_code_with_its_description() {
        for status in ExitStatus::ALL {
            let line = format!("  {}  {}\n", status.code(), status.describe());
            assert!(EXIT_CODES_HELP.contains(&line), "missing {line:?}");
        }
    }

    #[test]
    fn codes_are_distinct_and_usage_is_clap_s() {
        let mut codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(codes, [0, 2, 3, 4, 5, 6, 7]);
        let clap_usage = clap::Error::new(clap::error::ErrorKind::InvalidValue).exit_code();
        assert_eq!(i32::from(ExitStatus::Usage.code()), clap_usage);
    }
}
