//! A CONSISTENCY failover of a group without volumes, against moto: the target's claim
//! without handoff records is refused until the source marked the group ready, and the mark
//! is refused after an abort.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use failover_messages::keys::GroupRef;
use failover_messages::records::Mode;
use failover_messages::setup::ensure_table;
use failover_messages::store::{OpRef, Outcome, StartOutcome, StartRequest, Store};
use failover_tests::aws::moto;

async fn started(store: &Store, group: &GroupRef) -> Result<OpRef> {
    store.register_group(group, "east").await?;
    match store
        .start_operation(StartRequest {
            group: group.clone(),
            source: "east".into(),
            target: "west".into(),
            mode: Mode::Consistency,
            force: false,
            source_is_down: false,
            reason: "no volumes".into(),
            requested_by: "test".into(),
            lease_ttl: Duration::from_secs(60),
            op_id: None,
        })
        .await?
    {
        StartOutcome::Started(op) => Ok(OpRef::from(&op)),
        other => bail!("not started: {other:?}"),
    }
}

#[tokio::test]
async fn a_group_without_volumes_is_claimed_only_after_the_source_marked_it_ready() -> Result<()> {
    let env = moto().await?;
    let table = env.unique("gh");
    ensure_table(&env.dynamodb(), &table).await?;
    let store = Store::new(&env.dynamodb(), table);
    let op = started(&store, &"shop/stateless".parse()?).await?;

    // Before the source's mark: refused, nothing claimed.
    let o = store.claim_promotion(&op, "west", &[]).await?;
    ensure!(!matches!(o, Outcome::Done(())), "claimed too early: {o:?}");
    let state = store.get_group_state(&op.group).await?.unwrap();
    ensure!(state.promotion_claimed_by.is_none(), "{state:?}");

    // The source marks the group ready (twice: idempotent); then the claim goes through.
    for _ in 0..2 {
        let o = store.mark_group_ready(&op).await?;
        ensure!(matches!(o, Outcome::Done(())), "{o:?}");
    }
    let o = store.claim_promotion(&op, "west", &[]).await?;
    ensure!(matches!(o, Outcome::Done(())), "{o:?}");
    let state = store.get_group_state(&op.group).await?.unwrap();
    ensure!(
        state.promotion_claimed_by.as_deref() == Some("west"),
        "{state:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_aborted_operation_cannot_be_marked_ready() -> Result<()> {
    let env = moto().await?;
    let table = env.unique("gh");
    ensure_table(&env.dynamodb(), &table).await?;
    let store = Store::new(&env.dynamodb(), table);
    let op = started(&store, &"shop/stateless".parse()?).await?;
    let o = store.request_abort(&op.id).await?;
    ensure!(matches!(o, Outcome::Done(_)), "{o:?}");
    let o = store.mark_group_ready(&op).await?;
    ensure!(matches!(o, Outcome::AbortRequested { .. }), "{o:?}");
    let o = store.claim_promotion(&op, "west", &[]).await?;
    ensure!(!matches!(o, Outcome::Done(())), "{o:?}");
    Ok(())
}
