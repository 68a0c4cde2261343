//! `failoverctl failover`, `watch`, `abort`, `plan`, `history` and `clusters` as users run
//! them: the real binary against a moto server (DynamoDB + SQS). No agents run here; where
//! a test needs an agent's write (a promotion claim, a completion, a heartbeat) it makes it
//! through the store, as the agent would.
//!
//! Every test takes its own table and queue prefix, so the tests run in parallel on one
//! server.

use std::time::Duration;

use anyhow::{Context as _, Result};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::Timings;
use failover_messages::store::{OpRef, Outcome, Store};

mod common;

use common::{Run, TestEnv, json};

impl TestEnv {
    /// A fresh table and prefix with inboxes for east and west, `shop/orders` active on
    /// east, and both clusters' agents alive (their heartbeats written as an agent would).
    async fn new(name: &str) -> Result<Self> {
        Self::with_agents(name, &["east", "west"]).await
    }

    /// As [`TestEnv::new`], with heartbeats for `alive` only.
    async fn with_agents(name: &str, alive: &[&str]) -> Result<Self> {
        let env = Self::create("fo", name).await?;
        env.ok(&["setup", "--cluster", "east,west"]);
        env.ok(&["register", "shop/orders", "--active", "east"]);
        for cluster in alive {
            env.store()
                .put_heartbeat(cluster, "0.1.0-test", Duration::from_secs(300))
                .await?;
        }
        Ok(env)
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?} failed:\n{run}");
        run
    }

    fn store(&self) -> Store {
        Store::new(&self.moto.dynamodb(), self.table.clone())
    }

    /// Starts a failover of shop/orders to west and returns the operation id.
    fn start(&self, extra: &[&str]) -> String {
        let mut args = vec!["failover", "shop/orders", "--to", "west", "-o", "json"];
        args.extend(extra);
        let run = self.ok(&args);
        json(&run)["operations"][0]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("no operation id:\n{run}"))
            .to_owned()
    }

    /// Every envelope waiting in `cluster`'s inbox.
    async fn inbox(&self, cluster: &str) -> Result<Vec<Envelope>> {
        let inbox = Inbox::new(
            self.moto.sqs(),
            cluster,
            InboxOptions {
                prefix: self.prefix.clone(),
                ..InboxOptions::default()
            },
        );
        let mut out = Vec::new();
        for _ in 0..3 {
            for received in inbox.receive(1, 10).await? {
                out.push(received.envelope?);
            }
        }
        Ok(out)
    }
}

#[tokio::test]
async fn failover_starts_one_operation_and_notifies_both_inboxes() -> Result<()> {
    let env = TestEnv::new("start").await?;
    let op = env.start(&[]);

    let state = env
        .store()
        .get_group_state(&"shop/orders".parse()?)
        .await?
        .context("group state")?;
    assert_eq!(state.epoch, 1);
    assert_eq!(state.op_id.as_deref(), Some(op.as_str()));
    assert_eq!(state.active_cluster, "east");
    let stored = env.store().get_operation(&op).await?.context("operation")?;
    assert_eq!(
        (stored.source.as_str(), stored.target.as_str()),
        ("east", "west")
    );

    for cluster in ["east", "west"] {
        let envelopes = env.inbox(cluster).await?;
        assert!(
            envelopes
                .iter()
                .any(|e| e.kind == EnvelopeKind::OperationStarted
                    && e.operation_id == op
                    && e.epoch == 1),
            "{cluster}: {envelopes:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn many_groups_start_at_once_each_once_in_the_order_named() -> Result<()> {
    let env = TestEnv::new("many").await?;
    let groups: Vec<String> = (0..20).map(|i| format!("shop/g{i:02}")).collect();
    for g in &groups {
        env.ok(&["register", g, "--active", "east"]);
    }
    // One unregistered group in the middle: reported (exit 7), the others all start.
    let mut args = vec!["failover"];
    args.extend(groups[..10].iter().map(String::as_str));
    args.push("shop/missing");
    args.extend(groups[10..].iter().map(String::as_str));
    args.extend(["--to", "west", "-o", "json"]);
    let run = env.run(&args);
    assert_eq!(run.code, 7, "{run}");
    assert!(run.stderr.contains("shop/missing"), "{run}");
    let out = json(&run);
    let ops = out["operations"].as_array().context("operations")?;
    let named: Vec<&str> = ops.iter().filter_map(|o| o["group"].as_str()).collect();
    let expected: Vec<&str> = groups.iter().map(String::as_str).collect();
    assert_eq!(named, expected, "{run}");
    let mut ids = std::collections::BTreeSet::new();
    for (g, op) in groups.iter().zip(ops) {
        let id = op["operationId"].as_str().context("operationId")?;
        assert!(ids.insert(id.to_owned()), "operation {id} twice");
        let state = env
            .store()
            .get_group_state(&g.parse()?)
            .await?
            .context("group state")?;
        assert_eq!(state.op_id.as_deref(), Some(id), "{g}");
        assert_eq!(state.epoch, 1, "{g}");
    }
    Ok(())
}

#[tokio::test]
async fn each_service_can_have_its_own_endpoint() -> Result<()> {
    let env = TestEnv::new("endpoints").await?;
    let moto = env.moto.endpoint_url.clone();
    // Nothing listens on port 9: a service sent there fails.
    let dead = "http://127.0.0.1:9";
    let both = env.run(&[
        "--endpoint-url",
        dead,
        "--dynamodb-endpoint",
        &moto,
        "--sqs-endpoint",
        &moto,
        "failover",
        "shop/orders",
        "--to",
        "west",
    ]);
    assert_eq!(both.code, 0, "{both}");
    // DynamoDB at moto, SQS at the dead default: the group state reads, the queue does not.
    let status = env.run(&[
        "--endpoint-url",
        dead,
        "--dynamodb-endpoint",
        &moto,
        "status",
    ]);
    assert_eq!(status.code, 0, "{status}");
    assert!(status.stdout.contains("shop/orders"), "{status}");
    // Setting up a cluster's queues goes to SQS, at the dead default: the table is fine
    // (DynamoDB at moto), the queues fail, named.
    let sqs_dead = env.run(&[
        "--endpoint-url",
        dead,
        "--dynamodb-endpoint",
        &moto,
        "setup",
        "--cluster",
        "north",
    ]);
    assert_ne!(sqs_dead.code, 0, "{sqs_dead}");
    assert!(
        sqs_dead.stderr.contains("queue") && sqs_dead.stderr.contains("north"),
        "{sqs_dead}"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_failover_while_one_is_in_flight_is_refused_naming_the_holder() -> Result<()> {
    let env = TestEnv::new("race").await?;
    let op = env.start(&[]);
    let second = env.run(&["failover", "shop/orders", "--to", "west"]);
    assert_eq!(second.code, 3, "{second}");
    assert!(second.stderr.contains("shop/orders"), "{second}");
    assert!(second.stderr.contains(&op), "{second}");
    assert!(
        second.stderr.contains("lease held by failoverctl:"),
        "{second}"
    );
    Ok(())
}

#[tokio::test]
async fn failover_to_the_active_cluster_or_of_an_unknown_group_is_refused_clearly() -> Result<()> {
    let env = TestEnv::new("refuse").await?;
    let same = env.run(&["failover", "shop/orders", "--to", "east"]);
    assert_eq!(same.code, 3, "{same}");
    assert!(
        same.stderr.contains("east is already the active cluster"),
        "{same}"
    );
    let unknown = env.run(&["failover", "shop/nothing", "--to", "west"]);
    assert_eq!(unknown.code, 7, "{unknown}");
    assert!(unknown.stderr.contains("shop/nothing"), "{unknown}");
    let nowhere = env.run(&["failover", "shop/orders", "--to", "north"]);
    assert_eq!(nowhere.code, 7, "{nowhere}");
    assert!(
        nowhere.stderr.contains("unknown cluster north"),
        "{nowhere}"
    );
    Ok(())
}

#[tokio::test]
async fn force_without_a_reason_is_a_usage_error() -> Result<()> {
    // East's agent is down (no heartbeat): what --force is for.
    let env = TestEnv::with_agents("force", &["west"]).await?;
    let run = env.run(&["failover", "shop/orders", "--to", "west", "--force"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--reason"), "{run}");
    let forced = env.ok(&[
        "failover",
        "shop/orders",
        "--to",
        "west",
        "--force",
        "--reason",
        "east is down",
        "-o",
        "json",
    ]);
    assert_eq!(json(&forced)["operations"][0]["force"], true);
    Ok(())
}

#[tokio::test]
async fn force_with_the_source_alive_starts_a_consistency_operation_unless_it_keeps_serving()
-> Result<()> {
    let group: GroupRef = "shop/orders".parse()?;
    let force = |extra: &[&str]| {
        let mut args = vec![
            "failover",
            "shop/orders",
            "--to",
            "west",
            "--force",
            "--reason",
            "drill",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    // East keeps serving the group without DynamoDB: refused while its lease is live, even
    // when vouched down.
    let env = TestEnv::new("force-alive").await?;
    let keep = [group.to_string()];
    env.store()
        .put_lease("east", "test", Duration::from_secs(60), &keep)
        .await?;
    for extra in [&[][..], &["--source-is-down"][..]] {
        let run = env.run(&args(&force(extra)));
        assert_eq!(run.code, 3, "{run}");
        assert!(
            run.stderr.contains("shop/orders")
                && run.stderr.contains("agent of east is alive")
                && run.stderr.contains("KeepServing"),
            "{run}"
        );
    }
    let state = env.store().get_group_state(&group).await?.unwrap();
    assert!(state.op_id.is_none(), "{state:?}");

    // Its lease stale: refused until vouched down, then started and recorded so.
    env.store()
        .put_lease("east", "test", Duration::ZERO, &keep)
        .await?;
    // Its expiry is stored in whole seconds: stale within one.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !env
        .store()
        .get_heartbeat("east")
        .await?
        .context("lease")?
        .stale
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never went stale"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = env.run(&args(&force(&[])));
    assert_eq!(run.code, 3, "{run}");
    assert!(run.stderr.contains("--source-is-down"), "{run}");
    let run = env.ok(&args(&force(&["--source-is-down", "-o", "json"])));
    let id = json(&run)["operations"][0]["operationId"]
        .as_str()
        .context("no operation id")?
        .to_owned();
    let op = env.store().get_operation(&id).await?.context("operation")?;
    assert!(op.force && op.source_is_down, "{op:?}");

    // Under the default (Fence) a live source does not refuse force: the target waits for
    // it. A forced operation runs in CONSISTENCY order even when UPTIME was asked for.
    let env = TestEnv::new("force-alive-fence").await?;
    env.store()
        .put_heartbeat("east", "test", Duration::from_secs(60))
        .await?;
    let run = env.ok(&args(&force(&["--mode", "uptime", "-o", "json"])));
    let id = json(&run)["operations"][0]["operationId"]
        .as_str()
        .context("no operation id")?
        .to_owned();
    let op = env.store().get_operation(&id).await?.context("operation")?;
    assert!(op.force && !op.source_is_down, "{op:?}");
    assert_eq!(op.mode, failover_messages::records::Mode::Consistency);
    Ok(())
}

#[tokio::test]
async fn abort_before_the_claim_succeeds_and_notifies_the_source() -> Result<()> {
    let env = TestEnv::new("abort").await?;
    let op = env.start(&[]);
    let run = env.ok(&["abort", &op, "-o", "json"]);
    assert_eq!(json(&run)["operationId"], op.as_str());
    let stored = env.store().get_operation(&op).await?.context("operation")?;
    assert!(stored.abort_requested_at.is_some());
    let east = env.inbox("east").await?;
    assert!(
        east.iter()
            .any(|e| e.kind == EnvelopeKind::AbortRequested && e.operation_id == op),
        "{east:?}"
    );
    let unknown = env.run(&["abort", "no-such-op"]);
    assert_eq!(unknown.code, 7, "{unknown}");
    Ok(())
}

#[tokio::test]
async fn abort_after_the_promotion_claim_is_refused_and_history_shows_the_completion() -> Result<()>
{
    let env = TestEnv::new("claimed").await?;
    let op = env.start(&["--mode", "uptime"]);
    let store = env.store();
    let op_ref = OpRef {
        id: op.clone(),
        group: "shop/orders".parse()?,
        epoch: 1,
    };
    let claim = store.claim_promotion(&op_ref, "west", &[]).await?;
    assert!(claim.is_done(), "{claim:?}");

    let run = env.run(&["abort", &op]);
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr
            .contains("promotion already claimed by west; only forward is possible"),
        "{run}"
    );

    let done = store
        .complete_operation(&op_ref, Timings::default())
        .await?;
    assert!(matches!(done, Outcome::Done(_)), "{done:?}");
    let watched = env.run(&["watch", &op, "--timeout", "30s"]);
    assert_eq!(watched.code, 0, "{watched}");
    assert!(watched.stdout.contains("finished Succeeded"), "{watched}");
    assert!(watched.stderr.contains("Succeeded"), "{watched}");

    let history = env.ok(&["history", "shop/orders", "-o", "json"]);
    let history = json(&history);
    assert_eq!(history["operations"][0]["operationId"], op.as_str());
    assert_eq!(history["operations"][0]["phase"], "Succeeded");
    assert_eq!(history["operations"][0]["target"], "west");
    let all = json(&env.ok(&["history", "-o", "json"]));
    assert_eq!(all["operations"].as_array().map(Vec::len), Some(1), "{all}");
    Ok(())
}

#[tokio::test]
async fn waiting_without_agents_times_out_with_exit_5_and_says_the_operation_continues()
-> Result<()> {
    let env = TestEnv::new("wait").await?;
    let run = env.run(&[
        "failover",
        "shop/orders",
        "--to",
        "west",
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stderr.contains("the operation continues"), "{run}");
    assert!(run.stderr.contains("failoverctl watch "), "{run}");
    assert!(run.stderr.contains("Pending"), "{run}");
    assert!(run.stdout.contains("operation "), "{run}");

    // Scripts get one JSON document with the started operation and how the wait ended.
    let env = TestEnv::new("wait-json").await?;
    let run = env.run(&[
        "failover",
        "shop/orders",
        "--to",
        "west",
        "--wait",
        "--timeout",
        "1s",
        "-o",
        "json",
    ]);
    assert_eq!(run.code, 5, "{run}");
    let doc = json(&run);
    assert_eq!(doc["wait"]["timedOut"], true, "{run}");
    assert_eq!(
        doc["wait"]["operations"][0]["operationId"], doc["operations"][0]["operationId"],
        "{run}"
    );
    Ok(())
}

#[tokio::test]
async fn plan_lists_missing_heartbeats_as_blockers_and_passes_once_agents_beat() -> Result<()> {
    let env = TestEnv::with_agents("plan", &[]).await?;
    let blocked = env.run(&["plan", "shop/orders", "--to", "west", "-o", "json"]);
    assert_eq!(blocked.code, 3, "{blocked}");
    let plan = json(&blocked);
    let blockers = plan["blockers"].to_string();
    assert!(
        blockers.contains("source east has no agent heartbeat"),
        "{blockers}"
    );
    assert!(
        blockers.contains("target west has no agent heartbeat"),
        "{blockers}"
    );
    assert_eq!(plan["stages"][1]["stage"], "SourceShutdown");

    let clusters = json(&env.ok(&["clusters", "-o", "json"]));
    assert_eq!(clusters["clusters"], serde_json::json!([]));

    let store = env.store();
    for cluster in ["east", "west"] {
        store
            .put_heartbeat(cluster, "0.1.0-test", Duration::from_secs(300))
            .await?;
    }
    let clear = env.run(&["plan", "shop/orders", "--to", "west"]);
    assert_eq!(clear.code, 0, "{clear}");
    assert!(
        clear.stdout.contains("nothing blocks this failover"),
        "{clear}"
    );

    let clusters = json(&env.ok(&["clusters", "-o", "json"]));
    assert_eq!(clusters["clusters"][0]["cluster"], "east");
    assert_eq!(clusters["clusters"][1]["agentVersion"], "0.1.0-test");
    assert_eq!(clusters["clusters"][1]["stale"], false);

    let nowhere = env.run(&["plan", "shop/orders", "--to", "north"]);
    assert_eq!(nowhere.code, 3, "{nowhere}");
    assert!(
        nowhere.stdout.contains("unknown cluster north"),
        "{nowhere}"
    );

    let same = env.run(&["plan", "shop/orders", "--to", "east"]);
    assert_eq!(same.code, 3, "{same}");
    assert!(
        same.stdout.contains("east is already the active cluster"),
        "{same}"
    );
    Ok(())
}
