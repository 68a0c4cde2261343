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
//! | 5 | timed out: a wait of `failoverctl`'s own ran out |
//! | 6 | aborted: the operation waited on was aborted |
//! | 7 | not found: unknown group, cluster (no inbox queue) or table |
//!
//! [`exit::ExitStatus`] is the source of truth; [`error::CommandError::exit_status`] sorts
//! errors into it.

pub mod aws;
pub mod cli;
pub mod error;
pub mod exit;
pub mod output;
pub mod register;
pub mod setup;
pub mod status;
