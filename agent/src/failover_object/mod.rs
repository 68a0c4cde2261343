//! The `Failover` object (`failover.io/v1alpha1`): the one an agent keeps in its own cluster
//! for every operation that involves it, and the one a user creates to ask for a failover.
//!
//! | file | what |
//! |---|---|
//! | [`failover_names`] | names, labels and annotations; `requestedBy`; which objects are the agents' own; the operation ids of a user's object (pure) |
//! | [`failover_status`] | the object to create for an operation and the fold of a run's progress into its status (pure) |
//! | [`failover_events`] | the Kubernetes Events of a run: stages, the failing task, the result (pure) |
//! | [`failover_journal`] | [`FailoverJournal`](failover_journal::FailoverJournal): the engine's journal in the object's `status.journal`, the group state read before each run of Kubernetes steps of one kind, each stage published to DynamoDB once |
//! | [`failover_reporter`] | [`FailoverReporter`](failover_reporter::FailoverReporter): opens the object, then follows the run's progress stream, writing the status and the Events |
//! | [`status_writer`] | [`StatusWriter`](status_writer::StatusWriter): the one writer of the object's status, shared by the journal and the reporter: the run's progress folded in as it is sent, every write the whole status, one write at a time |
//! | [`trigger`] | a `Failover` a user created becomes an operation: pure decisions, then the start through the store |
//!
//! Inside, the files import downward only: `failover_names` ← `failover_status`,
//! `failover_status` ← `status_writer` ← `failover_journal`, `failover_reporter`;
//! `failover_events` ← `failover_reporter`; `failover_names` ← `trigger`.

pub mod failover_events;
pub mod failover_journal;
pub mod failover_names;
pub mod failover_reporter;
pub mod failover_status;
pub mod status_writer;
pub mod trigger;
