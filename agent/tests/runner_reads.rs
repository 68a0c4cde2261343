//! What the operation runner reads to find its work, against a real moto server: a wake-up
//! costs one read of the group it names, the re-read lists every group but skips those whose
//! operation already runs here, and a wake-up naming an operation the group has moved past
//! finds the group's current one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use failover_agent::adapter::RunKind;
use failover_agent::runtime::actors::{
    Settled, operations_in_flight, work_of_group, work_of_groups,
};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation};
use failover_messages::setup::ensure_table;
use failover_messages::store::{
    CallCounter, ManualClock, RegisterOutcome, StartOutcome, StartRequest, Store,
};
use failover_tests::aws::moto;

const LEASE: Duration = Duration::from_secs(30);

async fn registered(store: &Store, group: &str) -> Result<GroupRef> {
    let group: GroupRef = group.parse()?;
    match store.register_group(&group, "east").await? {
        RegisterOutcome::Registered(_) => Ok(group),
        other => bail!("registering {group}: {other:?}"),
    }
}

async fn started(store: &Store, group: &GroupRef, force: bool) -> Result<Operation> {
    let req = StartRequest {
        group: group.clone(),
        source: "east".into(),
        target: "west".into(),
        mode: Mode::Consistency,
        force,
        source_is_down: false,
        reason: "runner test".into(),
        requested_by: "runner-test".into(),
        lease_ttl: LEASE,
        op_id: None,
    };
    match store.start_operation(req).await? {
        StartOutcome::Started(op) => Ok(op),
        other => bail!("starting on {group}: {other:?}"),
    }
}

/// The calls `counter` saw since `before`, by store operation and API.
fn calls_since(
    counter: &CallCounter,
    before: &BTreeMap<(String, String), u64>,
) -> BTreeMap<String, u64> {
    counter
        .by_operation_and_api()
        .into_iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(&k).copied().unwrap_or(0);
            (d > 0).then(|| (format!("{}/{}", k.0, k.1), d))
        })
        .collect()
}

#[tokio::test]
async fn a_wake_up_reads_its_group_once_and_the_re_read_skips_what_runs() -> Result<()> {
    let env = moto().await?;
    let table = env.unique("runner");
    ensure_table(&env.dynamodb(), &table)
        .await
        .with_context(|| format!("creating table {table}"))?;
    let counter = CallCounter::new();
    let clock = Arc::new(ManualClock::starting_now());
    let store = Store::new(&env.dynamodb(), table.clone())
        .with_call_counter(counter.clone())
        .with_clock(clock.clone());
    let orders = registered(&store, "shop/orders").await?;
    let carts = registered(&store, "shop/carts").await?;
    let _idle = registered(&store, "shop/idle").await?;
    let op = started(&store, &orders, false).await?;
    let settled = Settled::default();

    // A wake-up naming the group's operation: one BatchGetItem, and both sides have work.
    let before = counter.by_operation_and_api();
    let work = work_of_group(&store, "east", &orders, &op.id, &settled)
        .await?
        .context("east has work")?;
    assert_eq!(
        (work.op.id.as_str(), work.kind),
        (op.id.as_str(), RunKind::Forward)
    );
    assert_eq!(
        calls_since(&counter, &before),
        BTreeMap::from([("get_operation/BatchGetItem".to_owned(), 1)]),
        "a wake-up costs one read"
    );
    let west = work_of_group(&store, "west", &orders, &op.id, &settled).await?;
    assert_eq!(west.map(|w| w.kind), Some(RunKind::Forward));
    assert!(
        work_of_group(&store, "south", &orders, &op.id, &settled)
            .await?
            .is_none(),
        "a cluster the operation does not name has no work"
    );

    // A wake-up naming another group's operation (forged) is refused, and does not keep the
    // other wake-ups of the same receive from starting their work.
    assert!(
        work_of_group(&store, "east", &carts, &op.id, &settled)
            .await
            .is_err()
    );
    let found = work_of_groups(
        &store,
        "east",
        vec![
            (carts.clone(), op.id.clone()),
            (orders.clone(), op.id.clone()),
        ],
        &settled,
    )
    .await;
    assert_eq!(
        found.iter().map(|w| w.op.id.as_str()).collect::<Vec<_>>(),
        [op.id.as_str()]
    );

    // A wake-up naming an operation the group has moved past finds the current one (a
    // forced operation, once the first one's lease ran out).
    clock.advance(LEASE * 2);
    let forced = started(&store, &orders, true).await?;
    let work = work_of_group(&store, "west", &orders, &op.id, &settled)
        .await?
        .context("west has the forced operation to run")?;
    assert_eq!(
        work.op.id, forced.id,
        "the group state's operation, not the wake-up's"
    );

    // The re-read lists every group; the idle one has no work and the running one is not read.
    let carts_op = started(&store, &carts, false).await?;
    let nothing_runs = HashSet::new();
    let mut found: Vec<String> = operations_in_flight(&store, "east", &settled, &nothing_runs)
        .await?
        .into_iter()
        .map(|w| w.op.id)
        .collect();
    found.sort();
    let mut expected = vec![forced.id.clone(), carts_op.id.clone()];
    expected.sort();
    assert_eq!(found, expected);

    let before = counter.by_operation_and_api();
    let running = HashSet::from([forced.id.clone()]);
    let found: Vec<String> = operations_in_flight(&store, "east", &settled, &running)
        .await?
        .into_iter()
        .map(|w| w.op.id)
        .collect();
    assert_eq!(
        found,
        [carts_op.id],
        "a running operation is left to its run"
    );
    assert_eq!(
        calls_since(&counter, &before),
        BTreeMap::from([
            ("get_operation/BatchGetItem".to_owned(), 1),
            ("list_groups/Query".to_owned(), 1),
        ]),
        "one listing and one read per group with work not running here"
    );
    Ok(())
}
