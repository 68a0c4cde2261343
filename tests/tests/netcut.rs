//! The cuttable proxy (`failover_tests::netcut`): against a tiny echo server (bytes pass, a
//! cut stalls existing and new connections, a heal lets new ones through and closes the
//! interrupted ones, dropping the proxy stops it), and against a real agent whose
//! DynamoDB endpoint goes through it (its heartbeat record stops changing while the link is
//! cut and changes again once it heals).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use failover_tests::agents::{AgentStart, Stack};
use failover_tests::kube::{TestEnv, wait_for};
use failover_tests::netcut::CutProxy;
use failover_tests::observe::lease_version;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a stalled connection is watched for bytes that must not come.
const QUIET: Duration = Duration::from_millis(400);
/// How long bytes that must come may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// An echo server on loopback that counts the bytes it received.
struct Echo {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Result<Echo> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        counter.fetch_add(n, Ordering::SeqCst);
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(Echo {
            addr,
            received,
            task,
        })
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `msg` and reads exactly its echo.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Result<()> {
    s.write_all(msg).await?;
    read_exactly(s, msg).await
}

/// Reads exactly `want` within [`DEADLINE`].
async fn read_exactly(s: &mut TcpStream, want: &[u8]) -> Result<()> {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut got))
        .await
        .map_err(|_| anyhow!("no echo of {:?} within {DEADLINE:?}", want))??;
    ensure!(got == want, "echo {got:?}, sent {want:?}");
    Ok(())
}

/// Fails when anything arrives on `s` within [`QUIET`].
async fn assert_silent(s: &mut TcpStream, what: &str) -> Result<()> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(QUIET, s.read(&mut buf)).await {
        Err(_) => Ok(()),
        Ok(r) => Err(anyhow!("{what}: expected silence, read {r:?}")),
    }
}

/// Waits until the peer closed `s` (EOF or reset) and fails if any byte came first.
async fn assert_closed_without_bytes(s: &mut TcpStream, what: &str) -> Result<()> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => Err(anyhow!("{what}: read {:?} instead of a close", &buf[..n])),
        Err(_) => Err(anyhow!("{what}: not closed within {DEADLINE:?}")),
    }
}

#[tokio::test]
async fn bytes_pass_a_cut_stalls_and_a_heal_lets_new_connections_through() -> Result<()> {
    let echo = Echo::start().await?;
    let proxy = CutProxy::start(echo.addr)?;
    ensure!(proxy.url() == format!("http://{}", proxy.addr()));
    ensure!(proxy.upstream() == echo.addr);

    let mut before = TcpStream::connect(proxy.addr()).await?;
    round_trip(&mut before, b"hello").await?;

    proxy.cut();
    ensure!(proxy.is_cut());
    // The open connection goes silent both ways: what it sends never reaches the server.
    before.write_all(b"lost").await?;
    assert_silent(&mut before, "the connection open at the cut").await?;
    // A new connection is accepted and held, nothing forwarded.
    let mut during = tokio::time::timeout(DEADLINE, TcpStream::connect(proxy.addr()))
        .await
        .context("connecting during the cut")??;
    during.write_all(b"held").await?;
    assert_silent(&mut during, "a connection made during the cut").await?;
    ensure!(echo.received() == 5, "received {} bytes", echo.received());

    proxy.heal();
    ensure!(!proxy.is_cut());
    // The interrupted connection is closed; its bytes were lost.
    assert_closed_without_bytes(&mut before, "the connection open at the cut").await?;
    // The held one is forwarded now, with what its client sent meanwhile.
    read_exactly(&mut during, b"held").await?;
    round_trip(&mut during, b"again").await?;
    let mut after = TcpStream::connect(proxy.addr()).await?;
    round_trip(&mut after, b"after").await?;
    ensure!(
        echo.received() == "hello".len() + "held".len() + "again".len() + "after".len(),
        "the server received {} bytes: the cut leaked",
        echo.received()
    );

    // Cut again: the connection forwarding since the heal stalls too, then closes at the
    // next heal.
    proxy.cut();
    after.write_all(b"x").await?;
    assert_silent(&mut after, "the connection open at the second cut").await?;
    proxy.heal();
    assert_closed_without_bytes(&mut after, "the connection open at the second cut").await?;
    Ok(())
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_port_and_connections() -> Result<()> {
    let echo = Echo::start().await?;
    let proxy = CutProxy::start(echo.addr)?;
    let addr = proxy.addr();
    let mut open = TcpStream::connect(addr).await?;
    round_trip(&mut open, b"ping").await?;
    proxy.cut();
    let mut held = TcpStream::connect(addr).await?;
    drop(proxy);
    assert_closed_without_bytes(&mut open, "a forwarding connection").await?;
    assert_closed_without_bytes(&mut held, "a held connection").await?;
    wait_for(
        "the proxy's port to refuse connections",
        DEADLINE,
        || async {
            match TcpStream::connect(addr).await {
                Ok(_) => Err("still accepting".to_owned()),
                Err(_) => Ok(Some(())),
            }
        },
    )
    .await
}

// ---- a real agent behind the proxy -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_behind_a_cut_proxy_stops_renewing_its_heartbeat_until_the_heal() -> Result<()> {
    let env = TestEnv::attach().await?;
    let ns = env.namespace("fo-netcut").await?;
    let mut stack = Stack::new(&env, &ns.name, "netcut").await?;
    // The cut outlasts the agent's lease, which then fences every active group in east:
    // keep other tests' out of its reach.
    if let Err(e) = stack.isolate_agents(&[&ns.name]).await {
        stack.cleanup(false).await;
        ns.cleanup().await;
        return Err(e);
    }
    let res = Box::pin(heartbeat_through_proxy(&mut stack)).await;
    if res.is_err() {
        stack.print_logs();
    }
    stack.cleanup(res.is_ok()).await;
    ns.cleanup().await;
    res
}

async fn heartbeat_through_proxy(stack: &mut Stack) -> Result<()> {
    let interval = stack.agent_options.heartbeat_interval;
    let start = AgentStart {
        aws_proxy: true,
        ..AgentStart::default()
    };
    stack.start_agent_with("east", start).await?;
    // Renewals arrive through the proxy.
    let first = wait_for("east's heartbeat", DEADLINE, || async {
        lease_version(&stack.store, "east").await.map(Some)
    })
    .await?;
    wait_for("a renewed heartbeat", interval * 5, || async {
        let now = lease_version(&stack.store, "east").await?;
        Ok((now > first).then_some(()))
    })
    .await?;

    let cut_at = Timestamp::now();
    stack.aws_proxy("east")?.cut();
    // The record stops changing: unchanged for three intervals in a row, and last written
    // before the cut (a request already at moto when the link went down may still land).
    let seen = Cell::new(
        lease_version(&stack.store, "east")
            .await
            .map_err(|e| anyhow!(e))?,
    );
    let since = Cell::new(tokio::time::Instant::now());
    let frozen = wait_for("east's heartbeat to stop changing", interval * 10, || {
        let (stack, seen, since) = (&*stack, &seen, &since);
        async move {
            let now = lease_version(&stack.store, "east").await?;
            if now != seen.get() {
                seen.set(now);
                since.set(tokio::time::Instant::now());
            }
            Ok((since.get().elapsed() >= interval * 3).then_some(now))
        }
    })
    .await?;
    ensure!(
        frozen <= cut_at,
        "the heartbeat frozen at {frozen} was written after the cut at {cut_at}"
    );
    stack.check_agents()?;

    stack.aws_proxy("east")?.heal();
    let healed = wait_for("east's heartbeat after the heal", interval * 10, || async {
        let now = lease_version(&stack.store, "east").await?;
        Ok((now > frozen).then_some(now))
    })
    .await?;
    eprintln!("heartbeat: frozen at {frozen} (cut at {cut_at}), renewed at {healed}");
    stack.check_agents()
}
