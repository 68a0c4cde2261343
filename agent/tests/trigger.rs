//! A `Failover` created by a user is a trigger: against the real east kube-apiserver and
//! moto, a hand-made Failover leads to exactly one operation record (id from the object's
//! UID, `requestedBy` naming the object), an `OperationStarted` wake-up in both inboxes, the
//! `Accepted` condition and operation id in the object's status and an `Accepted` Event;
//! refusals name the group and why. The last test runs the real agent binary, whose
//! trigger actor submits the object and whose runner then keeps the operation's progress
//! on that same object (no second Failover is created in east).
//!
//! Each test takes its own namespace, table and queue names.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use failover_agent::failover_object::failover_names::operation_ids;
use failover_agent::failover_object::trigger::{COND_ACCEPTED, Trigger};
use failover_messages::crd::{Failover, FailoverMode, FailoverSpec, GroupRef as CrdGroupRef};
use failover_messages::envelope::EnvelopeKind;
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Phase};
use failover_messages::setup::ensure_table;
use failover_messages::store::{StartOutcome, StartRequest, Store};
use failover_tests::fixtures::install_crds;
use failover_tests::kube::{TestEnv, TestNamespace};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams, PostParams};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(60);
const AGENT: &str = env!("CARGO_BIN_EXE_failover-agent");

struct Setup {
    env: TestEnv,
    ns: TestNamespace,
    store: Store,
    table: String,
    prefix: String,
    options: InboxOptions,
}

async fn setup(prefix: &str) -> Result<Setup> {
    let env = TestEnv::attach().await?;
    install_crds(&env.east, DEADLINE).await?;
    let ns = env.namespace(prefix).await?;
    let ddb = env.aws.dynamodb();
    let table = env.aws.unique("fo-trigger");
    ensure_table(&ddb, &table).await?;
    let queue_prefix = format!("{}-", env.aws.unique("fo"));
    let options = InboxOptions {
        prefix: queue_prefix.clone(),
        visibility_timeout: Duration::from_secs(1),
        ..InboxOptions::default()
    };
    let inbox = Inbox::new(env.aws.sqs(), "east", options.clone());
    for c in ["east", "west"] {
        inbox.ensure_queues(c).await?;
    }
    // Both clusters' agents are alive, as a failover needs (the trigger checks heartbeats as
    // failoverctl does).
    let store = Store::new(&ddb, &table);
    for c in ["east", "west"] {
        store
            .put_heartbeat(c, "test", Duration::from_secs(600))
            .await?;
    }
    Ok(Setup {
        store,
        env,
        ns,
        table,
        prefix: queue_prefix,
        options,
    })
}

impl Setup {
    fn trigger(&self) -> Trigger {
        Trigger::new(
            self.env.east.client.clone(),
            self.store.clone(),
            Inbox::new(self.env.aws.sqs(), "east", self.options.clone()),
            self.env.aws.sqs(),
            "east",
        )
    }

    fn failovers(&self) -> Api<Failover> {
        Api::namespaced(self.env.east.client.clone(), &self.ns.name)
    }

    /// Creates a Failover as a user would (no agent labels or annotations).
    async fn user_failover(&self, name: &str, groups: &[&str], target: &str) -> Result<Failover> {
        let fo = Failover::new(
            name,
            FailoverSpec {
                target_cluster: target.into(),
                mode: FailoverMode::Consistency,
                groups: groups
                    .iter()
                    .map(|g| CrdGroupRef {
                        name: (*g).into(),
                        namespace: None,
                    })
                    .collect(),
                force: false,
                source_is_down: false,
                reason: Some("maintenance of east".into()),
            },
        );
        Ok(self.failovers().create(&PostParams::default(), &fo).await?)
    }

    async fn events_of(&self, name: &str) -> Result<Vec<K8sEvent>> {
        let list = Api::<K8sEvent>::namespaced(self.env.east.client.clone(), &self.ns.name)
            .list(&ListParams::default())
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some(name) && r.kind.as_deref() == Some("Failover")
                })
            })
            .collect())
    }
}

async fn scenario<F>(prefix: &str, body: F) -> Result<()>
where
    F: AsyncFnOnce(&Setup) -> Result<()>,
{
    let s = setup(prefix).await?;
    let res = body(&s).await;
    if res.is_err() {
        eprintln!("{}", s.ns.dump().await);
    }
    s.ns.cleanup().await;
    res
}

fn accepted(fo: &Failover) -> Option<(String, String, String)> {
    fo.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == COND_ACCEPTED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    })
}

#[tokio::test]
async fn a_user_failover_starts_exactly_one_operation_and_records_it() -> Result<()> {
    scenario("fo-trigger", async |s| {
        let group = GroupRef::new(&s.ns.name, "shop")?;
        s.store.register_group(&group, "east").await?;
        let fo = s.user_failover("move-shop", &["shop"], "west").await?;
        let uid = fo.metadata.uid.clone().context("no uid")?;

        let trigger = s.trigger();
        let status = trigger
            .reconcile(&fo)
            .await?
            .context("the Failover was not submitted")?;
        ensure!(
            status.operation_id.as_deref() == Some(uid.as_str()),
            "{status:?}"
        );

        // The operation record, as failoverctl would have written it.
        let op = s
            .store
            .get_operation(&uid)
            .await?
            .context("no operation record for the Failover's uid")?;
        ensure!(
            op.group == group && op.source == "east" && op.target == "west",
            "{op:?}"
        );
        ensure!(
            op.mode == Mode::Consistency && !op.force && op.epoch == 1,
            "{op:?}"
        );
        ensure!(op.phase == Phase::Pending, "{op:?}");
        ensure!(op.reason == "maintenance of east", "{op:?}");
        ensure!(
            op.requested_by == format!("kubernetes:east/{}/move-shop", s.ns.name),
            "{op:?}"
        );
        let state = s.store.get_group_state(&group).await?.context("no state")?;
        ensure!(
            state.op_id.as_deref() == Some(uid.as_str()) && state.epoch == 1,
            "{state:?}"
        );

        // The status on the object in the real cluster.
        let live = s.failovers().get("move-shop").await?;
        let st = live.status.clone().context("no status")?;
        ensure!(st.operation_id.as_deref() == Some(uid.as_str()), "{st:?}");
        let (ok, reason, message) = accepted(&live).context("no Accepted condition")?;
        ensure!(ok == "True" && reason == "Started", "{st:?}");
        ensure!(
            message.contains(&uid) && message.contains("/shop"),
            "{message}"
        );
        ensure!(
            st.groups.len() == 1 && st.groups[0].epoch == Some(1),
            "{st:?}"
        );

        // Both inboxes got the wake-up.
        for cluster in ["east", "west"] {
            let inbox = Inbox::new(s.env.aws.sqs(), cluster, s.options.clone());
            let got = inbox.receive(2, 10).await?;
            ensure!(
                got.iter().any(|m| m
                    .envelope
                    .as_ref()
                    .is_ok_and(|e| e.kind == EnvelopeKind::OperationStarted
                        && e.operation_id == uid
                        && e.sender == "east")),
                "no OperationStarted for {uid} in {cluster}'s inbox: {got:?}"
            );
        }

        // An Event on the object.
        let events = s.events_of("move-shop").await?;
        ensure!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("Accepted")
                    && e.type_.as_deref() == Some("Normal")
                    && e.note.as_deref().is_some_and(|n| n.contains(&uid))),
            "no Accepted event: {events:?}"
        );

        // A second reconcile, of the object as it is now: nothing to do.
        ensure!(trigger.reconcile(&live).await?.is_none());
        // A retry with the object as first seen (a crash before the status was written):
        // the same operation is recorded, no second one starts.
        let again = trigger
            .reconcile(&fo)
            .await?
            .context("the retry did nothing")?;
        ensure!(
            again.operation_id.as_deref() == Some(uid.as_str()),
            "{again:?}"
        );
        let ops: Vec<_> = s
            .store
            .list_operations(None)
            .await?
            .into_iter()
            .filter(|o| o.group == group)
            .collect();
        ensure!(ops.len() == 1, "expected one operation, found {ops:#?}");
        let state = s.store.get_group_state(&group).await?.context("no state")?;
        ensure!(state.epoch == 1, "the epoch moved again: {state:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn refusals_name_the_group_and_why() -> Result<()> {
    scenario("fo-refuse", async |s| {
        let trigger = s.trigger();
        let busy = GroupRef::new(&s.ns.name, "busy")?;
        s.store.register_group(&busy, "east").await?;
        let StartOutcome::Started(running) = s
            .store
            .start_operation(StartRequest {
                group: busy.clone(),
                source: "east".into(),
                target: "west".into(),
                mode: Mode::Consistency,
                force: false,
                source_is_down: false,
                reason: String::new(),
                requested_by: "failoverctl:alice".into(),
                lease_ttl: Duration::from_secs(120),
                op_id: None,
            })
            .await?
        else {
            bail!("the first operation did not start");
        };

        // Another operation in flight.
        let fo = s.user_failover("move-busy", &["busy"], "west").await?;
        let st = trigger.reconcile(&fo).await?.context("not submitted")?;
        ensure!(st.operation_id.is_none(), "{st:?}");
        let live = s.failovers().get("move-busy").await?;
        let (ok, reason, message) = accepted(&live).context("no Accepted condition")?;
        ensure!(
            ok == "False" && reason == "OperationInFlight",
            "{reason}: {message}"
        );
        ensure!(
            message.contains(&busy.to_string()) && message.contains(&running.id),
            "{message}"
        );
        ensure!(
            live.status.as_ref().and_then(|s| s.phase)
                == Some(failover_messages::crd::FailoverPhase::Failed)
        );
        ensure!(
            trigger.reconcile(&live).await?.is_none(),
            "a refused Failover is not submitted again"
        );
        let events = s.events_of("move-busy").await?;
        ensure!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("Refused")
                    && e.type_.as_deref() == Some("Warning")),
            "no Refused warning: {events:?}"
        );

        // A group that is not registered.
        let fo = s.user_failover("move-ghost", &["ghost"], "west").await?;
        trigger.reconcile(&fo).await?;
        let live = s.failovers().get("move-ghost").await?;
        let (ok, reason, message) = accepted(&live).context("no Accepted condition")?;
        ensure!(
            ok == "False" && reason == "GroupNotRegistered",
            "{reason}: {message}"
        );
        ensure!(
            message.contains(&format!("{}/ghost", s.ns.name)),
            "{message}"
        );

        // An unknown target cluster.
        let shop = GroupRef::new(&s.ns.name, "shop")?;
        s.store.register_group(&shop, "east").await?;
        let fo = s.user_failover("move-south", &["shop"], "south").await?;
        trigger.reconcile(&fo).await?;
        let live = s.failovers().get("move-south").await?;
        let (ok, reason, message) = accepted(&live).context("no Accepted condition")?;
        ensure!(
            ok == "False" && reason == "UnknownCluster",
            "{reason}: {message}"
        );
        ensure!(message.contains("south"), "{message}");
        let state = s.store.get_group_state(&shop).await?.context("no state")?;
        ensure!(state.op_id.is_none() && state.epoch == 0, "{state:?}");
        Ok(())
    })
    .await
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn agent(s: &Setup, cluster: &str, kubeconfig: &PathBuf, log: std::fs::File) -> Result<Child> {
    let mut cmd = Command::new(AGENT);
    for (k, _) in std::env::vars() {
        if k.starts_with("FAILOVER_") || k.starts_with("AWS_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    Ok(cmd
        .env("AWS_ENDPOINT_URL", &s.env.aws.endpoint_url)
        .env("AWS_REGION", &s.env.aws.region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", "info")
        .args([
            "--cluster",
            cluster,
            "--table",
            &s.table,
            "--queue-prefix",
            &s.prefix,
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--heartbeat-interval", "2s", "--reread-interval", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()?)
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > DEADLINE {
            bail!("{what} did not happen within {DEADLINE:?} (last error: {last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_agent_submits_a_user_failover_and_reports_on_it() -> Result<()> {
    scenario("fo-trigger-bin", async |s| {
        let group = GroupRef::new(&s.ns.name, "shop")?;
        s.store.register_group(&group, "east").await?;
        let log_path = std::env::temp_dir().join(format!(
            "failover-agent-trigger-{}-{}.log",
            std::process::id(),
            free_port()?
        ));
        let mut child = agent(
            s,
            "east",
            &s.env.east.kubeconfig,
            std::fs::File::create(&log_path)?,
        )?;
        let res = async {
            let fo = s.user_failover("move-shop", &["shop"], "west").await?;
            let uid = fo.metadata.uid.clone().context("no uid")?;
            ensure!(operation_ids(&fo).as_slice() == std::slice::from_ref(&uid));
            let op = eventually("the operation record", || async {
                Ok(s.store.get_operation(&uid).await?)
            })
            .await?;
            ensure!(op.source == "east" && op.target == "west", "{op:?}");
            // The runner picks the operation up and reports on the user's object: the group
            // has no FailoverGroup in east, so its side fails at once, naming it.
            let live = eventually("progress on the user's Failover", || async {
                let live = s.failovers().get("move-shop").await?;
                let st = live.status.clone().unwrap_or_default();
                Ok((st.operation_id.as_deref() == Some(uid.as_str())
                    && st
                        .groups
                        .first()
                        .is_some_and(|g| g.message.as_deref().is_some_and(|m| m.contains("shop")))
                    && st.phase == Some(failover_messages::crd::FailoverPhase::Failed))
                .then_some(live))
            })
            .await?;
            ensure!(accepted(&live).is_some_and(|a| a.0 == "True"), "{live:?}");
            let all = s.failovers().list(&ListParams::default()).await?;
            ensure!(
                all.items.len() == 1,
                "the agent created a second Failover: {:?}",
                all.items
                    .iter()
                    .map(|f| f.metadata.name.clone())
                    .collect::<Vec<_>>()
            );
            eventually("the Failed event on the user's Failover", || async {
                let events = s.events_of("move-shop").await?;
                Ok(events
                    .iter()
                    .any(|e| {
                        e.reason.as_deref() == Some("Failed")
                            && e.type_.as_deref() == Some("Warning")
                    })
                    .then_some(()))
            })
            .await?;
            ensure!(child.try_wait()?.is_none(), "the agent exited");
            Ok(())
        }
        .await;
        let _ = child.kill().await;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if res.is_err() {
            eprintln!("agent log:\n{log}");
        }
        res?;
        ensure!(!log.contains("panicked"), "the agent panicked:\n{log}");
        Ok(())
    })
    .await
}
