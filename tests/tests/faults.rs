//! Network faults through toxiproxy (`failover_tests::faults`), each observed from a real
//! client of a real server of the test environment:
//!
//! * a cut DynamoDB proxy silences DynamoDB calls through it, while SQS through its own proxy
//!   and DynamoDB through another cluster's proxy answer; after the heal DynamoDB answers;
//! * one-way cuts: with requests cut a write never reaches moto, with answers cut it lands
//!   unanswered;
//! * latency, bandwidth and a slow close delay what the client sees by at least what was set;
//! * a reset: an SDK call fails with a connection reset, before or after moto applied it;
//! * a refusing proxy refuses connections until the heal;
//! * a cut apiserver proxy silences a kube client through it until the heal;
//! * toxiproxy's refusals name the proxy; dropping the `Faults` removes its proxies;
//! * an agent started through its proxies talks to nothing else, and, its DynamoDB cut for
//!   longer than its lease, reports the lease lost and renews it after the heal.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_sdk_dynamodb::types::AttributeValue;
use failover_messages::keys::{PK, SK};
use failover_messages::setup::ensure_table;
use failover_tests::agents::{AgentStart, Stack};
use failover_tests::faults::{Direction, Faults, Service, tcp_peers};
use failover_tests::fixtures::{SETTLE, install_crds};
use failover_tests::kube::{TestEnv, TestNamespace, wait_for};
use failover_tests::observe::{counter, lease_version};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a call through a cut proxy is watched for an answer that must not come.
const QUIET: Duration = Duration::from_secs(2);
/// How long an answer that must come may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// A table and a queue of one test, made directly (not through a proxy), and the test's
/// proxies.
struct Moto {
    env: TestEnv,
    faults: Faults,
    table: String,
    queue: String,
}

impl Moto {
    async fn new(label: &str) -> Result<Moto> {
        let env = TestEnv::attach().await?;
        let faults = Faults::new(&env, label)?;
        let table = env.aws.unique(&format!("fo-{label}"));
        ensure_table(&env.aws.dynamodb(), &table).await?;
        let queue = env.aws.unique(&format!("fo-{label}"));
        env.aws
            .sqs()
            .create_queue()
            .queue_name(&queue)
            .send()
            .await?;
        Ok(Moto {
            env,
            faults,
            table,
            queue,
        })
    }

    /// DescribeTable through `ddb`.
    async fn describe(&self, ddb: &aws_sdk_dynamodb::Client) -> Result<()> {
        ddb.describe_table().table_name(&self.table).send().await?;
        Ok(())
    }

    /// GetQueueUrl through `sqs`.
    async fn queue_url(&self, sqs: &aws_sdk_sqs::Client) -> Result<()> {
        sqs.get_queue_url().queue_name(&self.queue).send().await?;
        Ok(())
    }

    /// Writes item `key` with `len` bytes of data through `ddb`.
    async fn put(&self, ddb: &aws_sdk_dynamodb::Client, key: &str, len: usize) -> Result<()> {
        ddb.put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(key.to_owned()))
            .item(SK, AttributeValue::S("faults".to_owned()))
            .item("data", AttributeValue::S("x".repeat(len)))
            .send()
            .await?;
        Ok(())
    }

    /// Reads item `key` through `ddb` (consistent read); its data's length.
    async fn get(&self, ddb: &aws_sdk_dynamodb::Client, key: &str) -> Result<Option<usize>> {
        let out = ddb
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(key.to_owned()))
            .key(SK, AttributeValue::S("faults".to_owned()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out
            .item()
            .and_then(|i| i.get("data"))
            .and_then(|d| d.as_s().ok())
            .map(String::len))
    }

    /// Whether item `key` exists, read directly from moto.
    async fn stored(&self, key: &str) -> Result<bool> {
        Ok(self.get(&self.env.aws.dynamodb(), key).await?.is_some())
    }

    /// Removes the table and the queue (best effort); the proxies go with `faults`.
    async fn cleanup(self) {
        let _ = self
            .env
            .aws
            .dynamodb()
            .delete_table()
            .table_name(&self.table)
            .send()
            .await;
        let sqs = self.env.aws.sqs();
        if let Ok(out) = sqs.get_queue_url().queue_name(&self.queue).send().await
            && let Some(url) = out.queue_url()
        {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
    }

    /// Runs `body`, then cleans up.
    async fn run<F>(label: &str, body: F) -> Result<()>
    where
        F: AsyncFnOnce(&Moto) -> Result<()>,
    {
        let m = Moto::new(label).await?;
        let res = body(&m).await;
        m.cleanup().await;
        res
    }
}

/// Fails unless `call` answers within [`DEADLINE`]; returns its value and how long it took.
async fn answers<T>(what: &str, call: impl Future<Output = Result<T>>) -> Result<(T, Duration)> {
    let start = Instant::now();
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(Ok(v)) => Ok((v, start.elapsed())),
        Ok(Err(e)) => Err(e.context(format!("{what}: expected an answer"))),
        Err(_) => bail!("{what}: no answer within {DEADLINE:?}"),
    }
}

/// Fails if `call` ends, either way, within [`QUIET`].
async fn silent<T: Debug>(what: &str, call: impl Future<Output = Result<T>>) -> Result<()> {
    match tokio::time::timeout(QUIET, call).await {
        Err(_) => Ok(()),
        Ok(r) => Err(anyhow!("{what}: expected silence, got {r:?}")),
    }
}

/// Fails unless `call` fails within [`DEADLINE`]; returns its error with its causes.
async fn fails<T: Debug>(what: &str, call: impl Future<Output = Result<T>>) -> Result<String> {
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(Err(e)) => Ok(format!("{e:?}")),
        Ok(Ok(v)) => bail!("{what}: expected a failure, got {v:?}"),
        Err(_) => bail!("{what}: no answer within {DEADLINE:?}"),
    }
}

/// Retries `call` (each try up to [`QUIET`]) until it answers, for [`DEADLINE`]: a client
/// may first have to give up a connection the fault broke.
async fn recovers<T, F, Fut>(what: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    wait_for(what, DEADLINE, || {
        let attempt = call();
        async move {
            match tokio::time::timeout(QUIET, attempt).await {
                Ok(Ok(v)) => Ok(Some(v)),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err(format!("no answer within {QUIET:?}")),
            }
        }
    })
    .await
}

// ---- DynamoDB and SQS -------------------------------------------------------------------------

#[tokio::test]
async fn a_cut_dynamodb_proxy_silences_dynamodb_while_sqs_answers_until_the_heal() -> Result<()> {
    Moto::run("faults-cut", async |m| {
        let (ddb, sqs) = (
            m.faults.dynamodb("east").await?,
            m.faults.sqs("east").await?,
        );
        answers("DescribeTable through the proxy", m.describe(&ddb)).await?;
        answers("GetQueueUrl through the proxy", m.queue_url(&sqs)).await?;

        m.faults.cut("east", Service::Dynamo).await?;
        silent("DescribeTable through the cut proxy", m.describe(&ddb)).await?;
        // A fresh client's new connection is accepted and silenced the same way.
        let fresh = m.faults.dynamodb("east").await?;
        silent("DescribeTable on a new connection", m.describe(&fresh)).await?;
        answers("GetQueueUrl through SQS's proxy", m.queue_url(&sqs)).await?;
        let west = m.faults.dynamodb("west").await?;
        answers("DescribeTable through west's proxy", m.describe(&west)).await?;

        m.faults.heal("east", Service::Dynamo).await?;
        recovers("DescribeTable after the heal", || m.describe(&ddb)).await?;
        answers("DescribeTable on a new client", m.describe(&fresh)).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_one_way_cut_loses_the_request_or_only_its_answer() -> Result<()> {
    Moto::run("faults-oneway", async |m| {
        let ddb = m.faults.dynamodb("east").await?;
        answers("DescribeTable through the proxy", m.describe(&ddb)).await?;

        m.faults
            .cut_one_way("east", Service::Dynamo, Direction::Upstream)
            .await?;
        silent("PutItem with its request cut", m.put(&ddb, "up", 8)).await?;
        m.faults.heal("east", Service::Dynamo).await?;
        recovers("DescribeTable after the heal", || m.describe(&ddb)).await?;
        ensure!(
            !m.stored("up").await?,
            "a request cut on its way reached moto"
        );

        m.faults
            .cut_one_way("east", Service::Dynamo, Direction::Downstream)
            .await?;
        silent("PutItem with its answer cut", m.put(&ddb, "down", 8)).await?;
        let landed = wait_for("the unanswered write in moto", DEADLINE, || async {
            Ok(m.stored("down")
                .await
                .map_err(|e| format!("{e:#}"))?
                .then_some(()))
        });
        landed.await?;
        m.faults.heal("east", Service::Dynamo).await?;
        recovers("DescribeTable after the heal", || m.describe(&ddb)).await
    })
    .await
}

#[tokio::test]
async fn latency_and_bandwidth_slow_every_answer_by_at_least_what_was_set() -> Result<()> {
    Moto::run("faults-slow", async |m| {
        let ddb = m.faults.dynamodb("east").await?;
        answers("DescribeTable through the proxy", m.describe(&ddb)).await?;

        let (latency, jitter) = (Duration::from_millis(800), Duration::from_millis(100));
        m.faults
            .latency("east", Service::Dynamo, latency, jitter)
            .await?;
        for n in 0..3 {
            let (_, took) = answers("DescribeTable with latency", m.describe(&ddb)).await?;
            ensure!(
                took >= latency - jitter,
                "call {n} took {took:?}, latency {latency:?}"
            );
        }
        m.faults.heal("east", Service::Dynamo).await?;

        // 20 KB of data at 10 KB/s: two seconds.
        let len = 20_000;
        m.put(&m.env.aws.dynamodb(), "big", len).await?;
        m.faults.bandwidth("east", Service::Dynamo, 10).await?;
        let (got, took) = answers("GetItem at 10 KB/s", m.get(&ddb, "big")).await?;
        ensure!(got == Some(len), "read {got:?} bytes of data");
        ensure!(
            took >= Duration::from_millis(1500),
            "20 KB at 10 KB/s in {took:?}"
        );
        m.faults.heal("east", Service::Dynamo).await?;
        let (_, took) = answers("GetItem after the heal", m.get(&ddb, "big")).await?;
        eprintln!("GetItem of 20 KB after the heal: {took:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_slow_close_holds_the_end_of_a_connection_moto_closed() -> Result<()> {
    Moto::run("faults-close", async |m| {
        let delay = Duration::from_millis(1500);
        let addr = m.faults.proxy("east", Service::Sqs).await?;
        let (_, end) = answers("HTTP/1.0 GET through the proxy", http10(addr))
            .await?
            .0;
        ensure!(end < delay, "without the toxic the close took {end:?}");
        m.faults.slow_close("east", Service::Sqs, delay).await?;
        let (first, end) = answers("HTTP/1.0 GET, slow close", http10(addr)).await?.0;
        ensure!(
            first < delay && end >= delay,
            "answer after {first:?}, close after {end:?}, delay {delay:?}"
        );
        Ok(())
    })
    .await
}

/// An HTTP/1.0 `GET /moto-api/` at `addr` (the server closes after answering): when the
/// first byte of the answer and when the close arrived.
async fn http10(addr: SocketAddr) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: moto\r\n\r\n")
        .await?;
    let mut buf = [0u8; 4096];
    let mut first = None;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            let first = first.context("closed without an answer")?;
            return Ok((first, start.elapsed()));
        }
        first.get_or_insert_with(|| start.elapsed());
    }
}

#[tokio::test]
async fn a_reset_fails_a_call_before_or_after_moto_applied_it() -> Result<()> {
    Moto::run("faults-reset", async |m| {
        for (direction, key, applied) in [
            (Direction::Upstream, "reset-up", false),
            (Direction::Downstream, "reset-down", true),
        ] {
            m.faults
                .reset_peer("east", Service::Dynamo, direction)
                .await?;
            // A fresh client, so the connection starts after the toxic.
            let ddb = m.faults.dynamodb("east").await?;
            let err = fails(&format!("PutItem reset {direction:?}"), m.put(&ddb, key, 8)).await?;
            ensure!(
                err.to_lowercase().contains("reset"),
                "PutItem reset {direction:?} failed otherwise: {err}"
            );
            ensure!(
                m.stored(key).await? == applied,
                "reset {direction:?}: the write should {}have landed",
                if applied { "" } else { "not " }
            );
            m.faults.heal("east", Service::Dynamo).await?;
            recovers("PutItem after the heal", || m.put(&ddb, key, 8)).await?;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_refusing_proxy_refuses_connections_until_the_heal() -> Result<()> {
    Moto::run("faults-refuse", async |m| {
        let sqs = m.faults.sqs("east").await?;
        let addr = m.faults.proxy("east", Service::Sqs).await?;
        answers("GetQueueUrl through the proxy", m.queue_url(&sqs)).await?;
        m.faults.refuse("east", Service::Sqs).await?;
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            other => bail!("connecting to the refusing proxy: {other:?}"),
        }
        fails("GetQueueUrl through the refusing proxy", m.queue_url(&sqs)).await?;
        m.faults.heal("east", Service::Sqs).await?;
        recovers("GetQueueUrl after the heal", || m.queue_url(&sqs)).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn refusals_name_the_proxy_and_dropping_the_faults_removes_its_proxies() -> Result<()> {
    let env = TestEnv::attach().await?;
    let faults = Faults::new(&env, "faults-drop")?;
    let addr = faults.proxy("west", Service::Dynamo).await?;
    faults.cut("west", Service::Dynamo).await?;
    let err = faults
        .cut("west", Service::Dynamo)
        .await
        .err()
        .context("the same toxic twice was accepted")?;
    let name = faults.proxy_name("west", Service::Dynamo);
    ensure!(format!("{err:#}").contains(&name), "{err:#}");
    ensure!(faults.proxy("north", Service::ApiServer).await.is_err());
    drop(faults);
    match TcpStream::connect(addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        other => bail!("the dropped proxy's port: {other:?}"),
    }
}

// ---- the apiserver ------------------------------------------------------------------------------

#[tokio::test]
async fn a_cut_apiserver_proxy_silences_a_kube_client_until_the_heal() -> Result<()> {
    let env = TestEnv::attach().await?;
    let faults = Faults::new(&env, "faults-kube")?;
    let client = faults.kube_client("east").await?;
    let namespaces = Api::<Namespace>::all(client);
    let list = || async {
        let l = namespaces
            .list_metadata(&ListParams::default().limit(1))
            .await;
        Ok(l?.items.len())
    };
    answers("listing namespaces through the proxy", list()).await?;
    faults.cut("east", Service::ApiServer).await?;
    silent("listing namespaces through the cut proxy", list()).await?;
    // East itself and west's proxy are not cut.
    let direct = Api::<Namespace>::all(env.east.client.clone());
    direct
        .list_metadata(&ListParams::default().limit(1))
        .await?;
    let west = Api::<Namespace>::all(faults.kube_client("west").await?);
    answers("listing west's namespaces through its proxy", async {
        Ok(west.list_metadata(&ListParams::default().limit(1)).await?)
    })
    .await?;
    faults.heal("east", Service::ApiServer).await?;
    recovers("listing namespaces after the heal", list).await?;
    Ok(())
}

// ---- an agent through its proxies ---------------------------------------------------------------

/// The agent's `--lease-duration`.
const LEASE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_from_dynamodb_past_its_lease_loses_it_and_renews_after_the_heal()
-> Result<()> {
    let env = TestEnv::attach().await?;
    let (ns, mut stack) = isolated_stack(&env, "faults-lease").await?;
    let res = Box::pin(lease_through_proxies(&mut stack)).await;
    finish(stack, ns, res).await
}

/// A stack on a lease of [`LEASE`] whose agents may change only its own namespace: a lost
/// lease fences every active group in east, so other tests' are kept out of reach.
async fn isolated_stack(env: &TestEnv, label: &str) -> Result<(TestNamespace, Stack)> {
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-faults").await?;
    let mut stack = Stack::new(env, &ns.name, label).await?;
    stack.agent_options.lease_duration = Some(LEASE);
    if let Err(e) = stack.isolate_agents(&[&ns.name]).await {
        return Err(finish(stack, ns, Err(e)).await.unwrap_err());
    }
    Ok((ns, stack))
}

/// The logs when `res` failed, then the stack's and the namespace's cleanup; `res`.
async fn finish(stack: Stack, ns: TestNamespace, res: Result<()>) -> Result<()> {
    if res.is_err() {
        stack.print_logs();
    }
    stack.cleanup(res.is_ok()).await;
    ns.cleanup().await;
    res
}

async fn lease_through_proxies(stack: &mut Stack) -> Result<()> {
    let start = AgentStart {
        faults: true,
        ..AgentStart::default()
    };
    stack.start_agent_with("east", start).await?;
    only_through_proxies(stack).await?;
    let store = &stack.store;
    let first = wait_for("east's lease record", DEADLINE, || async {
        lease_version(store, "east").await.map(Some)
    })
    .await?;
    wait_for("a renewal through the proxy", LEASE, || async {
        Ok((lease_version(store, "east").await? > first).then_some(()))
    })
    .await?;
    let metrics = stack.metrics("east").await?;
    ensure!(
        counter(&metrics, "failover_leases_lost", &[]) == 0.0,
        "a lease lost before the cut:\n{metrics}"
    );

    let (cut_at, cut_ts) = (Instant::now(), Timestamp::now());
    stack.faults().cut("east", Service::Dynamo).await?;
    let lost_after = wait_for("failover_leases_lost_total >= 1", LEASE * 3, || async {
        let metrics = stack.metrics("east").await.map_err(|e| format!("{e:#}"))?;
        let lost = counter(&metrics, "failover_leases_lost", &[]);
        Ok((lost >= 1.0).then(|| cut_at.elapsed()))
    })
    .await?;
    // The cut outlasts the lease; the record was last written before it.
    tokio::time::sleep_until(cut_at + LEASE + Duration::from_secs(1)).await;
    let frozen = lease_version(store, "east").await.map_err(|e| anyhow!(e))?;
    ensure!(
        frozen <= cut_ts,
        "the lease record written at {frozen}, after the cut at {cut_ts}"
    );
    let metrics = stack.metrics("east").await?;
    let renewed = counter(&metrics, "failover_heartbeat_writes", &["outcome=\"ok\""]);

    stack.faults().heal("east", Service::Dynamo).await?;
    let healed_at = Instant::now();
    let version = wait_for("east's lease renewed after the heal", LEASE * 2, || async {
        let now = lease_version(store, "east").await?;
        Ok((now > frozen).then_some(now))
    })
    .await?;
    let metrics = stack.metrics("east").await?;
    let renewed_since = counter(&metrics, "failover_heartbeat_writes", &["outcome=\"ok\""]);
    ensure!(
        renewed_since > renewed,
        "no successful renewal counted after the heal:\n{metrics}"
    );
    eprintln!(
        "lease {LEASE:?}: lost {lost_after:?} after the cut; renewed {:?} after the heal \
         (record {frozen} -> {version})",
        healed_at.elapsed()
    );
    stack.check_agents()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_apiserver_holds_every_request_keeps_renewing_its_lease() -> Result<()> {
    let env = TestEnv::attach().await?;
    let (ns, mut stack) = isolated_stack(&env, "faults-silent-api").await?;
    let res = Box::pin(lease_with_a_silent_apiserver(&mut stack)).await;
    finish(stack, ns, res).await
}

/// East's apiserver link swallows every request (held silent, never closed) for three
/// leases: the renewals, which list the FailoverGroups first, must still reach DynamoDB
/// (the list is bounded), so the lease is renewed throughout and never lost.
async fn lease_with_a_silent_apiserver(stack: &mut Stack) -> Result<()> {
    let start = AgentStart {
        faults: true,
        ..AgentStart::default()
    };
    stack.start_agent_with("east", start).await?;
    let store = &stack.store;
    let first = wait_for("east's lease record", DEADLINE, || async {
        lease_version(store, "east").await.map(Some)
    })
    .await?;
    stack.faults().cut("east", Service::ApiServer).await?;
    let until = Instant::now() + LEASE * 3;
    let mut version = first;
    let mut renewals = 0;
    while Instant::now() < until {
        let store = &stack.store;
        version = wait_for(
            "a renewal of east's lease while its apiserver is silent",
            LEASE,
            || async move {
                let now = lease_version(store, "east").await?;
                Ok((now > version).then_some(now))
            },
        )
        .await?;
        renewals += 1;
    }
    let metrics = stack.metrics("east").await?;
    ensure!(
        counter(&metrics, "failover_leases_lost", &[]) == 0.0,
        "the lease was lost with only the apiserver silent:\n{metrics}"
    );
    eprintln!("{renewals} renewals in three leases with the apiserver silent");
    stack.faults().heal("east", Service::ApiServer).await?;
    stack.check_agents()
}

/// Waits until each of east's DynamoDB, SQS and apiserver proxies has accepted a connection
/// (toxiproxy's log: nothing but east's agent uses them); fails if the agent is seen holding
/// a connection to moto or to the apiserver directly in the meantime.
async fn only_through_proxies(stack: &mut Stack) -> Result<()> {
    let pid = stack.proc_mut("agent-east")?.pid();
    let faults = stack.faults();
    let mut direct = BTreeSet::new();
    for service in Service::ALL {
        faults.proxy("east", service).await?;
        direct.insert(faults.upstream("east", service)?);
    }
    // Under a loaded machine the agent may take a while to open all three (its kube watches,
    // its SQS long poll, its lease renewal); a DynamoDB connection may live for one request
    // only (moto closes it), hence the proxy's log rather than the agent's sockets.
    let around = std::sync::Mutex::new(BTreeSet::new());
    wait_for("east's agent on its three proxies", DEADLINE * 3, || {
        let res = (|| -> Result<Option<()>> {
            let peers = tcp_peers(pid)?;
            around
                .lock()
                .unwrap()
                .extend(peers.intersection(&direct).copied());
            let mut missing = Vec::new();
            for service in Service::ALL {
                if faults.accepted_clients("east", service)? == 0 {
                    missing.push(format!("{service:?}"));
                }
            }
            if missing.is_empty() {
                return Ok(Some(()));
            }
            Err(anyhow!(
                "no connection yet through the proxies of {}",
                missing.join(", ")
            ))
        })()
        .map_err(|e| format!("{e:#}"));
        async move { res }
    })
    .await?;
    let around = around.into_inner().unwrap();
    ensure!(
        around.is_empty(),
        "east's agent connects around its proxies to {around:?}"
    );
    Ok(())
}
