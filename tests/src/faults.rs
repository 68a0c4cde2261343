//! Network faults between a test's clients and the environment's servers, through the
//! toxiproxy server `make env-up` starts (`tests/env/toxiproxy-up.sh`).
//!
//! A [`Faults`] (one per [`crate::agents::Stack`]) creates one toxiproxy proxy per cluster
//! and [`Service`] on first use: DynamoDB and SQS each get their own proxy to moto, so either
//! can be faulted alone, and the apiserver's proxy forwards to the cluster's kube-apiserver
//! (TLS passes through untouched; the apiserver's certificate names 127.0.0.1, whatever the
//! port). Dropping the `Faults` deletes its proxies. Proxy names start with `fx<pid>-<n>-`,
//! so tests running at the same time never share one; proxies left behind by a test process
//! that died are removed by the next process's first proxy.
//!
//! A fault is a toxiproxy *toxic* on a proxy's [`Direction::Upstream`] stream (client to
//! server) or [`Direction::Downstream`] stream (server to client); it applies to the
//! connections open at the time and to new ones.
//!
//! * [`Faults::cut`] is a partition as a black hole looks to a client: on both streams a
//!   `timeout` toxic with timeout 0 drops every byte, and a `slow_close` toxic of an hour
//!   behind it holds the close that the `timeout` toxic would pass on (moto closes its side
//!   after every answer), while connections stay open and new ones are still accepted. The
//!   client sees neither a refusal nor a reset nor a close, only silence until its own
//!   timeout. Bytes dropped during a cut are lost, not delivered at the heal as TCP
//!   retransmission would: the heal closes every connection the cut held, as a peer that
//!   has forgotten them. [`Faults::refuse`] is the other kind of outage, a host that is down:
//!   the proxy is disabled, its listener and connections closed, so connecting is refused.
//! * [`Faults::latency`], [`Faults::bandwidth`], [`Faults::slow_close`] act on what the
//!   server sends back; [`Faults::reset_peer`] resets the connection (TCP RST) at the first
//!   bytes on the chosen stream; [`Faults::add`] adds any [`Toxic`].
//! * [`Faults::heal`] removes every toxic of the proxy and re-enables it.
//!
//! Each call that toxiproxy refuses fails with an error naming the proxy. The client speaks
//! HTTP/1.1 to toxiproxy's API over a plain TCP stream on a blocking thread, so dropping a
//! `Faults` can delete its proxies synchronously.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::kube::TestEnv;

/// How long one call to toxiproxy's API may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cut holds a close (longer than any test).
const HOLD_CLOSE: Duration = Duration::from_secs(3600);

/// A server a proxy stands in front of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// moto's DynamoDB (the agent's `AWS_ENDPOINT_URL_DYNAMODB`).
    Dynamo,
    /// moto's SQS (the agent's `AWS_ENDPOINT_URL_SQS`).
    Sqs,
    /// The cluster's kube-apiserver (the `server:` of the kubeconfig).
    ApiServer,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 3] = [Service::Dynamo, Service::Sqs, Service::ApiServer];

    fn slug(self) -> &'static str {
        match self {
            Service::Dynamo => "dynamodb",
            Service::Sqs => "sqs",
            Service::ApiServer => "apiserver",
        }
    }
}

/// One stream of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: the requests.
    Upstream,
    /// Server to client: the responses.
    Downstream,
}

impl Direction {
    fn stream(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

/// A toxiproxy toxic, as [`Faults::add`] puts it on one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toxic {
    /// Drops every byte; closes the connection after `timeout`, never when it is zero.
    Timeout { timeout: Duration },
    /// Delays every chunk of data by `latency` ± `jitter`.
    Latency { latency: Duration, jitter: Duration },
    /// Passes at most `kb_per_second` KB per second.
    Bandwidth { kb_per_second: u64 },
    /// Delays the close of the connection by `delay`.
    SlowClose { delay: Duration },
    /// Resets the connection (TCP RST, nothing forwarded) `timeout` after the first data.
    /// Only connections opened after it was added are reset; one already open is closed
    /// (FIN) instead.
    ResetPeer { timeout: Duration },
    /// Closes the connection once `bytes` bytes passed.
    LimitData { bytes: u64 },
}

impl Toxic {
    fn kind(self) -> &'static str {
        match self {
            Toxic::Timeout { .. } => "timeout",
            Toxic::Latency { .. } => "latency",
            Toxic::Bandwidth { .. } => "bandwidth",
            Toxic::SlowClose { .. } => "slow_close",
            Toxic::ResetPeer { .. } => "reset_peer",
            Toxic::LimitData { .. } => "limit_data",
        }
    }

    fn attributes(self) -> Value {
        match self {
            Toxic::Timeout { timeout } => json!({"timeout": millis(timeout)}),
            Toxic::Latency { latency, jitter } => {
                json!({"latency": millis(latency), "jitter": millis(jitter)})
            }
            Toxic::Bandwidth { kb_per_second } => json!({"rate": kb_per_second}),
            Toxic::SlowClose { delay } => json!({"delay": millis(delay)}),
            Toxic::ResetPeer { timeout } => json!({"timeout": millis(timeout)}),
            Toxic::LimitData { bytes } => json!({"bytes": bytes}),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An endpoint nothing listens on (port 9, discard, closed on loopback here).
pub const NOWHERE: &str = "http://127.0.0.1:9";

/// How an agent reaches DynamoDB, SQS and its apiserver: what to add to its command line
/// ([`AgentEndpoints::direct`], or through its proxies: [`Faults::agent_endpoints`]).
#[derive(Clone, Debug, Default)]
pub struct AgentEndpoints {
    /// `--kubeconfig <path>`, and `--endpoint-url <url>` when direct.
    pub args: Vec<OsString>,
    /// Through the proxies: `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_SQS`, each its
    /// proxy (the agent's `--dynamodb-endpoint` and `--sqs-endpoint`), with `--endpoint-url`
    /// at [`NOWHERE`]: the service endpoints must win.
    pub env: BTreeMap<String, String>,
}

impl AgentEndpoints {
    /// The apiserver of `kubeconfig`, DynamoDB and SQS at `endpoint_url`.
    pub fn direct(kubeconfig: &Path, endpoint_url: &str) -> AgentEndpoints {
        AgentEndpoints {
            args: vec![
                "--kubeconfig".into(),
                kubeconfig.into(),
                "--endpoint-url".into(),
                endpoint_url.into(),
            ],
            env: BTreeMap::new(),
        }
    }
}

/// The proxies of one test (see the module documentation).
pub struct Faults {
    /// toxiproxy's API.
    api: SocketAddr,
    /// `fx<pid>-<n>-<label>`: the start of every proxy name.
    prefix: String,
    /// moto's `host:port`.
    moto: SocketAddr,
    /// The region every AWS client shares.
    region: String,
    /// Per cluster: its admin kubeconfig and its apiserver's `host:port`.
    apiservers: BTreeMap<String, (PathBuf, SocketAddr)>,
    /// The proxies made so far and their listen addresses.
    proxies: Mutex<BTreeMap<(String, Service), SocketAddr>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("api", &self.api)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// Proxies named after `label`, to the servers of `env`. Makes no call yet.
    pub fn new(env: &TestEnv, label: &str) -> Result<Faults> {
        static N: AtomicU64 = AtomicU64::new(0);
        let api = loopback_addr(&env.toxiproxy_url, "http://")?;
        let moto = loopback_addr(&env.aws.endpoint_url, "http://")?;
        let mut apiservers = BTreeMap::new();
        for c in env.clusters() {
            let server = kubeconfig_server(&Kubeconfig::read_from(&c.kubeconfig)?)?;
            let addr = loopback_addr(&server, "https://")
                .with_context(|| format!("the apiserver of {}", c.name))?;
            apiservers.insert(c.name.clone(), (c.kubeconfig.clone(), addr));
        }
        let label: String = label
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect();
        let n = N.fetch_add(1, Ordering::Relaxed);
        Ok(Faults {
            api,
            prefix: format!("fx{}-{n}-{label}", std::process::id()),
            moto,
            region: env.aws.region.clone(),
            apiservers,
            proxies: Mutex::new(BTreeMap::new()),
        })
    }

    /// The name of the proxy to `service` for `cluster`.
    pub fn proxy_name(&self, cluster: &str, service: Service) -> String {
        format!("{}-{cluster}-{}", self.prefix, service.slug())
    }

    /// The server behind the proxy to `service` for `cluster`.
    pub fn upstream(&self, cluster: &str, service: Service) -> Result<SocketAddr> {
        match service {
            Service::Dynamo | Service::Sqs => Ok(self.moto),
            Service::ApiServer => self.apiserver(cluster).map(|(_, addr)| *addr),
        }
    }

    fn apiserver(&self, cluster: &str) -> Result<&(PathBuf, SocketAddr)> {
        self.apiservers
            .get(cluster)
            .with_context(|| format!("no cluster {cluster} in the test environment"))
    }

    /// The address clients of `service` for `cluster` connect to; the proxy is created on
    /// first use.
    pub async fn proxy(&self, cluster: &str, service: Service) -> Result<SocketAddr> {
        let upstream = self.upstream(cluster, service)?;
        let mut proxies = self.proxies.lock().await;
        let key = (cluster.to_owned(), service);
        if let Some(addr) = proxies.get(&key) {
            return Ok(*addr);
        }
        static REAPED: AtomicBool = AtomicBool::new(false);
        if !REAPED.swap(true, Ordering::SeqCst) {
            let api = self.api;
            tokio::task::spawn_blocking(move || reap_orphans(api))
                .await
                .context("joining the removal of orphaned proxies")??;
        }
        let name = self.proxy_name(cluster, service);
        let body = json!({
            "name": name,
            "listen": "127.0.0.1:0",
            "upstream": upstream.to_string(),
            "enabled": true,
        });
        let created = self
            .call(
                "POST",
                "/proxies".into(),
                Some(body),
                &format!("creating proxy {name}"),
            )
            .await?;
        let listen: SocketAddr = serde_json::from_str::<Value>(&created)?["listen"]
            .as_str()
            .and_then(|l| l.parse().ok())
            .with_context(|| format!("proxy {name}: no listen address in {created}"))?;
        proxies.insert(key, listen);
        Ok(listen)
    }

    /// How many client connections the proxy to `service` for `cluster` has accepted so
    /// far, from the toxiproxy server's log: a connection that lived for one request between
    /// two looks at the client's sockets still counts.
    pub fn accepted_clients(&self, cluster: &str, service: Service) -> Result<usize> {
        let path = crate::env::state_dir().join("toxiproxy.log");
        let log = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the toxiproxy log {}", path.display()))?;
        Ok(accepted_in(&log, &self.proxy_name(cluster, service)))
    }

    /// The proxy as an endpoint URL: `http://…` for DynamoDB and SQS, `https://…` for the
    /// apiserver.
    pub async fn url(&self, cluster: &str, service: Service) -> Result<String> {
        let addr = self.proxy(cluster, service).await?;
        let scheme = if service == Service::ApiServer {
            "https"
        } else {
            "http"
        };
        Ok(format!("{scheme}://{addr}"))
    }

    /// A DynamoDB client through `cluster`'s DynamoDB proxy.
    pub async fn dynamodb(&self, cluster: &str) -> Result<aws_sdk_dynamodb::Client> {
        let url = self.url(cluster, Service::Dynamo).await?;
        Ok(aws_sdk_dynamodb::Client::new(
            &crate::aws::sdk_config(&url, &self.region).await,
        ))
    }

    /// An SQS client through `cluster`'s SQS proxy.
    pub async fn sqs(&self, cluster: &str) -> Result<aws_sdk_sqs::Client> {
        let url = self.url(cluster, Service::Sqs).await?;
        Ok(aws_sdk_sqs::Client::new(
            &crate::aws::sdk_config(&url, &self.region).await,
        ))
    }

    /// An admin kube client of `cluster` through its apiserver's proxy.
    pub async fn kube_client(&self, cluster: &str) -> Result<kube::Client> {
        let admin = Kubeconfig::read_from(&self.apiserver(cluster)?.0)?;
        let kubeconfig = self.through_proxy(cluster, admin).await?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Writes a copy of the kubeconfig at `path` (one of `cluster`) whose server is the
    /// apiserver's proxy, next to it (`<name>-proxied.kubeconfig`); returns its path.
    pub async fn write_kubeconfig(&self, cluster: &str, path: &Path) -> Result<PathBuf> {
        let kubeconfig = self
            .through_proxy(cluster, Kubeconfig::read_from(path)?)
            .await?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("agent");
        let out = path.with_file_name(format!("{stem}-proxied.kubeconfig"));
        std::fs::write(&out, serde_yaml::to_string(&kubeconfig)?)
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(out)
    }

    /// `kubeconfig` with every cluster entry that names `cluster`'s apiserver pointed at its
    /// proxy.
    async fn through_proxy(&self, cluster: &str, mut kubeconfig: Kubeconfig) -> Result<Kubeconfig> {
        let upstream = self.upstream(cluster, Service::ApiServer)?;
        let url = self.url(cluster, Service::ApiServer).await?;
        let mut rewritten = 0;
        for entry in kubeconfig
            .clusters
            .iter_mut()
            .filter_map(|n| n.cluster.as_mut())
        {
            let server = entry.server.as_deref().unwrap_or_default();
            if loopback_addr(server, "https://").ok() == Some(upstream) {
                entry.server = Some(url.clone());
                rewritten += 1;
            }
        }
        ensure!(
            rewritten > 0,
            "the kubeconfig names no server at {upstream} (the apiserver of {cluster})"
        );
        Ok(kubeconfig)
    }

    /// How `cluster`'s agent reaches DynamoDB, SQS and its apiserver (whose kubeconfig is at
    /// `kubeconfig`) through its own proxies.
    pub async fn agent_endpoints(
        &self,
        cluster: &str,
        kubeconfig: &Path,
    ) -> Result<AgentEndpoints> {
        let kubeconfig = self.write_kubeconfig(cluster, kubeconfig).await?;
        let mut env = BTreeMap::new();
        env.insert(
            "AWS_ENDPOINT_URL_DYNAMODB".to_owned(),
            self.url(cluster, Service::Dynamo).await?,
        );
        env.insert(
            "AWS_ENDPOINT_URL_SQS".to_owned(),
            self.url(cluster, Service::Sqs).await?,
        );
        // The shared endpoint points nowhere: each service must use its own (the agent's
        // `--dynamodb-endpoint` / `--sqs-endpoint`, read from these variables, win over it).
        Ok(AgentEndpoints {
            args: vec![
                "--kubeconfig".into(),
                kubeconfig.into(),
                "--endpoint-url".into(),
                NOWHERE.into(),
            ],
            env,
        })
    }

    // ---- faults ------------------------------------------------------------------------------

    /// Adds `toxic` on the `direction` stream of the proxy (named `<type>-<stream>`; the same
    /// kind twice on one stream is refused).
    pub async fn add(
        &self,
        cluster: &str,
        service: Service,
        direction: Direction,
        toxic: Toxic,
    ) -> Result<()> {
        self.proxy(cluster, service).await?;
        let name = self.proxy_name(cluster, service);
        let toxic_name = format!("{}-{}", toxic.kind(), direction.stream());
        let body = json!({
            "name": toxic_name,
            "type": toxic.kind(),
            "stream": direction.stream(),
            "toxicity": 1.0,
            "attributes": toxic.attributes(),
        });
        let what = format!("adding toxic {toxic_name} ({toxic:?}) to proxy {name}");
        self.call("POST", format!("/proxies/{name}/toxics"), Some(body), &what)
            .await
            .map(drop)
    }

    /// A black hole both ways (see the module documentation).
    pub async fn cut(&self, cluster: &str, service: Service) -> Result<()> {
        for direction in [Direction::Upstream, Direction::Downstream] {
            self.cut_one_way(cluster, service, direction).await?;
        }
        Ok(())
    }

    /// A black hole on one stream: with [`Direction::Upstream`] requests never arrive, with
    /// [`Direction::Downstream`] they do (and take effect) but no answer, nor the close of
    /// the server's side, comes back.
    pub async fn cut_one_way(
        &self,
        cluster: &str,
        service: Service,
        direction: Direction,
    ) -> Result<()> {
        let drop_all = Toxic::Timeout {
            timeout: Duration::ZERO,
        };
        self.add(cluster, service, direction, drop_all).await?;
        let hold_close = Toxic::SlowClose { delay: HOLD_CLOSE };
        self.add(cluster, service, direction, hold_close).await
    }

    /// Every answer waits `latency` ± `jitter`.
    pub async fn latency(
        &self,
        cluster: &str,
        service: Service,
        latency: Duration,
        jitter: Duration,
    ) -> Result<()> {
        let toxic = Toxic::Latency { latency, jitter };
        self.add(cluster, service, Direction::Downstream, toxic)
            .await
    }

    /// Answers pass at most `kb_per_second` KB per second.
    pub async fn bandwidth(
        &self,
        cluster: &str,
        service: Service,
        kb_per_second: u64,
    ) -> Result<()> {
        let toxic = Toxic::Bandwidth { kb_per_second };
        self.add(cluster, service, Direction::Downstream, toxic)
            .await
    }

    /// The server's close reaches the client `delay` late.
    pub async fn slow_close(&self, cluster: &str, service: Service, delay: Duration) -> Result<()> {
        let toxic = Toxic::SlowClose { delay };
        self.add(cluster, service, Direction::Downstream, toxic)
            .await
    }

    /// Connections opened from now on are reset (TCP RST) at their first bytes on
    /// `direction`: with [`Direction::Upstream`] before the request reaches the server, with
    /// [`Direction::Downstream`] once it was served, instead of the answer. Connections
    /// already open are closed (FIN) there instead: use a fresh client.
    pub async fn reset_peer(
        &self,
        cluster: &str,
        service: Service,
        direction: Direction,
    ) -> Result<()> {
        let toxic = Toxic::ResetPeer {
            timeout: Duration::ZERO,
        };
        self.add(cluster, service, direction, toxic).await
    }

    /// The server is down: the proxy stops listening and closes its connections, so
    /// connecting is refused until [`Faults::heal`].
    pub async fn refuse(&self, cluster: &str, service: Service) -> Result<()> {
        self.set_enabled(cluster, service, false).await
    }

    /// Removes every toxic of the proxy, the last added first (a `timeout` toxic's removal
    /// closes the connection, which a `slow_close` toxic after it would hold for its delay),
    /// and re-enables it.
    pub async fn heal(&self, cluster: &str, service: Service) -> Result<()> {
        self.proxy(cluster, service).await?;
        let name = self.proxy_name(cluster, service);
        let what = format!("listing the toxics of proxy {name}");
        let list = self
            .call("GET", format!("/proxies/{name}/toxics"), None, &what)
            .await?;
        let toxics: Vec<Value> =
            serde_json::from_str(&list).with_context(|| format!("{what}: {list}"))?;
        // Listed in chain order, stream by stream.
        for toxic in toxics.iter().rev().filter_map(|t| t["name"].as_str()) {
            let what = format!("removing toxic {toxic} from proxy {name}");
            self.call(
                "DELETE",
                format!("/proxies/{name}/toxics/{toxic}"),
                None,
                &what,
            )
            .await?;
        }
        self.set_enabled(cluster, service, true).await
    }

    /// [`Faults::heal`] on every proxy made so far.
    pub async fn heal_all(&self) -> Result<()> {
        let keys: Vec<(String, Service)> = self.proxies.lock().await.keys().cloned().collect();
        for (cluster, service) in keys {
            self.heal(&cluster, service).await?;
        }
        Ok(())
    }

    async fn set_enabled(&self, cluster: &str, service: Service, enabled: bool) -> Result<()> {
        self.proxy(cluster, service).await?;
        let name = self.proxy_name(cluster, service);
        let what = format!("setting proxy {name} enabled={enabled}");
        let body = json!({"enabled": enabled});
        self.call("PATCH", format!("/proxies/{name}"), Some(body), &what)
            .await
            .map(drop)
    }

    /// One API call on a blocking thread; the body of a 2xx answer, else an error naming
    /// `what`.
    async fn call(
        &self,
        method: &'static str,
        path: String,
        body: Option<Value>,
        what: &str,
    ) -> Result<String> {
        let api = self.api;
        let (code, text) =
            tokio::task::spawn_blocking(move || request(api, method, &path, body.as_ref()))
                .await
                .context("joining a toxiproxy call")?
                .with_context(|| format!("{what}: toxiproxy at {api}"))?;
        if !(200..300).contains(&code) {
            bail!("{what}: toxiproxy refused with {code}: {}", text.trim());
        }
        Ok(text)
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        let keys: Vec<(String, Service)> = self.proxies.get_mut().keys().cloned().collect();
        for (cluster, service) in keys {
            let name = self.proxy_name(&cluster, service);
            let _ = request(self.api, "DELETE", &format!("/proxies/{name}"), None);
        }
    }
}

/// Deletes the proxies of test processes that no longer run (`fx<pid>-…` with no
/// `/proc/<pid>`).
fn reap_orphans(api: SocketAddr) -> Result<()> {
    let (code, text) = request(api, "GET", "/proxies", None)?;
    ensure!(code == 200, "listing toxiproxy's proxies: {code} {text}");
    let proxies: BTreeMap<String, Value> = serde_json::from_str(&text)?;
    for name in proxies.keys() {
        let pid = name
            .strip_prefix("fx")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = request(api, "DELETE", &format!("/proxies/{name}"), None);
        }
    }
    Ok(())
}

// ---- the HTTP client -----------------------------------------------------------------------------

/// `method path` with a JSON `body` on toxiproxy's API: status code and body.
fn request(
    api: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&api, API_TIMEOUT)?;
    s.set_read_timeout(Some(API_TIMEOUT))?;
    s.set_write_timeout(Some(API_TIMEOUT))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nUser-Agent: failover-tests\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Status code and body of a whole HTTP/1.1 response (plain or chunked body).
fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let split = find(raw, b"\r\n\r\n").context("an HTTP response without its end of head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// The data of a chunked body.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = find(rest, b"\r\n").context("a chunk without its size line")?;
        let line = String::from_utf8_lossy(&rest[..end]);
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("a chunk size {line:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(rest.len() >= size + 2, "a chunk cut short");
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- addresses ---------------------------------------------------------------------------------

/// `<scheme>127.0.0.1:<port>[/]` as a socket address.
fn loopback_addr(url: &str, scheme: &str) -> Result<SocketAddr> {
    let addr: SocketAddr = url
        .strip_prefix(scheme)
        .map(|a| a.trim_end_matches('/'))
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("{url} is not {scheme}<ip>:<port>"))?;
    ensure!(addr.ip().is_loopback(), "{url} is not on loopback");
    Ok(addr)
}

/// The server of the kubeconfig's current context.
fn kubeconfig_server(kc: &Kubeconfig) -> Result<String> {
    let context = kc
        .current_context
        .as_deref()
        .context("no current context")?;
    let cluster = kc
        .contexts
        .iter()
        .find(|n| n.name == context)
        .and_then(|n| n.context.as_ref())
        .map(|c| c.cluster.clone())
        .context("the current context is not in the kubeconfig")?;
    kc.clusters
        .iter()
        .find(|n| n.name == cluster)
        .and_then(|n| n.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .context("the current context's cluster has no server")
}

/// The "Accepted client" lines of proxy `name` in a toxiproxy log (one JSON object a line).
fn accepted_in(log: &str, name: &str) -> usize {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["message"] == "Accepted client" && v["name"] == name)
        .count()
}

/// The remote addresses of the established IPv4 TCP connections of process `pid` (from
/// `/proc`): which servers, or proxies, a process talks to.
pub fn tcp_peers(pid: u32) -> Result<BTreeSet<SocketAddr>> {
    let mut inodes = BTreeSet::new();
    let fds = format!("/proc/{pid}/fd");
    for fd in std::fs::read_dir(&fds).with_context(|| format!("reading {fds}"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))?;
    let mut peers = BTreeSet::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(rem), Some(&"01"), Some(inode)) = (fields.get(2), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if inodes.contains(*inode)
            && let Some(addr) = proc_addr(rem)
        {
            peers.insert(addr);
        }
    }
    Ok(peers)
}

/// `0100007F:1F90` (`/proc/net/tcp`: the IPv4 address's bytes read as a native-endian
/// number, the port) as an address.
fn proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_response_is_reassembled() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1;x=y\r\n]\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (200, "[{}]".to_owned()));
        let plain = b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(parse_response(plain).unwrap(), (409, "no".to_owned()));
    }

    #[test]
    fn accepted_clients_are_counted_per_proxy_from_the_log() {
        let log = concat!(
            r#"{"level":"info","name":"fx1-0-a-east-dynamodb","client":"127.0.0.1:1","message":"Accepted client"}"#,
            "\n",
            r#"{"level":"info","name":"fx1-0-a-east-dynamodb-2","client":"127.0.0.1:2","message":"Accepted client"}"#,
            "\n",
            r#"{"level":"info","name":"fx1-0-a-east-dynamodb","message":"Started proxy"}"#,
            "\nnot json\n",
            r#"{"level":"info","name":"fx1-0-a-east-dynamodb","client":"127.0.0.1:3","message":"Accepted client"}"#,
        );
        assert_eq!(accepted_in(log, "fx1-0-a-east-dynamodb"), 2);
        assert_eq!(accepted_in(log, "fx1-0-a-east-sqs"), 0);
    }

    #[test]
    fn proc_net_tcp_addresses_are_read() {
        let want: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(proc_addr("0100007F:1F90"), Some(want));
    }
}
