//! The DynamoDB store (`failover_messages::store`) against a real moto server.
//!
//! Each test creates its own table, so the tests run in parallel on one server. Time is an
//! injected [`ManualClock`], moved by hand to expire leases and heartbeats.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use failover_messages::keys::GroupRef;
use failover_messages::records::{
    HandoffState, Item, JournalStep, Mode, Operation, Phase, Record, StepStatus, Timings,
};
use failover_messages::setup::{SetupError, TableSetup, ensure_table};
use failover_messages::store::{
    CallOutcome, CarriedStages, DualActiveMark, ManualClock, OpRef, Outcome, RegisterOutcome,
    StartOutcome, StartRequest, Store, SuspendOutcome,
};
use failover_tests::aws::{AwsEnv, moto};

const LEASE: Duration = Duration::from_secs(30);

struct Fixture {
    env: AwsEnv,
    table: String,
    clock: Arc<ManualClock>,
    store: Store,
}

impl Fixture {
    async fn new() -> Result<Self> {
        // Store logs (retries, outcomes) show up in the output of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "failover_messages=debug".into()),
            )
            .with_test_writer()
            .try_init();
        let env = moto().await?;
        let table = env.unique("t");
        ensure_table(&env.dynamodb(), &table)
            .await
            .with_context(|| format!("creating table {table}"))?;
        let clock = Arc::new(ManualClock::starting_now());
        let store = Store::new(&env.dynamodb(), table.clone()).with_clock(clock.clone());
        Ok(Self {
            env,
            table,
            clock,
            store,
        })
    }

    /// Another store on the same table and clock (a second coordinator or agent).
    fn another_store(&self) -> Store {
        Store::new(&self.env.dynamodb(), self.table.clone()).with_clock(self.clock.clone())
    }

    async fn registered(&self, group: &str) -> Result<GroupRef> {
        let group: GroupRef = group.parse()?;
        match self.store.register_group(&group, "east").await? {
            RegisterOutcome::Registered(_) => Ok(group),
            other => bail!("registering {group}: {other:?}"),
        }
    }

    async fn started(&self, group: &GroupRef) -> Result<Operation> {
        match self
            .store
            .start_operation(start(group, "coordinator-a"))
            .await?
        {
            StartOutcome::Started(op) => Ok(op),
            other => bail!("starting on {group}: {other:?}"),
        }
    }
}

fn start(group: &GroupRef, by: &str) -> StartRequest {
    StartRequest {
        group: group.clone(),
        source: "east".into(),
        target: "west".into(),
        mode: Mode::Consistency,
        force: false,
        source_is_down: false,
        reason: "store_moto test".into(),
        requested_by: by.into(),
        lease_ttl: LEASE,
        op_id: None,
    }
}

fn vols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn two_coordinators_racing_produce_one_operation_and_one_refusal_naming_the_holder()
-> Result<()> {
    let f = Fixture::new().await?;
    let a = f.another_store();
    let b = f.another_store();
    for i in 0..5 {
        let group = f.registered(&format!("shop/race-{i}")).await?;
        let (ra, rb) = tokio::join!(
            a.start_operation(start(&group, "coordinator-a")),
            b.start_operation(start(&group, "coordinator-b")),
        );
        let (winner, refusal) = match (ra?, rb?) {
            (StartOutcome::Started(op), other) | (other, StartOutcome::Started(op)) => (op, other),
            (x, y) => bail!("nobody won on {group}: {x:?} / {y:?}"),
        };
        println!("race on {group}: {refusal:?}");
        match refusal {
            StartOutcome::LeaseHeld { holder, op_id, .. }
            | StartOutcome::LostRace { holder, op_id, .. } => {
                assert_eq!(holder, winner.requested_by, "the refusal names the holder");
                assert_eq!(op_id, winner.id, "the refusal names the winning operation");
            }
            other => bail!("unexpected refusal on {group}: {other:?}"),
        }
        let state = f.store.get_group_state(&group).await?.context("state")?;
        assert_eq!(state.epoch, 1);
        assert_eq!(state.op_id.as_deref(), Some(winner.id.as_str()));
    }
    let ops = f.store.list_operations(None).await?;
    assert_eq!(ops.len(), 5, "exactly one operation per group: {ops:#?}");
    Ok(())
}

#[tokio::test]
async fn a_stale_epoch_write_is_rejected_for_ready_claim_and_complete() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let old = f.started(&group).await?;
    let old_ref = OpRef::from(&old);
    // The source marked its volume ready and the target claimed, then everything stalled.
    assert!(
        f.store
            .mark_all_ready(&old_ref, "east", &vols(&["data"]))
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&old_ref, "west", &vols(&["data"]))
            .await?
            .is_done()
    );

    // The claim was never completed: only a forced operation may take over.
    f.clock.advance(LEASE + Duration::from_secs(1));
    let mut forced = start(&group, "coordinator-b");
    forced.force = true;
    let new = match f.store.start_operation(forced).await? {
        StartOutcome::Started(op) => op,
        other => bail!("a forced start after an expired lease was refused: {other:?}"),
    };
    assert_eq!(new.epoch, old.epoch + 1);

    let expect_stale = |what: &str, stale: Option<failover_messages::store::Stale>| -> Result<()> {
        let s = stale.with_context(|| format!("{what} was not rejected as stale"))?;
        assert_eq!(s.expected_epoch, old.epoch, "{what}");
        assert_eq!(s.current_epoch, Some(new.epoch), "{what}");
        assert_eq!(s.current_op.as_deref(), Some(new.id.as_str()), "{what}");
        Ok(())
    };
    let stale = |o: Outcome<_>| match o {
        Outcome::StaleEpoch(s) => Some(s),
        _ => None,
    };
    let before = f.store.list_handoffs(&old.id).await?;
    expect_stale(
        "ready",
        stale(
            f.store
                .mark_all_ready(&old_ref, "east", &vols(&["data", "wal"]))
                .await?
                .map(|_| ()),
        ),
    )?;
    assert_eq!(
        f.store.list_handoffs(&old.id).await?,
        before,
        "a stale ready wrote nothing"
    );
    expect_stale(
        "promoted",
        stale(f.store.mark_promoted(&old_ref, "data", "west").await?),
    )?;
    expect_stale(
        "complete",
        stale(
            f.store
                .complete_operation(&old_ref, Timings::default())
                .await?
                .map(|_| ()),
        ),
    )?;
    expect_stale(
        "renew",
        stale(
            f.store
                .renew_lease(&old_ref, "west", LEASE)
                .await?
                .map(|_| ()),
        ),
    )?;

    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(
        state.active_cluster, "east",
        "a stale complete changed nothing"
    );
    assert_eq!(state.op_id.as_deref(), Some(new.id.as_str()));
    assert!(f.store.history(&group, None).await?.is_empty());

    // Every attempt is counted by outcome: the good writes as `ok`, the lost conditions as
    // answers (`conditional_check_failed`: every write is one conditional `UpdateItem` of one
    // item), never as errors.
    let calls = f.store.calls().by_operation_api_and_outcome();
    println!("AWS calls by outcome: {calls:#?}");
    let count = |op: &str, api: &str, outcome: CallOutcome| {
        calls
            .get(&(op.to_owned(), api.to_owned(), outcome))
            .copied()
            .unwrap_or(0)
    };
    let update = "UpdateItem";
    let lost = CallOutcome::ConditionalCheckFailed;
    assert_eq!(count("mark_all_ready", update, CallOutcome::Ok), 1);
    assert_eq!(count("mark_all_ready", update, lost), 1);
    assert_eq!(count("claim_promotion", update, CallOutcome::Ok), 1);
    assert_eq!(count("mark_promoted", update, lost), 1);
    assert_eq!(count("mark_promoted", update, CallOutcome::Ok), 0);
    // The superseded operation's completion is answered stale from its record (the takeover
    // closed it `Superseded`), without a write.
    assert_eq!(count("complete_operation", update, CallOutcome::Ok), 0);
    assert_eq!(count("complete_operation", update, lost), 0);
    assert_eq!(count("renew_lease", update, lost), 1);
    assert!(
        calls.keys().all(|(_, api, _)| api != "TransactWriteItems"),
        "no transaction: {calls:?}"
    );
    let outcomes = f.store.calls().by_outcome();
    assert_eq!(outcomes.get(&CallOutcome::Error), None, "{outcomes:?}");
    assert_eq!(outcomes.get(&CallOutcome::Throttled), None, "{outcomes:?}");
    Ok(())
}

#[tokio::test]
async fn an_expired_lease_can_be_taken_over_and_a_live_one_cannot() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let first = f.started(&group).await?;
    let coordinator_b = f.another_store();

    f.clock.advance(Duration::from_secs(10));
    match coordinator_b
        .start_operation(start(&group, "coordinator-b"))
        .await?
    {
        StartOutcome::LeaseHeld { holder, op_id, .. } => {
            assert_eq!(holder, "coordinator-a");
            assert_eq!(op_id, first.id);
        }
        other => bail!("a live lease was taken over: {other:?}"),
    }

    // The source agent renews: the lease now lasts until +50 s.
    f.clock.advance(Duration::from_secs(10));
    let lease = f
        .store
        .renew_lease(&OpRef::from(&first), "east", LEASE)
        .await?
        .done()
        .context("renewal refused")?;
    assert_eq!(lease.holder, "east");

    f.clock.advance(Duration::from_secs(20)); // +40 s: still live thanks to the renewal
    match coordinator_b
        .start_operation(start(&group, "coordinator-b"))
        .await?
    {
        StartOutcome::LeaseHeld {
            holder, expires, ..
        } => {
            assert_eq!(holder, "east");
            assert_eq!(expires, lease.expires_at);
        }
        other => bail!("a renewed lease was taken over: {other:?}"),
    }

    f.clock.advance(Duration::from_secs(11)); // +51 s: expired
    let second = match coordinator_b
        .start_operation(start(&group, "coordinator-b"))
        .await?
    {
        StartOutcome::Started(op) => op,
        other => bail!("an expired lease could not be taken over: {other:?}"),
    };
    assert_eq!(second.epoch, first.epoch + 1);
    assert!(
        f.store
            .renew_lease(&OpRef::from(&first), "east", LEASE)
            .await?
            .is_stale()
    );
    // The taken-over operation is closed as Superseded, naming its successor.
    let old = f
        .store
        .get_operation(&first.id)
        .await?
        .context("the first operation")?;
    assert_eq!(old.phase, Phase::Superseded, "{old:?}");
    assert!(
        old.message
            .as_deref()
            .is_some_and(|m| m.contains(&second.id)),
        "{old:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_ready_transaction_is_all_or_nothing() -> Result<()> {
    let f = Fixture::new().await?;

    // Happy path, repeated: every volume READY at the epoch, the first readyAt kept.
    let group = f.registered("shop/ready").await?;
    let op = OpRef::from(&f.started(&group).await?);
    let volumes = vols(&["data-0", "data-1", "wal"]);
    assert!(
        f.store
            .mark_all_ready(&op, "east", &volumes)
            .await?
            .is_done()
    );
    let first = f.store.list_handoffs(&op.id).await?;
    f.clock.advance(Duration::from_secs(1));
    assert!(
        f.store
            .mark_all_ready(&op, "east", &volumes)
            .await?
            .is_done()
    );
    let again = f.store.list_handoffs(&op.id).await?;
    assert_eq!(first, again);
    assert_eq!(first.len(), 3);
    assert!(
        first
            .iter()
            .all(|h| h.state == HandoffState::ReadyForPromotion && h.epoch == op.epoch)
    );

    // UPTIME: the target promoted one volume first, so the source's READY for all of them
    // is refused and nothing else is written.
    let group = f.registered("shop/promoted").await?;
    let mut uptime = start(&group, "coordinator-a");
    uptime.mode = Mode::Uptime;
    let op = match f.store.start_operation(uptime).await? {
        StartOutcome::Started(op) => OpRef::from(&op),
        other => bail!("{other:?}"),
    };
    assert!(f.store.claim_promotion(&op, "west", &[]).await?.is_done());
    assert!(
        f.store
            .mark_promoted(&op, "data-1", "west")
            .await?
            .is_done()
    );
    match f.store.mark_all_ready(&op, "east", &volumes).await? {
        Outcome::AlreadyPromoted { volume } => assert_eq!(volume, "data-1"),
        other => bail!("expected AlreadyPromoted, got {other:?}"),
    }
    let records = f.store.list_handoffs(&op.id).await?;
    assert_eq!(
        records.len(),
        1,
        "only the PROMOTED record exists: {records:?}"
    );
    assert_eq!(records[0].state, HandoffState::Promoted);

    // Abort requested first: nothing is written.
    let group = f.registered("shop/aborted").await?;
    let op = OpRef::from(&f.started(&group).await?);
    assert!(f.store.request_abort(&op.id).await?.is_done());
    assert!(matches!(
        f.store.mark_all_ready(&op, "east", &volumes).await?,
        Outcome::AbortRequested { .. }
    ));
    assert!(f.store.list_handoffs(&op.id).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn claim_waits_until_every_volume_is_ready_for_promotion() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let op = OpRef::from(&f.started(&group).await?);
    let volumes = vols(&["data-0", "data-1"]);
    match f.store.claim_promotion(&op, "west", &volumes).await? {
        Outcome::NotReady { missing } => assert_eq!(missing, volumes),
        other => bail!("claimed without handoff records: {other:?}"),
    }
    assert!(
        f.store
            .get_operation(&op.id)
            .await?
            .context("op")?
            .promotion_started_at
            .is_none()
    );
    // Without naming the volumes (and without the group-level mark of a group that has
    // none), a CONSISTENCY claim is not ready either.
    match f.store.claim_promotion(&op, "west", &[]).await? {
        Outcome::NotReady { missing } => assert!(missing.is_empty()),
        other => bail!("claimed without handoff records: {other:?}"),
    }
    assert!(
        f.store
            .mark_all_ready(&op, "east", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&op, "west", &volumes)
            .await?
            .is_done()
    );
    Ok(())
}

#[tokio::test]
async fn claim_promotion_and_request_abort_exclude_each_other_in_both_orders() -> Result<()> {
    let f = Fixture::new().await?;
    let volumes = vols(&["data"]);

    // Claim first: the abort is refused, only forward is offered.
    let group = f.registered("shop/claim-first").await?;
    let op = OpRef::from(&f.started(&group).await?);
    assert!(
        f.store
            .mark_all_ready(&op, "east", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&op, "west", &volumes)
            .await?
            .is_done()
    );
    assert!(matches!(
        f.store.request_abort(&op.id).await?,
        Outcome::PromotionClaimed { .. }
    ));
    assert!(
        f.store
            .get_operation(&op.id)
            .await?
            .context("op")?
            .abort_requested_at
            .is_none()
    );

    // Abort first: the claim is refused, and the source closes the operation as Aborted.
    let group = f.registered("shop/abort-first").await?;
    let op = OpRef::from(&f.started(&group).await?);
    assert!(
        f.store
            .mark_all_ready(&op, "east", &volumes)
            .await?
            .is_done()
    );
    assert!(f.store.request_abort(&op.id).await?.is_done());
    assert!(matches!(
        f.store.claim_promotion(&op, "west", &volumes).await?,
        Outcome::AbortRequested { .. }
    ));
    assert!(
        f.store
            .get_operation(&op.id)
            .await?
            .context("op")?
            .promotion_started_at
            .is_none()
    );
    assert!(matches!(
        f.store.complete_operation(&op, Timings::default()).await?,
        Outcome::AbortRequested { .. }
    ));
    let entry = f
        .store
        .finish_abort(&op, Timings::default())
        .await?
        .done()
        .context("finish_abort")?;
    assert_eq!(entry.operation.phase, Phase::Aborted);
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(
        state.active_cluster, "east",
        "the source stays active after an abort"
    );
    assert_eq!(state.op_id, None);
    assert_eq!(state.lease, None);

    // Both at once: exactly one wins.
    for i in 0..3 {
        let group = f.registered(&format!("shop/both-{i}")).await?;
        let op = OpRef::from(&f.started(&group).await?);
        assert!(
            f.store
                .mark_all_ready(&op, "east", &volumes)
                .await?
                .is_done()
        );
        let other = f.another_store();
        let (claim, abort) = tokio::join!(
            f.store.claim_promotion(&op, "west", &volumes),
            other.request_abort(&op.id)
        );
        let (claim, abort) = (claim?, abort?);
        assert!(
            claim.is_done() != abort.is_done(),
            "exactly one of claim and abort wins: {claim:?} / {abort:?}"
        );
        let stored = f.store.get_operation(&op.id).await?.context("op")?;
        assert!(stored.promotion_started_at.is_some() != stored.abort_requested_at.is_some());
    }
    Ok(())
}

/// The group state item as stored (raw), for the attributes no record type decodes.
async fn raw_state(f: &Fixture, group: &GroupRef) -> Result<Item> {
    raw_item(f, failover_messages::keys::group_state_key(group)).await
}

/// An item as stored (raw).
async fn raw_item(f: &Fixture, (pk, sk): (String, String)) -> Result<Item> {
    f.env
        .dynamodb()
        .get_item()
        .table_name(&f.table)
        .key(failover_messages::keys::PK, AttributeValue::S(pk))
        .key(failover_messages::keys::SK, AttributeValue::S(sk))
        .consistent_read(true)
        .send()
        .await?
        .item
        .context("no such item")
}

#[tokio::test]
async fn a_failure_mark_and_a_claim_exclude_each_other_in_both_orders() -> Result<()> {
    let f = Fixture::new().await?;
    let volumes = vols(&["data"]);
    // One async fn per order: a debug build's poll frame reserves room for every store
    // call's future of one function at once, and all four in one came near the test
    // thread's 2 MiB stack.
    claim_first(&f, &volumes).await?;
    failure_first(&f, &volumes).await?;
    abort_first(&f).await?;
    both_at_once(&f, &volumes).await
}

/// Claim first: the failure is not recorded (only forward), the operation completes.
async fn claim_first(f: &Fixture, volumes: &[String]) -> Result<()> {
    let group = f.registered("shop/claim-first").await?;
    let op = OpRef::from(&f.started(&group).await?);
    assert!(
        f.store
            .mark_all_ready(&op, "east", volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&op, "west", volumes)
            .await?
            .is_done()
    );
    match f
        .store
        .fail_operation(&op, "east", "the wait for the close ran out")
        .await?
    {
        Outcome::PromotionClaimed { at: Some(_), by } => assert_eq!(by.as_deref(), Some("west")),
        other => bail!("a failure was recorded after the claim: {other:?}"),
    }
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert!(!stored.phase.is_terminal(), "phase {:?}", stored.phase);
    assert!(!raw_state(f, &group).await?.contains_key("failedAt"));
    assert!(
        f.store
            .complete_operation(&op, Timings::default())
            .await?
            .is_done()
    );
    Ok(())
}

/// Failure first: the claim is refused; the group stays with the failed operation, which
/// the abort still rolls back and closes.
async fn failure_first(f: &Fixture, volumes: &[String]) -> Result<()> {
    let group = f.registered("shop/failure-first").await?;
    let op = OpRef::from(&f.started(&group).await?);
    assert!(
        f.store
            .mark_all_ready(&op, "east", volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .fail_operation(&op, "east", "the wait for the claim ran out")
            .await?
            .is_done()
    );
    // Again (a resumed run): harmless, the first message is kept.
    assert!(
        f.store
            .fail_operation(&op, "west", "the wait for READY ran out")
            .await?
            .is_done()
    );
    let state = raw_state(f, &group).await?;
    assert_eq!(
        state
            .get("failedBy")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("east")
    );
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(stored.phase, Phase::Failed);
    assert_eq!(
        stored.message.as_deref(),
        Some("the wait for the claim ran out")
    );
    assert_eq!(
        f.store.claim_promotion(&op, "west", volumes).await?,
        Outcome::AlreadyFinished {
            phase: Phase::Failed
        }
    );
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(state.promotion_claimed_by, None);
    assert!(
        f.store
            .get_operation(&op.id)
            .await?
            .context("op")?
            .promotion_started_at
            .is_none()
    );
    assert!(matches!(
        f.store.complete_operation(&op, Timings::default()).await?,
        Outcome::AlreadyFinished {
            phase: Phase::Failed
        }
    ));
    assert!(f.store.request_abort(&op.id).await?.is_done());
    let entry = f
        .store
        .finish_abort(&op, Timings::default())
        .await?
        .done()
        .context("finish_abort")?;
    assert_eq!(entry.operation.phase, Phase::Aborted);
    Ok(())
}

/// An abort first: the failure is not recorded either.
async fn abort_first(f: &Fixture) -> Result<()> {
    let group = f.registered("shop/abort-first").await?;
    let op = OpRef::from(&f.started(&group).await?);
    assert!(f.store.request_abort(&op.id).await?.is_done());
    assert!(matches!(
        f.store.fail_operation(&op, "east", "too late").await?,
        Outcome::AbortRequested { .. }
    ));
    assert!(!raw_state(f, &group).await?.contains_key("failedAt"));
    Ok(())
}

/// Both at once: exactly one wins.
async fn both_at_once(f: &Fixture, volumes: &[String]) -> Result<()> {
    for i in 0..3 {
        let group = f.registered(&format!("shop/both-{i}")).await?;
        let op = OpRef::from(&f.started(&group).await?);
        assert!(
            f.store
                .mark_all_ready(&op, "east", volumes)
                .await?
                .is_done()
        );
        let other = f.another_store();
        let (claim, failure) = tokio::join!(
            f.store.claim_promotion(&op, "west", volumes),
            other.fail_operation(&op, "east", "the wait for the claim ran out")
        );
        let (claim, failure) = (claim?, failure?);
        assert!(
            claim.is_done() != failure.is_done(),
            "exactly one of claim and failure wins: {claim:?} / {failure:?}"
        );
        let stored = f.store.get_operation(&op.id).await?.context("op")?;
        assert_eq!(
            stored.promotion_started_at.is_some(),
            stored.phase != Phase::Failed,
            "{stored:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_failure_mark_stopped_before_the_operation_item_still_reads_failed() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let op = OpRef::from(&f.started(&group).await?);
    // The group-state write of `fail_operation` landed; its agent stopped before the
    // operation item's.
    let (pk, sk) = failover_messages::keys::group_state_key(&group);
    f.env
        .dynamodb()
        .update_item()
        .table_name(&f.table)
        .key(failover_messages::keys::PK, AttributeValue::S(pk))
        .key(failover_messages::keys::SK, AttributeValue::S(sk))
        .update_expression("SET failedAt = :t, failedBy = :by, failureMessage = :m")
        .expression_attribute_values(":t", AttributeValue::N("1000".into()))
        .expression_attribute_values(":by", AttributeValue::S("west".into()))
        .expression_attribute_values(":m", AttributeValue::S("the wait for READY ran out".into()))
        .send()
        .await?;
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(
        stored.phase,
        Phase::Failed,
        "the group state's mark decides"
    );
    assert_eq!(
        stored.message.as_deref(),
        Some("the wait for READY ran out")
    );
    assert_eq!(
        f.store.get_operation_of(&group, &op.id).await?,
        Some(stored)
    );
    assert!(
        f.store
            .mark_all_ready(&op, "east", &vols(&["data"]))
            .await?
            .is_done()
    );
    assert_eq!(
        f.store
            .claim_promotion(&op, "west", &vols(&["data"]))
            .await?,
        Outcome::AlreadyFinished {
            phase: Phase::Failed
        }
    );
    // The run that resumes writes the operation item too.
    assert!(
        f.store
            .fail_operation(&op, "west", "the wait for READY ran out")
            .await?
            .is_done()
    );
    // An abort after the mark goes on as an abort: the operation reads `Aborting`.
    assert!(f.store.request_abort(&op.id).await?.is_done());
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(stored.phase, Phase::Aborting);
    Ok(())
}

#[tokio::test]
async fn a_failure_mark_whose_answer_is_lost_is_read_back() -> Result<()> {
    let f = Fixture::new().await?;
    let proxy = lossy_proxy::start(&f.env.endpoint_url).await?;
    let sdk = failover_tests::aws::sdk_config(&proxy.url, &f.env.region).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = Store::new(&client, f.table.clone())
        .with_clock(f.clock.clone())
        .with_retry_policy(failover_messages::store::retry::RetryPolicy::never());
    let group = f.registered("shop/orders").await?;
    let op = OpRef::from(&f.started(&group).await?);
    proxy.arm();
    assert!(
        store
            .fail_operation(&op, "west", "the wait for READY ran out")
            .await?
            .is_done(),
        "a committed failure mark was reported as lost"
    );
    assert!(!proxy.is_armed(), "the proxy dropped an answer");
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(stored.phase, Phase::Failed);
    // Without a mark to read back, the error stands.
    let group = f.registered("shop/unmarked").await?;
    let op = OpRef::from(&f.started(&group).await?);
    let unreachable = Store::new(
        &aws_sdk_dynamodb::Client::new(
            &failover_tests::aws::sdk_config("http://127.0.0.1:9", &f.env.region).await,
        ),
        f.table.clone(),
    )
    .with_retry_policy(failover_messages::store::retry::RetryPolicy::never());
    assert!(
        unreachable
            .fail_operation(&op, "west", "the wait for READY ran out")
            .await
            .is_err()
    );
    assert_eq!(
        f.store.get_operation(&op.id).await?.context("op")?.phase,
        Phase::Pending
    );
    Ok(())
}

#[tokio::test]
async fn a_new_start_after_a_failed_operation_clears_its_failure_mark() -> Result<()> {
    let f = Fixture::new().await?;
    let volumes = vols(&["data"]);

    // The failed operation's lease expires: a new start takes the group over.
    let group = f.registered("shop/expired").await?;
    let failed = f.started(&group).await?;
    let r1 = OpRef::from(&failed);
    assert!(
        f.store
            .fail_operation(&r1, "west", "the wait for READY ran out")
            .await?
            .is_done()
    );
    match f
        .store
        .start_operation(start(&group, "coordinator-b"))
        .await?
    {
        StartOutcome::LeaseHeld { op_id, .. } => assert_eq!(op_id, failed.id),
        other => bail!("a start passed the failed operation's live lease: {other:?}"),
    }
    f.clock.advance(LEASE + Duration::from_secs(1));
    let second = match f
        .store
        .start_operation(start(&group, "coordinator-b"))
        .await?
    {
        StartOutcome::Started(op) => op,
        other => bail!("the start after the failed operation was refused: {other:?}"),
    };
    let state = raw_state(&f, &group).await?;
    for a in ["failedAt", "failedBy", "failureMessage"] {
        assert!(!state.contains_key(a), "{a} is left on the group state");
    }
    assert_eq!(
        f.store
            .get_operation(&failed.id)
            .await?
            .context("op")?
            .phase,
        Phase::Failed,
        "the failed operation stays Failed"
    );
    let r2 = OpRef::from(&second);
    assert_eq!(
        f.store
            .get_operation(&second.id)
            .await?
            .context("op")?
            .phase,
        Phase::Pending
    );
    assert!(
        f.store
            .mark_all_ready(&r2, "east", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&r2, "west", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .complete_operation(&r2, Timings::default())
            .await?
            .is_done()
    );
    assert!(
        f.store
            .fail_operation(&r1, "west", "late")
            .await?
            .is_stale(),
        "the old operation's failure mark is stale"
    );

    // The failed operation is aborted and closed: the group is free at once, and the next
    // start clears the mark the abort's close left.
    let group = f.registered("shop/aborted").await?;
    let failed = OpRef::from(&f.started(&group).await?);
    assert!(
        f.store
            .fail_operation(&failed, "east", "a volume is Degraded")
            .await?
            .is_done()
    );
    assert!(f.store.request_abort(&failed.id).await?.is_done());
    assert!(
        f.store
            .finish_abort(&failed, Timings::default())
            .await?
            .is_done()
    );
    let next = OpRef::from(&f.started(&group).await?);
    assert!(!raw_state(&f, &group).await?.contains_key("failedAt"));
    assert!(
        f.store
            .mark_all_ready(&next, "east", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&next, "west", &volumes)
            .await?
            .is_done()
    );

    // A forced start over a failed operation clears it too.
    let group = f.registered("shop/forced").await?;
    let failed = OpRef::from(&f.started(&group).await?);
    assert!(
        f.store
            .fail_operation(&failed, "west", "the wait for READY ran out")
            .await?
            .is_done()
    );
    f.clock.advance(LEASE + Duration::from_secs(1));
    let mut forced = start(&group, "coordinator-b");
    forced.force = true;
    let forced = match f.store.start_operation(forced).await? {
        StartOutcome::Started(op) => OpRef::from(&op),
        other => bail!("the forced start was refused: {other:?}"),
    };
    assert!(
        f.store
            .claim_promotion(&forced, "west", &[])
            .await?
            .is_done()
    );
    Ok(())
}

#[tokio::test]
async fn a_claimed_promotion_can_only_be_finished_forward_or_forced() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let first = f.started(&group).await?;
    let r1 = OpRef::from(&first);
    let volumes = vols(&["data"]);
    assert!(
        f.store
            .mark_all_ready(&r1, "east", &volumes)
            .await?
            .is_done()
    );
    let err = f
        .store
        .claim_promotion(&r1, "north", &volumes)
        .await
        .unwrap_err();
    assert!(
        format!("{:#}", anyhow::Error::from(err)).contains("north is not the target"),
        "only the target may claim"
    );
    assert!(
        f.store
            .claim_promotion(&r1, "west", &volumes)
            .await?
            .is_done()
    );
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(state.promotion_claimed_by.as_deref(), Some("west"));
    assert_eq!(
        state.entitled_cluster(),
        "west",
        "the claimer is entitled, not the old active"
    );
    assert!(matches!(
        f.store.request_abort(&first.id).await?,
        Outcome::PromotionClaimed { at: Some(_), .. }
    ));

    // The target died after claiming; the lease expires.
    f.clock.advance(LEASE + Duration::from_secs(1));
    match f
        .store
        .start_operation(start(&group, "coordinator-b"))
        .await?
    {
        StartOutcome::PromotionClaimed {
            claimed_by, op_id, ..
        } => {
            assert_eq!(claimed_by, "west");
            assert_eq!(op_id.as_deref(), Some(first.id.as_str()));
        }
        other => bail!("a non-forced start passed a claimed promotion: {other:?}"),
    }
    let mut forced = start(&group, "coordinator-b");
    forced.force = true;
    let second = match f.store.start_operation(forced).await? {
        StartOutcome::Started(op) => op,
        other => bail!("the forced start was refused: {other:?}"),
    };
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(
        state.promotion_claimed_by.as_deref(),
        Some("west"),
        "a forced start keeps the claim"
    );
    match f.store.request_abort(&second.id).await? {
        Outcome::PromotionClaimed { at: None, by } => assert_eq!(by.as_deref(), Some("west")),
        other => bail!("an abort passed the group's claim: {other:?}"),
    }

    // Forward: the forced operation's target claims without handoff records and completes.
    let r2 = OpRef::from(&second);
    assert!(f.store.claim_promotion(&r2, "west", &[]).await?.is_done());
    assert!(
        f.store
            .complete_operation(&r2, Timings::default())
            .await?
            .is_done()
    );
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(
        (state.active_cluster.as_str(), state.promotion_claimed_by),
        ("west", None)
    );
    assert!(
        f.store
            .claim_promotion(&r1, "west", &volumes)
            .await?
            .is_stale()
    );
    Ok(())
}

#[tokio::test]
async fn complete_writes_history_and_releases_the_lease() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    f.store.calls().reset();
    let op = f.started(&group).await?;
    let r = OpRef::from(&op);
    let volumes = vols(&["data-0", "data-1"]);

    // Source: the replica counts, in the write that marks the operation Running.
    let phase = |op: Option<Operation>| op.map(|o| (o.phase, o.original_replicas));
    assert_eq!(
        phase(f.store.get_operation(&op.id).await?),
        Some((Phase::Pending, BTreeMap::new()))
    );
    let replicas = BTreeMap::from([("Deployment/api".to_owned(), 3)]);
    assert!(
        f.store
            .record_original_replicas(&r, &replicas)
            .await?
            .is_done()
    );
    assert_eq!(
        phase(f.store.get_operation(&op.id).await?),
        Some((Phase::Running, replicas.clone()))
    );
    assert!(
        f.store
            .record_original_replicas(&r, &BTreeMap::from([("Deployment/api".to_owned(), 0)]))
            .await?
            .is_done()
    );
    let shutdown = [step(&r, "east", "SourceShutdown", "ScaleDown", 0)];
    f.store
        .publish_stage(&r, "east", "SourceShutdown", &shutdown)
        .await?;
    assert!(
        f.store
            .mark_all_ready(&r, "east", &volumes)
            .await?
            .is_done()
    );
    // Target.
    f.clock.advance(Duration::from_secs(2));
    assert_eq!(f.store.list_handoffs(&op.id).await?.len(), 2);
    assert!(
        f.store
            .claim_promotion(&r, "west", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .mark_promoted(&r, &volumes[0], "west")
            .await?
            .is_done()
    );
    assert!(
        f.store
            .mark_all_promoted(&r, &volumes, "west")
            .await?
            .is_done()
    );
    f.clock.advance(Duration::from_secs(3));
    let timings = Timings {
        downtime_ms: Some(4_000),
        ..Timings::default()
    };
    let entry = f
        .store
        .complete_operation(&r, timings)
        .await?
        .done()
        .context("complete")?;
    let calls = f.store.calls().by_operation();
    println!(
        "AWS calls for one failover with 2 volumes: {calls:?} (total {})",
        f.store.calls().total()
    );

    assert_eq!(entry.operation.phase, Phase::Succeeded);
    assert_eq!(entry.operation.timings.total_ms, Some(5_000));
    assert_eq!(
        entry.operation.original_replicas, replicas,
        "the first replica map is kept"
    );
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(state.active_cluster, "west");
    assert_eq!(state.op_id, None);
    assert_eq!(state.lease, None);
    assert_eq!(state.last_op_id.as_deref(), Some(op.id.as_str()));
    assert_eq!(state.epoch, op.epoch);

    let history = f.store.history(&group, None).await?;
    assert_eq!(history, vec![entry.clone()]);
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(stored.phase, Phase::Succeeded);
    assert_eq!(stored.finished_at, Some(entry.finished_at));
    assert!(f.store.handoffs_all_promoted(&op.id).await?);

    // The operation is closed: its agents' writes are refused from now on.
    assert!(f.store.renew_lease(&r, "west", LEASE).await?.is_stale());
    assert_eq!(
        f.store.journal(&r.id, "east").await?,
        shutdown,
        "the published stage stays readable"
    );
    // Completing again answers the same; the released group can fail back at once.
    assert_eq!(
        f.store.complete_operation(&r, Timings::default()).await?,
        Outcome::Done(entry)
    );
    let mut back = start(&group, "coordinator-b");
    back.source = "west".into();
    back.target = "east".into();
    match f.store.start_operation(back).await? {
        StartOutcome::Started(op2) => assert_eq!(op2.epoch, op.epoch + 1),
        other => bail!("the lease was not released: {other:?}"),
    }
    Ok(())
}

/// A forced operation's target marks the operation Running itself; a source that is alive
/// still records its replica counts on it (a second write, only then), and keeps the phase.
#[tokio::test]
async fn replica_counts_are_recorded_on_an_operation_already_running() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let op = f.started(&group).await?;
    let r = OpRef::from(&op);
    assert!(f.store.set_phase(&r, Phase::Running, None).await?.is_done());
    let replicas = BTreeMap::from([("StatefulSet/db".to_owned(), 1)]);
    f.store.calls().reset();
    assert!(
        f.store
            .record_original_replicas(&r, &replicas)
            .await?
            .is_done()
    );
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(
        (stored.phase, stored.original_replicas),
        (Phase::Running, replicas)
    );
    // Repeated: the refused write's answer shows the counts, nothing more is written.
    let before = f.store.calls().total();
    assert!(
        f.store
            .record_original_replicas(&r, &BTreeMap::new())
            .await?
            .is_done()
    );
    assert_eq!(f.store.calls().total(), before + 1);
    let gone = OpRef {
        id: "no-such-op".into(),
        ..r.clone()
    };
    assert!(matches!(
        f.store
            .record_original_replicas(&gone, &BTreeMap::new())
            .await?,
        Outcome::OperationNotFound { .. }
    ));
    Ok(())
}

/// Small helper so the test reads as a sentence.
trait HandoffsAllPromoted {
    async fn handoffs_all_promoted(&self, op_id: &str) -> Result<bool>;
}

impl HandoffsAllPromoted for Store {
    async fn handoffs_all_promoted(&self, op_id: &str) -> Result<bool> {
        let records = self.list_handoffs(op_id).await?;
        Ok(!records.is_empty()
            && records
                .iter()
                .all(|h| h.state == HandoffState::Promoted && h.promoted_at.is_some()))
    }
}

/// A journal step of `cluster` for `r`, `DONE`, started `at_ms` after the Unix epoch's
/// round second 1_800_000_000 and finished 10 ms later.
fn step(r: &OpRef, cluster: &str, stage: &str, task: &str, at_ms: i64) -> JournalStep {
    let t0 = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let at = t0 + jiff::SignedDuration::from_millis(at_ms);
    JournalStep {
        op_id: r.id.clone(),
        cluster: cluster.into(),
        stage: stage.into(),
        task: task.into(),
        epoch: r.epoch,
        status: StepStatus::Done,
        attempts: 1,
        started_at: at,
        first_started_at: Some(at),
        finished_at: Some(at + jiff::SignedDuration::from_millis(10)),
        message: None,
    }
}

#[tokio::test]
async fn a_note_on_a_wait_is_readable_until_its_stage_is_published() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let r = OpRef::from(&f.started(&group).await?);
    let (stage, task) = ("VolumeTransitionTarget", "WaitSourceReleased");
    let text = "east may still be serving: waiting for it to release its side";
    assert!(f.store.journal_note(&r, "west", stage, task, text).await?);
    let west = f.store.journal(&r.id, "west").await?;
    assert_eq!(west.len(), 1, "{west:?}");
    assert_eq!(west[0].message.as_deref(), Some(text), "{west:?}");
    assert_eq!(
        f.store.published_journals(&r.id, &["west"]).await?,
        [Vec::<JournalStep>::new()],
        "the published stages alone leave the note out"
    );
    assert_eq!(
        f.store.journals(&r.id, &["west", "east"]).await?,
        [west.clone(), Vec::new()],
        "both journals from one read, in the order asked"
    );
    assert_eq!(west[0].status, StepStatus::Started);
    assert_eq!(
        (west[0].stage.as_str(), west[0].task.as_str()),
        (stage, task)
    );
    // Another epoch's note does not land on it.
    let other = OpRef {
        epoch: r.epoch + 1,
        ..r.clone()
    };
    assert!(
        !f.store
            .journal_note(&other, "west", stage, task, "x")
            .await?
    );

    // Published, the stage supersedes the note, also one written after it.
    let mut done = step(&r, "west", stage, task, 0);
    done.message = Some("east released its side".into());
    let published = [done, step(&r, "west", stage, "ClaimPromotion", 20)];
    f.store.publish_stage(&r, "west", stage, &published).await?;
    assert!(
        f.store
            .journal_note(&r, "west", stage, task, "late")
            .await?
    );
    assert_eq!(f.store.journal(&r.id, "west").await?, published);
    assert_eq!(
        f.store.published_journals(&r.id, &["east", "west"]).await?,
        [Vec::new(), published.to_vec()],
        "one read, each cluster's published stages"
    );
    Ok(())
}

#[tokio::test]
async fn published_stages_read_back_as_one_journal_in_start_order() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let r = OpRef::from(&f.started(&group).await?);
    // Stage keys sort differently from their start order; so do the steps within one.
    let init = [
        step(&r, "east", "Initialization", "ValidateOperation", 0),
        step(&r, "east", "Initialization", "Preflight", 20),
    ];
    let shutdown = [
        step(&r, "east", "SourceShutdown", "TrafficOff:Ingress/web", 100),
        step(
            &r,
            "east",
            "SourceShutdown",
            "ScaleDown:Deployment/web",
            120,
        ),
    ];
    f.store
        .publish_stage(&r, "east", "SourceShutdown", &shutdown)
        .await?;
    f.store
        .publish_stage(&r, "east", "Initialization", &init)
        .await?;
    f.store
        .publish_stage(
            &r,
            "west",
            "Initialization",
            &[step(&r, "west", "Initialization", "Preflight", 5)],
        )
        .await?;
    let east = f.store.journal(&r.id, "east").await?;
    let tasks: Vec<_> = east.iter().map(|s| s.task.as_str()).collect();
    assert_eq!(
        tasks,
        [
            "ValidateOperation",
            "Preflight",
            "TrafficOff:Ingress/web",
            "ScaleDown:Deployment/web"
        ],
        "in the order they started, whatever the keys"
    );
    assert_eq!(f.store.journal(&r.id, "west").await?.len(), 1);

    // Published again (a resumed agent), the stage is replaced, not added to.
    let mut again = init.to_vec();
    again[1].attempts = 2;
    f.store
        .publish_stage(&r, "east", "Initialization", &again)
        .await?;
    let east = f.store.journal(&r.id, "east").await?;
    assert_eq!(east.len(), 4);
    assert_eq!(east[1].attempts, 2);

    // One write per stage, an update of the operation item, which still reads as the
    // operation; its attribute `JOURNAL#<cluster>#<stage>` holds the stage.
    let calls = f.store.calls().by_operation_and_api();
    assert_eq!(
        calls[&("publish_stage".to_owned(), "UpdateItem".to_owned())],
        4
    );
    let op_item = raw_item(&f, failover_messages::keys::operation_key(&r.id)).await?;
    for attribute in [
        "JOURNAL#east#Initialization",
        "JOURNAL#east#SourceShutdown",
        "JOURNAL#west#Initialization",
    ] {
        assert!(op_item.contains_key(attribute), "{attribute}: {op_item:?}");
    }
    let op = f.store.get_operation(&r.id).await?.context("operation")?;
    assert_eq!(op.epoch, r.epoch);

    // Carried by the replica counts' write: no write of its own, the phase and the counts
    // written alike.
    let before = f.store.calls().total();
    let mut demoted = vec![step(
        &r,
        "east",
        "VolumeTransitionSource",
        "Demote:data",
        300,
    )];
    demoted[0].status = StepStatus::Done;
    let carried = CarriedStages::new(vec![failover_messages::records::JournalStage {
        op_id: r.id.clone(),
        cluster: "east".into(),
        stage: "VolumeTransitionSource".into(),
        epoch: r.epoch,
        published_at: f.store.now(),
        steps: demoted,
    }]);
    assert!(
        f.store
            .record_original_replicas_carrying(
                &r,
                &BTreeMap::from([("Deployment/web".to_owned(), 2)]),
                &carried
            )
            .await?
            .is_done()
    );
    assert!(carried.written());
    assert_eq!(f.store.calls().total(), before + 1);
    let east = f.store.journal(&r.id, "east").await?;
    assert_eq!(east.last().map(|s| s.task.as_str()), Some("Demote:data"));
    let op = f.store.get_operation(&r.id).await?.context("operation")?;
    assert_eq!(op.phase, Phase::Running);
    assert_eq!(op.original_replicas.get("Deployment/web"), Some(&2));
    // A stage of another operation is refused before anything is written.
    let mut other = carried.stages()[0].clone();
    other.op_id = "another-op".into();
    let err = f
        .store
        .record_original_replicas_carrying(&r, &BTreeMap::new(), &CarriedStages::new(vec![other]))
        .await
        .unwrap_err();
    let err = format!("{:#}", anyhow::Error::from(err));
    assert!(err.contains("not a stage of operation"), "{err}");

    // A step of another stage or cluster is refused, naming it.
    let err = f
        .store
        .publish_stage(
            &r,
            "east",
            "Initialization",
            &[step(&r, "west", "Initialization", "Preflight", 5)],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("publishing stage Initialization of east"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_heartbeat_reads_as_stale() -> Result<()> {
    let f = Fixture::new().await?;
    f.store
        .put_heartbeat("east", "0.1.0", Duration::from_secs(30))
        .await?;
    let hb = f.store.get_heartbeat("east").await?.context("heartbeat")?;
    assert!(!hb.stale);
    f.clock.advance(Duration::from_secs(31));
    f.store
        .put_heartbeat("west", "0.1.0", Duration::from_secs(30))
        .await?;
    let hb = f
        .store
        .get_heartbeat("east")
        .await?
        .context("heartbeat lingers in moto")?;
    assert!(hb.stale, "an expired heartbeat reads as stale: {hb:?}");
    let all = f.store.list_heartbeats().await?;
    let summary: Vec<_> = all
        .iter()
        .map(|h| (h.heartbeat.cluster.as_str(), h.stale))
        .collect();
    assert_eq!(summary, [("east", true), ("west", false)]);
    assert!(f.store.get_heartbeat("north").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn ensure_table_is_idempotent() -> Result<()> {
    let env = moto().await?;
    let client = env.dynamodb();
    let table = env.unique("t");
    assert_eq!(ensure_table(&client, &table).await?, TableSetup::Created);
    assert_eq!(
        ensure_table(&client, &table).await?,
        TableSetup::AlreadyExisted
    );
    assert_eq!(
        ensure_table(&client, &table).await?,
        TableSetup::AlreadyExisted
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await?;
    let ttl = ttl.time_to_live_description().context("ttl")?;
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));
    Ok(())
}

#[tokio::test]
async fn a_table_with_a_wrong_key_schema_is_named_in_the_error() -> Result<()> {
    let env = moto().await?;
    let client = env.dynamodb();
    let table = env.unique("wrong");
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    let err = ensure_table(&client, &table).await.unwrap_err();
    assert!(matches!(err, SetupError::WrongSchema { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&table) && msg.contains("key schema is [id HASH]"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_group_is_not_registered_and_named() -> Result<()> {
    let f = Fixture::new().await?;
    let group: GroupRef = "shop/nowhere".parse()?;
    match f
        .store
        .start_operation(start(&group, "coordinator-a"))
        .await?
    {
        StartOutcome::NotRegistered { group: named } => {
            assert_eq!(named.to_string(), "shop/nowhere")
        }
        other => bail!("expected NotRegistered, got {other:?}"),
    }
    assert!(f.store.get_group_state(&group).await?.is_none());
    assert!(
        f.store.list_operations(None).await?.is_empty(),
        "nothing was written"
    );
    Ok(())
}

#[tokio::test]
async fn registering_is_idempotent_and_names_the_active_cluster() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    assert!(matches!(
        f.store.register_group(&group, "east").await?,
        RegisterOutcome::AlreadyRegistered(_)
    ));
    match f.store.register_group(&group, "west").await? {
        RegisterOutcome::ActiveElsewhere { active, .. } => assert_eq!(active, "east"),
        other => bail!("expected ActiveElsewhere, got {other:?}"),
    }
    // The first registration wrote; the two others lost their `attribute_not_exists`.
    let calls = f.store.calls().by_operation_api_and_outcome();
    let put = |outcome| {
        calls
            .get(&("register_group".to_owned(), "PutItem".to_owned(), outcome))
            .copied()
    };
    assert_eq!(put(CallOutcome::Ok), Some(1), "{calls:#?}");
    assert_eq!(
        put(CallOutcome::ConditionalCheckFailed),
        Some(2),
        "{calls:#?}"
    );
    assert_eq!(put(CallOutcome::Error), None, "{calls:#?}");
    let other = f.registered("shop/another").await?;
    let listed: Vec<_> = f
        .store
        .list_groups()
        .await?
        .into_iter()
        .map(|g| g.group)
        .collect();
    assert_eq!(listed, [other, group]);
    Ok(())
}

#[tokio::test]
async fn the_source_must_be_active_unless_forced_and_suspended_groups_refuse() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let mut wrong = start(&group, "coordinator-a");
    wrong.source = "west".into();
    wrong.target = "east".into();
    match f.store.start_operation(wrong.clone()).await? {
        StartOutcome::NotActive { active, .. } => assert_eq!(active, "east"),
        other => bail!("expected NotActive, got {other:?}"),
    }
    ensure!(matches!(
        f.store.set_suspended(&group, true).await?,
        SuspendOutcome::Changed(ref s) if s.suspended
    ));
    ensure!(matches!(
        f.store.set_suspended(&group, true).await?,
        SuspendOutcome::Unchanged(ref s) if s.suspended
    ));
    ensure!(
        f.store
            .set_suspended(&"shop/unknown".parse()?, true)
            .await?
            == SuspendOutcome::NotRegistered
    );
    assert!(matches!(
        f.store
            .start_operation(start(&group, "coordinator-a"))
            .await?,
        StartOutcome::Suspended { .. }
    ));
    ensure!(matches!(
        f.store.set_suspended(&group, false).await?,
        SuspendOutcome::Changed(ref s) if !s.suspended
    ));
    // Forced, the source need not be active (the target must not be: that would be no
    // failover at all).
    wrong.force = true;
    match f.store.start_operation(wrong.clone()).await? {
        StartOutcome::Refused(r) => assert_eq!(r.reason(), "AlreadyActive"),
        other => bail!("expected AlreadyActive, got {other:?}"),
    }
    wrong.target = "north".into();
    match f.store.start_operation(wrong).await? {
        StartOutcome::Started(op) => assert!(op.force),
        other => bail!("a forced start was refused: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn known_replicas_are_written_only_by_the_idle_active_cluster_on_the_group_state()
-> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let counts = BTreeMap::from([("Deployment/api".to_owned(), 3)]);
    assert_eq!(f.store.get_known_replicas(&group).await?, None);
    f.store.calls().reset();
    assert!(
        f.store
            .record_known_replicas(&group, "east", 0, &counts)
            .await?
            .is_done()
    );
    let by_api = f.store.calls().by_api();
    assert_eq!(
        by_api,
        BTreeMap::from([("UpdateItem".to_owned(), 1)]),
        "one single-item write"
    );
    let known = f
        .store
        .get_known_replicas(&group)
        .await?
        .context("counts")?;
    assert_eq!((known.cluster.as_str(), known.epoch), ("east", 0));
    assert_eq!(known.replicas, counts);
    // The group state still reads as before.
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!((state.active_cluster.as_str(), state.epoch), ("east", 0));

    // Not the active cluster, a wrong epoch, or an operation in flight: refused.
    for (cluster, epoch) in [("west", 0), ("east", 1)] {
        assert!(
            f.store
                .record_known_replicas(&group, cluster, epoch, &BTreeMap::new())
                .await?
                .is_stale(),
            "{cluster} at {epoch}"
        );
    }
    let op = f.started(&group).await?;
    assert!(
        f.store
            .record_known_replicas(&group, "east", op.epoch, &BTreeMap::new())
            .await?
            .is_stale()
    );
    assert_eq!(
        f.store
            .get_known_replicas(&group)
            .await?
            .map(|k| k.replicas),
        Some(counts),
        "the refused writes changed nothing"
    );
    Ok(())
}

#[tokio::test]
async fn uptime_records_the_dual_active_window_and_phases_close_once() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let op = f.started(&group).await?;
    let r = OpRef::from(&op);
    let t0 = f.store.now();
    let secs = |s| t0 + jiff::SignedDuration::from_secs(s);
    for mark in [
        DualActiveMark::Started(secs(2)),
        DualActiveMark::Started(secs(1)),
        DualActiveMark::Started(secs(3)),
        DualActiveMark::Ended(secs(9)),
        DualActiveMark::Ended(secs(7)),
    ] {
        assert!(f.store.record_dual_active(&r, mark).await?.is_done());
    }
    let stored = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(
        stored.dual_active_started_at,
        Some(secs(1)),
        "the earliest start is kept"
    );
    assert_eq!(
        stored.dual_active_ended_at,
        Some(secs(9)),
        "the latest end is kept"
    );
    assert_eq!(
        stored.dual_active_window(),
        Some(jiff::SignedDuration::from_secs(8))
    );

    assert!(
        f.store
            .set_phase(&r, Phase::Failed, Some("volume never became Primary"))
            .await
            .is_err(),
        "only fail_operation writes Failed (the group state first)"
    );
    assert!(
        f.store
            .fail_operation(&r, "west", "volume never became Primary")
            .await?
            .is_done()
    );
    assert_eq!(
        f.store.set_phase(&r, Phase::Running, None).await?,
        Outcome::AlreadyFinished {
            phase: Phase::Failed
        }
    );
    assert!(
        f.store.set_phase(&r, Phase::Succeeded, None).await.is_err(),
        "only complete writes Succeeded"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_table_gives_an_error_naming_it_and_the_operation() -> Result<()> {
    let env = moto().await?;
    let table = env.unique("missing");
    let store = Store::new(&env.dynamodb(), table.clone());
    let group: GroupRef = "shop/orders".parse()?;
    let err = store
        .start_operation(start(&group, "coordinator-a"))
        .await
        .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("starting operation"), "{chain}");
    assert!(chain.contains(&table), "{chain}");
    assert!(chain.contains("shop/orders"), "{chain}");
    assert!(chain.contains("ResourceNotFoundException"), "{chain}");
    Ok(())
}

/// A loopback proxy to moto that, when armed, forwards one `UpdateItem` request (the start's
/// write of the group state) and then closes the client's connection instead of returning
/// the answer: the write commits, but the caller sees a transport failure.
mod lossy_proxy {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub struct Proxy {
        pub url: String,
        armed: Arc<AtomicBool>,
    }

    impl Proxy {
        /// Drops the answer to the next `UpdateItem`.
        pub fn arm(&self) {
            self.armed.store(true, Ordering::SeqCst);
        }

        pub fn is_armed(&self) -> bool {
            self.armed.load(Ordering::SeqCst)
        }
    }

    pub async fn start(upstream: &str) -> anyhow::Result<Proxy> {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let armed = Arc::new(AtomicBool::new(false));
        let armed2 = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let armed = armed2.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        pump(client, server, armed).await;
                    }
                });
            }
        });
        Ok(Proxy { url, armed })
    }

    async fn pump(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let drop_answer = Arc::new(AtomicBool::new(false));
        let drop_flag = drop_answer.clone();
        let up = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                if chunk.windows(11).any(|w| w == b".UpdateItem")
                    && armed.swap(false, Ordering::SeqCst)
                {
                    drop_flag.store(true, Ordering::SeqCst);
                }
                if sw.write_all(chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if drop_answer.load(Ordering::SeqCst) {
                break; // the write happened upstream; the caller never hears of it
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        up.abort();
    }
}

#[tokio::test]
async fn a_start_whose_answer_is_lost_is_reported_as_started() -> Result<()> {
    let f = Fixture::new().await?;
    let proxy = lossy_proxy::start(&f.env.endpoint_url).await?;
    let sdk = failover_tests::aws::sdk_config(&proxy.url, &f.env.region).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    for (i, policy) in [
        // Without retries: the transport error is resolved by reading `opId` back.
        failover_messages::store::retry::RetryPolicy::never(),
        // With retries: the retried transaction (same request token) must not turn the
        // committed start into a conflict.
        failover_messages::store::retry::RetryPolicy::default(),
    ]
    .into_iter()
    .enumerate()
    {
        let group = f.registered(&format!("shop/lossy-{i}")).await?;
        let store = Store::new(&client, f.table.clone())
            .with_clock(f.clock.clone())
            .with_retry_policy(policy);
        proxy.arm();
        let op = match store
            .start_operation(start(&group, "coordinator-a"))
            .await?
        {
            StartOutcome::Started(op) => op,
            other => bail!("a committed start was reported as {other:?}"),
        };
        assert!(!proxy.is_armed(), "the proxy dropped an answer");
        let state = f.store.get_group_state(&group).await?.context("state")?;
        assert_eq!(state.op_id.as_deref(), Some(op.id.as_str()));
        assert_eq!(state.epoch, 1, "started exactly once");
        assert_eq!(f.store.get_operation(&op.id).await?, Some(op));
    }
    Ok(())
}

#[tokio::test]
async fn a_start_stopped_between_its_two_writes_leaves_the_group_free_and_its_retry_finishes()
-> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    // The coordinator put its operation item, then stopped before the group-state write.
    let other = f.registered("shop/other").await?;
    let mut orphan = f.started(&other).await?;
    orphan.id = "op-interrupted".into();
    orphan.group = group.clone();
    orphan.epoch = 1;
    f.env
        .dynamodb()
        .put_item()
        .table_name(&f.table)
        .set_item(Some(orphan.to_item()))
        .send()
        .await?;
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!((state.op_id, state.epoch), (None, 0), "the group is free");

    // The same start again (same id): it takes the group at the next epoch.
    let mut again = start(&group, "coordinator-a");
    again.op_id = Some("op-interrupted".into());
    let op = match f.store.start_operation(again.clone()).await? {
        StartOutcome::Started(op) => op,
        other => bail!("{other:?}"),
    };
    assert_eq!((op.id.as_str(), op.epoch), ("op-interrupted", 1));
    let state = f.store.get_group_state(&group).await?.context("state")?;
    assert_eq!(state.op_id.as_deref(), Some("op-interrupted"));
    assert_eq!(f.store.get_operation(&op.id).await?, Some(op.clone()));
    // Once more: the operation in flight is reported, nothing moves.
    match f.store.start_operation(again).await? {
        StartOutcome::Started(same) => assert_eq!(same, op),
        other => bail!("{other:?}"),
    }
    assert_eq!(
        f.store
            .get_group_state(&group)
            .await?
            .context("state")?
            .epoch,
        1
    );

    // An id another group's operation uses is refused without touching this group.
    let mut clash = start(&other, "coordinator-b");
    clash.op_id = Some("op-interrupted".into());
    let err = anyhow::Error::from(f.store.start_operation(clash).await.unwrap_err());
    assert!(format!("{err:#}").contains("already used"), "{err:#}");

    // A refused start leaves no operation item behind.
    f.store.set_suspended(&other, true).await?;
    let mut refused = start(&other, "coordinator-b");
    refused.op_id = Some("op-refused".into());
    let outcome = f.store.start_operation(refused).await?;
    assert!(
        !matches!(outcome, StartOutcome::Started(_)),
        "a suspended group started: {outcome:?}"
    );
    assert_eq!(f.store.get_operation("op-refused").await?, None);
    Ok(())
}

#[tokio::test]
async fn an_operation_of_a_known_group_reads_in_one_call_what_two_reads_give() -> Result<()> {
    let f = Fixture::new().await?;
    let group = f.registered("shop/orders").await?;
    let op = f.started(&group).await?;
    let r = OpRef::from(&op);
    let volumes = vols(&["data-0", "data-1"]);
    assert!(
        f.store
            .mark_all_ready(&r, "east", &volumes)
            .await?
            .is_done()
    );
    assert!(
        f.store
            .claim_promotion(&r, "west", &volumes)
            .await?
            .is_done()
    );
    assert!(f.store.mark_promoted(&r, "data-0", "west").await?.is_done());
    f.store.calls().reset();
    let two = f.store.get_operation(&op.id).await?.context("op")?;
    assert_eq!(
        f.store.calls().by_api(),
        BTreeMap::from([("GetItem".to_owned(), 2)])
    );
    assert!(
        two.promotion_started_at.is_some(),
        "the claim shows: {two:?}"
    );
    f.store.calls().reset();
    let one = f.store.get_operation_of(&group, &op.id).await?;
    let handoffs = f.store.list_handoffs_of(&group, &op.id).await?;
    assert_eq!(
        f.store.calls().by_api(),
        BTreeMap::from([("BatchGetItem".to_owned(), 2)])
    );
    assert_eq!(one, Some(two.clone()));
    assert_eq!(handoffs, f.store.list_handoffs(&op.id).await?);
    // The operation and the group state from one read, as each reads alone.
    f.store.calls().reset();
    let (with_state, state) = f
        .store
        .get_operation_and_state_of(&group, &op.id)
        .await?
        .context("op")?;
    assert_eq!(
        f.store.calls().by_api(),
        BTreeMap::from([("BatchGetItem".to_owned(), 1)])
    );
    assert_eq!(with_state, two);
    assert_eq!(state, f.store.get_group_state(&group).await?);
    let other: GroupRef = format!("{}-other/g", group.namespace).parse()?;
    let wrong = f.store.get_operation_and_state_of(&other, &op.id).await;
    assert!(
        wrong
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains(&op.id)),
        "an operation read as another group's: {wrong:?}"
    );
    let states: Vec<_> = handoffs
        .iter()
        .map(|h| (h.volume.as_str(), h.state))
        .collect();
    assert_eq!(
        states,
        [
            ("data-0", HandoffState::Promoted),
            ("data-1", HandoffState::ReadyForPromotion)
        ]
    );
    // Closed: the copy on the operation item reads the same, in one read.
    assert!(
        f.store
            .complete_operation(&r, Timings::default())
            .await?
            .is_done()
    );
    f.store.calls().reset();
    assert_eq!(f.store.list_handoffs(&op.id).await?, handoffs);
    assert_eq!(
        f.store.calls().by_api(),
        BTreeMap::from([("GetItem".to_owned(), 1)])
    );
    Ok(())
}

#[tokio::test]
async fn one_unreadable_group_record_does_not_hide_the_others_from_the_listing() -> Result<()> {
    let f = Fixture::new().await?;
    let good = f.registered("shop/orders").await?;
    // A group state record whose epoch is not a number (written by hand, or by a future
    // version): it is listed under GSI1 like every group, but does not decode.
    let s = |v: &str| AttributeValue::S(v.to_owned());
    f.env
        .dynamodb()
        .put_item()
        .table_name(&f.table)
        .item("PK", s("GROUP#shop/broken"))
        .item("SK", s("STATE"))
        .item("GSI1PK", s("GROUPS"))
        .item("GSI1SK", s("shop/broken"))
        .item("activeCluster", s("east"))
        .item("epoch", s("not-a-number"))
        .send()
        .await?;
    let listed: Vec<_> = f
        .store
        .list_groups()
        .await?
        .into_iter()
        .map(|g| g.group)
        .collect();
    assert_eq!(listed, [good]);
    Ok(())
}
