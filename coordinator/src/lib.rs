//! The failover coordinator: the library behind `failoverctl`.
//!
//! `failoverctl` needs AWS credentials only, never a kubeconfig: everything it does is a
//! DynamoDB record or an SQS queue (see `docs/protocol.md`). The binary (`src/main.rs`) is
//! a thin front end; each command is a library function that returns a result type, and
//! rendering that result is a pure function ([`output::Render`]).
//!
//! | command | function | does |
//! |---|---|---|
//! | `failoverctl setup --cluster east --cluster west [--max-receive-count N]` | [`setup::setup`] | creates or verifies the table and each cluster's inbox + dead-letter queue, reporting what was created and what was already there |
//! | `failoverctl register <ns>/<group> --active <cluster>` | [`register::register`] | creates the group state at epoch 0; the same cluster again is a no-op, another is refused |
//! | `failoverctl status [<ns>/<group>]` | [`status::status`] | active cluster, epoch, operation in flight, lease of every group or of one |
//! | `failoverctl failover <ns>/<group>... --to <cluster> [--mode consistency\|uptime] [--force --reason TEXT] [--wait] [--timeout 10m]` | [`failover::failover`] | starts one operation per group (one conditional write each) and notifies source and target; `--wait` watches it |
//! | `failoverctl watch <operation-id> [--timeout 10m]` | [`watch::watch`] | live progress on stderr until the phase is final |
//! | `failoverctl abort <operation-id>` | [`abort::abort`] | requests an abort before the promotion claim and notifies both sides |
//! | `failoverctl history [<ns>/<group>] [--limit N] [--report]` | [`history::history`] | closed operations, newest first (with `--report`: each one's report command) |
//! | `failoverctl report <operation-id> [--format html\|svg\|text] [--out FILE]` | [`report::report`] | both clusters' stages and steps on one time axis, from DynamoDB alone |
//! | `failoverctl clusters` | [`history::clusters`] | agent heartbeats, stale or not |
//! | `failoverctl plan <ns>/<group> --to <cluster> [--mode ..] [--force]` | [`plan::plan`] | side-effect-free preview: stages and blockers |
//! | `failoverctl suspend <ns>/<group>`, `failoverctl resume <ns>/<group>` | [`suspend::set_suspended`] | sets or clears the group's `suspended` flag (new operations refused; one in flight continues); idempotent |
//!
//! Global options: `--table` (`FAILOVER_TABLE`, default `failover`), `--queue-prefix`
//! (`FAILOVER_QUEUE_PREFIX`, default `failover-`), `--region` (`AWS_REGION`),
//! `--endpoint-url` (`AWS_ENDPOINT_URL`), `-o/--output plain|table|json|yaml`.
//!
//! Results go to stdout; errors go to stderr as `error: <message>` naming the group,
//! cluster, queue or table, followed by `caused by:` lines ([`error::report`]).
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success, including "already done" (`setup` twice, `register` with the same cluster) |
//! | 2 | usage: invalid command line, group (`<namespace>/<name>`), cluster or table name, no region |
//! | 3 | refused: lost a race, conflict (existing table with another schema), group already active elsewhere |
//! | 4 | failed: AWS or server error (connection refused, credentials, throttling, SDK timeouts) |
//! | 5 | timed out: a wait of `failoverctl`'s own ran out (`--wait`/`watch`: the operation continues) |
//! | 6 | aborted: the operation waited on ended Aborted or RolledBack (`--wait`, `watch`); a failed operation is 4 |
//! | 7 | not found: unknown group, cluster (no inbox queue) or table |
//!
//! [`exit::ExitStatus`] is the source of truth; [`error::CommandError::exit_status`] sorts
//! errors into it.

pub mod abort;
pub mod aws;
pub mod cli;
pub mod error;
pub mod exit;
pub mod failover;
pub mod history;
pub mod output;
pub mod plan;
pub mod register;
pub mod report;
pub mod setup;
pub mod status;
pub mod suspend;
pub mod watch;
