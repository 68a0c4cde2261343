//! The handoff latency benchmark: how long after the source's `READY_FOR_PROMOTION`
//! transaction is durable does the target know it may promote?
//!
//! Three target sides are measured against the same moto server in one run:
//!
//! * **event-driven** (ours, protocol steps 4–5): the source calls
//!   [`Store::mark_all_ready`] (one epoch-conditioned transaction), then sends a
//!   `ReadyForPromotion` [`Envelope`] to the target's SQS inbox. The target is a task
//!   long-polling its inbox ([`Inbox::receive`], wait 20 s); on a message it re-reads the
//!   handoff records ([`Store::list_handoffs`], a strongly consistent query) and checks that
//!   every volume of the group is `READY_FOR_PROMOTION` at the operation's epoch, then
//!   deletes the message. Handoffs run one after another, each on its own group and
//!   operation (registered and started through the store), so no latency queues behind
//!   another.
//! * **polling every P** (the reference design polls every 30 s): a target that re-reads the
//!   handoff records every P with a random phase per handoff, so the poller's phase is
//!   independent of the moment the source writes. Handoff *i* starts at `start_i` (the
//!   starts are spread [`STAGGER`] apart, so moto is not asked for 200 writes at once); its
//!   poller reads at `start_i + phase_i + k·P` and its source writes at
//!   `start_i + source_work + u_i·P` (`phase_i`, `u_i` uniform in [0, 1)), so the poller was
//!   already polling for up to one interval when the source writes. These handoffs run
//!   concurrently (one source and one poller task each), so 200 handoffs at P = 30 s take
//!   about 200·[`STAGGER`] + 2·P.
//!
//! Latency is the same for every side: from the moment `mark_all_ready` returned (the
//! records are durable) to the moment the target's consistent read confirmed them. A poller
//! read that lands between the commit and the source seeing the response counts as 0 and is
//! reported as "early".
//!
//! AWS calls per handoff count every call on the handoff path: DynamoDB calls from a
//! [`CallCounter`] shared by the source's and the target's stores (the `UpdateItem` of
//! `mark_all_ready`, the two `GetItem`s of `list_handoffs`, retries included), and the SQS calls
//! `SendMessage`, `ReceiveMessage` (empty long polls included) and `DeleteMessage`, counted
//! here around each [`Inbox`] call. A poller's reads before the write count too: they are
//! what waiting costs it. Setting up the groups and operations (`register_group`,
//! `start_operation`, the coordinator's side) is counted apart and not in the rows.
//!
//! Every handoff has its own small table (`<run>-<side>-<n>`, deleted after the run), so 200
//! concurrent handoffs do not queue on one table inside moto (an artefact of the emulator,
//! not of the protocol; moto 5.2.5 also deep-copies the whole table for every item of a
//! transaction, which the protocol no longer uses).
//!
//! The event-driven side runs one unmeasured warm-up handoff first (connections, queue URL
//! cache); the target already knows each operation and its epoch (in a real agent, from the
//! `OperationStarted` notification and its consistent read of the operation), so the
//! benchmark hands that knowledge to the target task before the source writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::{Inbox, InboxOptions, MAX_WAIT_SECONDS};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Handoff, HandoffState, Mode};
use failover_messages::setup::ensure_table;
use failover_messages::store::{
    CallCounter, OpRef, Outcome, RegisterOutcome, StartOutcome, StartRequest, Store,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::oneshot;

use crate::aws::AwsEnv;

/// The cluster that hands off (writes `READY_FOR_PROMOTION`).
pub const SOURCE: &str = "east";
/// The cluster that waits to promote.
pub const TARGET: &str = "west";
/// Namespace of the benchmark's groups.
const NAMESPACE: &str = "bench";
/// Lease of each benchmark operation (never renewed; long enough for the whole run).
const LEASE: Duration = Duration::from_secs(3600);
/// Groups and operations set up at once before a polling run.
const SETUP_CONCURRENCY: usize = 8;
/// Time between the starts of two concurrent polling handoffs.
pub const STAGGER: Duration = Duration::from_millis(25);

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffBenchConfig {
    /// Handoffs per target side.
    pub handoffs: usize,
    /// Volumes per group (all marked ready in one conditional write).
    pub volumes: usize,
    /// Intervals of the polling baselines (one row each).
    pub poll_intervals: Vec<Duration>,
    /// Long-poll wait of the event-driven target, in seconds (at most 20).
    pub receive_wait_seconds: u32,
    /// Time the source spends between the operation's start and `mark_all_ready`
    /// (demoting, in a real failover). The target waits meanwhile; this shows what waiting
    /// costs each side in calls. 0 by default.
    pub source_work: Duration,
    /// How long one handoff may take beyond what its side needs before the run fails.
    pub handoff_timeout: Duration,
}

impl Default for HandoffBenchConfig {
    fn default() -> Self {
        Self {
            handoffs: 200,
            volumes: 3,
            poll_intervals: vec![Duration::from_secs(1), Duration::from_secs(30)],
            receive_wait_seconds: MAX_WAIT_SECONDS,
            source_work: Duration::ZERO,
            handoff_timeout: Duration::from_secs(60),
        }
    }
}

/// How the target learns that the records are ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSide {
    /// SQS notification, long poll with this wait (seconds), then a consistent query.
    EventDriven {
        /// `WaitTimeSeconds` of each receive.
        receive_wait_seconds: u32,
    },
    /// A consistent query every `interval`, random phase.
    Polling {
        /// Time between two reads.
        interval: Duration,
    },
}

/// The measurements of one target side.
#[derive(Clone, Debug)]
pub struct SideResult {
    /// Which side.
    pub side: TargetSide,
    /// One latency per handoff, in the order the handoffs ran.
    pub latencies: Vec<Duration>,
    /// AWS calls on the handoff path over all measured handoffs, per API
    /// (`UpdateItem`, `GetItem`, `SendMessage`, `ReceiveMessage`, `DeleteMessage`).
    pub calls: BTreeMap<String, u64>,
    /// Poller reads that saw the records before `mark_all_ready` had returned (latency 0).
    pub early: usize,
    /// Target reads that failed (the handoff was then confirmed by a later read).
    pub failed_reads: u64,
    /// Wall time of this side's measurement.
    pub wall: Duration,
}

impl SideResult {
    /// Handoffs measured.
    pub fn handoffs(&self) -> usize {
        self.latencies.len()
    }

    /// All AWS calls on the handoff path, per handoff.
    pub fn calls_per_handoff(&self) -> f64 {
        self.api_calls_per_handoff(None)
    }

    /// Calls of one API per handoff (`None`: all APIs).
    pub fn api_calls_per_handoff(&self, api: Option<&str>) -> f64 {
        let n = self.handoffs().max(1);
        let total: u64 = self
            .calls
            .iter()
            .filter(|(a, _)| api.is_none_or(|want| a.as_str() == want))
            .map(|(_, c)| c)
            .sum();
        #[allow(clippy::cast_precision_loss)]
        let per = total as f64 / n as f64;
        per
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct HandoffReport {
    /// What was asked for.
    pub config: HandoffBenchConfig,
    /// The moto endpoint.
    pub endpoint_url: String,
    /// The region.
    pub region: String,
    /// Prefix of the run's tables, one per handoff (deleted afterwards).
    pub table_prefix: String,
    /// When the run started.
    pub started_at: jiff::Timestamp,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Coordinator calls to set up groups and operations (not on the handoff path).
    pub setup_calls: u64,
    /// Handoffs set up (measured ones plus the warm-up).
    pub setup_handoffs: usize,
    /// Event-driven first, then one row per poll interval.
    pub sides: Vec<SideResult>,
}

/// `true` when every volume in `volumes` has a `READY_FOR_PROMOTION` record at `epoch`
/// (the target's condition for promoting, protocol step 5).
pub fn all_ready_at(records: &[Handoff], volumes: &[String], epoch: u64) -> bool {
    volumes.iter().all(|v| {
        records.iter().any(|h| {
            h.volume == *v && h.epoch == epoch && h.state == HandoffState::ReadyForPromotion
        })
    })
}

/// Runs the benchmark against `env`: the event-driven side, then each polling baseline.
/// Creates its own table and queues and deletes them afterwards.
pub async fn run_handoff_bench(env: &AwsEnv, config: &HandoffBenchConfig) -> Result<HandoffReport> {
    if config.handoffs == 0 {
        bail!("--handoffs must be at least 1");
    }
    if config.volumes == 0 {
        bail!("--volumes must be at least 1");
    }
    if config.poll_intervals.iter().any(Duration::is_zero) {
        bail!("poll intervals must be longer than 0");
    }
    let started_at = jiff::Timestamp::now();
    let wall = Instant::now();
    let table_prefix = env.unique("bench");
    let setup = CallCounter::new();
    let bench = Bench {
        env: env.clone(),
        dynamodb: env.dynamodb(),
        table_prefix: table_prefix.clone(),
        tables: Mutex::default(),
        setup: setup.clone(),
        volumes: (0..config.volumes).map(|i| format!("vol-{i}")).collect(),
        config: config.clone(),
    };

    let queue_prefix = format!("{}-", env.unique("bench"));
    let result = async {
        let mut sides = vec![bench.event_driven(&queue_prefix).await?];
        for &interval in &config.poll_intervals {
            sides.push(bench.polling(interval).await?);
        }
        anyhow::Ok(sides)
    }
    .await;
    let tables = std::mem::take(&mut *lock(&bench.tables));
    let setup_handoffs = tables.len();
    cleanup(env, &tables, &queue_prefix).await;
    let sides = result?;

    Ok(HandoffReport {
        config: config.clone(),
        endpoint_url: env.endpoint_url.clone(),
        region: env.region.clone(),
        table_prefix,
        started_at,
        wall: wall.elapsed(),
        setup_calls: setup.total(),
        setup_handoffs,
        sides,
    })
}

/// SQS calls, counted around each [`Inbox`] call (attempts that failed included).
#[derive(Debug, Default)]
struct SqsCalls {
    send: AtomicU64,
    receive: AtomicU64,
    delete: AtomicU64,
}

impl SqsCalls {
    fn reset(&self) {
        for c in [&self.send, &self.receive, &self.delete] {
            c.store(0, Ordering::SeqCst);
        }
    }

    fn add_to(&self, calls: &mut BTreeMap<String, u64>) {
        for (api, c) in [
            ("SendMessage", &self.send),
            ("ReceiveMessage", &self.receive),
            ("DeleteMessage", &self.delete),
        ] {
            *calls.entry(api.to_owned()).or_default() += c.load(Ordering::SeqCst);
        }
    }
}

/// What the event-driven target knows about an operation before the source is ready, and
/// where it reports the confirmation.
struct Pending {
    /// The target's store on the handoff's table.
    store: Store,
    epoch: u64,
    volumes: Vec<String>,
    done: oneshot::Sender<Instant>,
}

type PendingMap = Arc<Mutex<HashMap<String, Pending>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Aborts a spawned task when dropped (so a failed run does not leave a long poll behind).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One handoff's operation and the table it lives in.
struct Slot {
    op: OpRef,
    table: String,
}

struct Bench {
    env: AwsEnv,
    dynamodb: aws_sdk_dynamodb::Client,
    table_prefix: String,
    /// Every table created, for the cleanup.
    tables: Mutex<Vec<String>>,
    /// Counts the coordinator's calls (setup, not in the rows).
    setup: Arc<CallCounter>,
    volumes: Vec<String>,
    config: HandoffBenchConfig,
}

impl Bench {
    /// A store on `table` counting into `calls`.
    fn store(&self, table: &str, calls: &Arc<CallCounter>) -> Store {
        Store::new(&self.dynamodb, table).with_call_counter(calls.clone())
    }

    /// Creates the handoff's table, registers group `bench/<name>` (active: the source) and
    /// starts an operation on it (coordinator side; counted as setup).
    async fn start_handoff(&self, name: &str) -> Result<Slot> {
        let table = format!("{}-{name}", self.table_prefix);
        lock(&self.tables).push(table.clone());
        ensure_table(&self.dynamodb, &table)
            .await
            .with_context(|| format!("creating table {table} on {}", self.env.endpoint_url))?;
        let coordinator = self.store(&table, &self.setup);
        let group = GroupRef::new(NAMESPACE, name)?;
        match coordinator.register_group(&group, SOURCE).await? {
            RegisterOutcome::Registered(_) | RegisterOutcome::AlreadyRegistered(_) => {}
            other => bail!("registering {group}: {other:?}"),
        }
        let req = StartRequest {
            group: group.clone(),
            source: SOURCE.into(),
            target: TARGET.into(),
            mode: Mode::Consistency,
            force: false,
            source_is_down: false,
            reason: "handoff latency benchmark".into(),
            requested_by: "failover-bench".into(),
            lease_ttl: LEASE,
            op_id: None,
        };
        match coordinator.start_operation(req).await? {
            StartOutcome::Started(op) => Ok(Slot {
                op: OpRef::from(&op),
                table,
            }),
            other => bail!("starting an operation on {group}: {other:?}"),
        }
    }

    /// The source's step 4: all volumes ready in one conditional write. Returns when the
    /// write is durable.
    async fn mark_ready(&self, source: &Store, op: &OpRef) -> Result<Instant> {
        match source.mark_all_ready(op, SOURCE, &self.volumes).await? {
            Outcome::Done(_) => Ok(Instant::now()),
            other => bail!("mark_all_ready on {} ({}): {other:?}", op.group, op.id),
        }
    }

    async fn event_driven(&self, queue_prefix: &str) -> Result<SideResult> {
        let wait = self.config.receive_wait_seconds.min(MAX_WAIT_SECONDS);
        let options = InboxOptions {
            prefix: queue_prefix.to_owned(),
            ..InboxOptions::default()
        };
        let target_inbox = Inbox::new(self.env.sqs(), TARGET, options.clone());
        let source_inbox = Inbox::new(self.env.sqs(), SOURCE, options);
        target_inbox
            .ensure_queues(TARGET)
            .await
            .context("creating the target's inbox")?;
        let dynamo = CallCounter::new();
        let sqs = Arc::new(SqsCalls::default());
        let pending: PendingMap = Arc::default();
        let failed_reads = Arc::new(AtomicU64::new(0));
        let _target = AbortOnDrop(tokio::spawn(event_target(
            target_inbox,
            pending.clone(),
            sqs.clone(),
            failed_reads.clone(),
            wait,
        )));

        // Warm-up: connections, queue URLs; not measured.
        self.event_handoff("ev-warmup", &dynamo, &source_inbox, &pending, &sqs)
            .await
            .context("warm-up handoff")?;
        dynamo.reset();
        sqs.reset();
        failed_reads.store(0, Ordering::SeqCst);

        let wall = Instant::now();
        let mut latencies = Vec::with_capacity(self.config.handoffs);
        for i in 0..self.config.handoffs {
            let name = format!("ev-{i:05}");
            latencies.push(
                self.event_handoff(&name, &dynamo, &source_inbox, &pending, &sqs)
                    .await
                    .with_context(|| format!("event-driven handoff {name}"))?,
            );
            if (i + 1) % 50 == 0 {
                tracing::info!("event-driven: {}/{} handoffs", i + 1, self.config.handoffs);
            }
        }
        let wall = wall.elapsed();
        let mut calls = dynamo.by_api();
        sqs.add_to(&mut calls);
        Ok(SideResult {
            side: TargetSide::EventDriven {
                receive_wait_seconds: wait,
            },
            latencies,
            calls,
            early: 0,
            failed_reads: failed_reads.load(Ordering::SeqCst),
            wall,
        })
    }

    /// One event-driven handoff: set up, (source work), mark ready, notify, wait for the
    /// target's confirmation.
    async fn event_handoff(
        &self,
        name: &str,
        dynamo: &Arc<CallCounter>,
        source_inbox: &Inbox,
        pending: &PendingMap,
        sqs: &SqsCalls,
    ) -> Result<Duration> {
        let Slot { op, table } = self.start_handoff(name).await?;
        let source = self.store(&table, dynamo);
        let (tx, rx) = oneshot::channel();
        lock(pending).insert(
            op.id.clone(),
            Pending {
                store: self.store(&table, dynamo),
                epoch: op.epoch,
                volumes: self.volumes.clone(),
                done: tx,
            },
        );
        if !self.config.source_work.is_zero() {
            tokio::time::sleep(self.config.source_work).await;
        }
        let durable = self.mark_ready(&source, &op).await?;
        let envelope = Envelope {
            kind: EnvelopeKind::ReadyForPromotion,
            operation_id: op.id.clone(),
            group: op.group.clone(),
            epoch: op.epoch,
            sender: SOURCE.into(),
            sent_at: jiff::Timestamp::now(),
        };
        sqs.send.fetch_add(1, Ordering::SeqCst);
        source_inbox
            .send(TARGET, &envelope)
            .await
            .context("notifying the target")?;
        let confirmed = match tokio::time::timeout(self.config.handoff_timeout, rx).await {
            Ok(Ok(at)) => at,
            Ok(Err(_)) => bail!("the target task stopped"),
            Err(_) => {
                lock(pending).remove(&op.id);
                bail!(
                    "the target did not confirm operation {} within {:?}",
                    op.id,
                    self.config.handoff_timeout
                )
            }
        };
        Ok(confirmed.saturating_duration_since(durable))
    }

    async fn polling(&self, interval: Duration) -> Result<SideResult> {
        let tag = interval.as_millis();
        let slots: Vec<Slot> = futures::stream::iter(0..self.config.handoffs)
            .map(|i| async move { self.start_handoff(&format!("poll{tag}ms-{i:05}")).await })
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
            .with_context(|| format!("setting up the {interval:?} polling handoffs"))?;
        tracing::info!(
            "polling every {interval:?}: {} handoffs set up, measuring",
            slots.len()
        );

        let dynamo = CallCounter::new();
        let failed_reads = Arc::new(AtomicU64::new(0));
        // Leave the setup a moment to finish before the first write or read.
        let base = tokio::time::Instant::now() + Duration::from_millis(200);
        let spread = STAGGER * u32::try_from(slots.len()).unwrap_or(u32::MAX);
        let deadline = Duration::from_millis(200)
            + spread
            + self.config.source_work
            + interval * 2
            + self.config.handoff_timeout;
        let wall = Instant::now();
        let tasks: Vec<_> = slots
            .into_iter()
            .zip(0u32..)
            .map(|(Slot { op, table }, i)| {
                let origin = base + STAGGER * i;
                // Independent uniform offsets: when the source writes, and the poller's phase.
                let write_at = origin + self.config.source_work + interval.mul_f64(rand::random());
                let first_read = origin + interval.mul_f64(rand::random());
                let source = self.store(&table, &dynamo);
                let target = self.store(&table, &dynamo);
                let volumes = self.volumes.clone();
                let failed_reads = failed_reads.clone();
                tokio::spawn(tokio::time::timeout(deadline, async move {
                    let write = async {
                        tokio::time::sleep_until(write_at).await;
                        match source.mark_all_ready(&op, SOURCE, &volumes).await? {
                            Outcome::Done(_) => Ok(Instant::now()),
                            other => bail!("mark_all_ready on {}: {other:?}", op.group),
                        }
                    };
                    let poll = async {
                        let mut tick = first_read;
                        loop {
                            tokio::time::sleep_until(tick).await;
                            match target.list_handoffs(&op.id).await {
                                Ok(records) if all_ready_at(&records, &volumes, op.epoch) => {
                                    return Instant::now();
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    failed_reads.fetch_add(1, Ordering::Relaxed);
                                    tracing::warn!("poller read failed: {}", chain(&e));
                                }
                            }
                            tick += interval;
                        }
                    };
                    let (durable, confirmed) = tokio::join!(write, poll);
                    let durable: Instant = durable?;
                    tracing::debug!(
                        write_at = ?(write_at - origin),
                        first_read = ?(first_read - origin),
                        durable = ?durable.saturating_duration_since(origin.into_std()),
                        confirmed = ?confirmed.saturating_duration_since(origin.into_std()),
                        "polling handoff"
                    );
                    anyhow::Ok((
                        confirmed.saturating_duration_since(durable),
                        confirmed < durable,
                    ))
                }))
            })
            .collect();
        let mut latencies = Vec::with_capacity(tasks.len());
        let mut early = 0;
        for task in tasks {
            let (latency, was_early) = task
                .await
                .context("a polling handoff task panicked")?
                .map_err(|_| {
                    anyhow::anyhow!("a polling handoff took longer than {deadline:?}")
                })??;
            latencies.push(latency);
            early += usize::from(was_early);
        }
        let wall = wall.elapsed();
        tracing::info!("polling every {interval:?}: done in {wall:?}");
        Ok(SideResult {
            side: TargetSide::Polling { interval },
            latencies,
            calls: dynamo.by_api(),
            early,
            failed_reads: failed_reads.load(Ordering::SeqCst),
            wall,
        })
    }
}

/// The event-driven target: long-polls its inbox; on `ReadyForPromotion` re-reads the
/// handoff records (consistent query) and, when every volume is ready at the operation's
/// epoch, deletes the message and reports the moment of the confirming read.
async fn event_target(
    inbox: Inbox,
    pending: PendingMap,
    sqs: Arc<SqsCalls>,
    failed_reads: Arc<AtomicU64>,
    wait: u32,
) {
    loop {
        sqs.receive.fetch_add(1, Ordering::SeqCst);
        let messages = match inbox.receive(wait, 10).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("receive failed: {}", chain(&e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for message in messages {
            // A body that does not decode is left for the dead-letter queue.
            let Ok(envelope) = &message.envelope else {
                continue;
            };
            let expected = lock(&pending)
                .get(&envelope.operation_id)
                .map(|p| (p.store.clone(), p.epoch, p.volumes.clone()));
            let confirmed = match (envelope.kind, expected) {
                (EnvelopeKind::ReadyForPromotion, Some((store, epoch, volumes))) => {
                    match store.list_handoffs(&envelope.operation_id).await {
                        Ok(records) => {
                            let at = Instant::now();
                            all_ready_at(&records, &volumes, epoch).then_some(at)
                        }
                        Err(e) => {
                            // Keep the message: SQS delivers it again after the visibility
                            // timeout (a real agent would also re-read on its slow timer).
                            failed_reads.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("reading the handoff records failed: {}", chain(&e));
                            continue;
                        }
                    }
                }
                // A hint about nothing we wait for: nothing to do.
                _ => None,
            };
            sqs.delete.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = inbox.delete(&message.receipt_handle).await {
                tracing::warn!("deleting a handled message failed: {}", chain(&e));
            }
            if let Some(at) = confirmed
                && let Some(p) = lock(&pending).remove(&envelope.operation_id)
            {
                let _ = p.done.send(at);
            }
        }
    }
}

/// An error and its sources, joined by `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Deletes the run's tables and queues (best effort: moto keeps everything in memory).
async fn cleanup(env: &AwsEnv, tables: &[String], queue_prefix: &str) {
    let dynamodb = env.dynamodb();
    futures::stream::iter(tables)
        .for_each_concurrent(SETUP_CONCURRENCY, |table| {
            let dynamodb = dynamodb.clone();
            async move {
                if let Err(e) = dynamodb.delete_table().table_name(table).send().await {
                    tracing::warn!("deleting table {table}: {e}");
                }
            }
        })
        .await;
    let options = InboxOptions {
        prefix: queue_prefix.to_owned(),
        ..InboxOptions::default()
    };
    let sqs = env.sqs();
    for queue in [
        options.inbox_queue_name(TARGET),
        options.dead_letter_queue_name(TARGET),
    ] {
        let Ok(out) = sqs.get_queue_url().queue_name(&queue).send().await else {
            continue;
        };
        if let Some(url) = out.queue_url()
            && let Err(e) = sqs.delete_queue().queue_url(url).send().await
        {
            tracing::warn!("deleting queue {queue}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(volume: &str, state: HandoffState, epoch: u64) -> Handoff {
        Handoff {
            op_id: "op".into(),
            volume: volume.into(),
            state,
            epoch,
            writer: SOURCE.into(),
            ready_at: None,
            promoted_at: None,
        }
    }

    #[test]
    fn ready_means_every_volume_ready_at_the_epoch() {
        let vols = vec!["a".to_owned(), "b".to_owned()];
        let ready = HandoffState::ReadyForPromotion;
        assert!(all_ready_at(
            &[record("a", ready, 3), record("b", ready, 3)],
            &vols,
            3
        ));
        // One volume missing.
        assert!(!all_ready_at(&[record("a", ready, 3)], &vols, 3));
        // A record from another epoch.
        assert!(!all_ready_at(
            &[record("a", ready, 3), record("b", ready, 2)],
            &vols,
            3
        ));
        // Already promoted is not "ready to promote".
        assert!(!all_ready_at(
            &[
                record("a", ready, 3),
                record("b", HandoffState::Promoted, 3)
            ],
            &vols,
            3
        ));
        assert!(!all_ready_at(&[], &vols, 1));
    }

    #[test]
    fn calls_per_handoff() {
        let r = SideResult {
            side: TargetSide::Polling {
                interval: Duration::from_secs(1),
            },
            latencies: vec![Duration::from_millis(1); 4],
            calls: BTreeMap::from([("Query".into(), 6), ("TransactWriteItems".into(), 4)]),
            early: 0,
            failed_reads: 0,
            wall: Duration::ZERO,
        };
        assert!((r.calls_per_handoff() - 2.5).abs() < 1e-9);
        assert!((r.api_calls_per_handoff(Some("Query")) - 1.5).abs() < 1e-9);
        assert!((r.api_calls_per_handoff(Some("SendMessage"))).abs() < 1e-9);
    }
}
