//! The running agent: configuration, start-up checks, actors and admin endpoints.
//!
//! [`run`]:
//!
//! 1. **Connect.** This cluster's Kubernetes API (in-cluster, or a kubeconfig) and AWS.
//! 2. **Check** ([`preflight`]), failing fast with an error naming what is missing: the
//!    DynamoDB table (`DescribeTable`, schema), this cluster's inbox queue, and the
//!    `FailoverGroup` / `Failover` CRDs in this cluster.
//! 3. **Serve** `/live`, `/ready`, `/metrics` ([`admin`]).
//! 4. **Lease and fence**: take the serving lease ([`lease::renew`]); if that fails, fence
//!    every group whose policy is `Fence` and whose side is active here, as after a lease
//!    loss ([`fencer::run_unleased`]). Then [`fencer::run_check`] with [`When::Startup`]:
//!    every group this cluster is not entitled to has its side here shut down and demoted;
//!    `/ready` answers 200 only after this.
//! 5. **Start** the actors: the serving lease ([`lease`]: renewals every `L/3`, fencing when
//!    it runs out), operation runner, SQS inbox ([`actors`]; they share
//!    one [`Wakeups`] signal, which the runner's workflows wait on), one per Kubernetes
//!    concern (workloads, traffic, GitOps, volumes: [`concerns`]), the fencer
//!    ([`fencer`]: every re-read, and when the heartbeat sees DynamoDB answer again), the
//!    FailoverGroup status keeper ([`groups`]), the `Failover` trigger watcher
//!    ([`triggers`]) and the automatic failover watch ([`auto`]).
//! 6. **Wait** for SIGINT/SIGTERM.

pub mod actors;
pub mod admin;
pub mod auto;
pub mod concerns;
pub mod config;
pub mod fencer;
pub mod groups;
pub mod lease;
pub mod lease_state;
pub mod triggers;
pub mod work;

use std::sync::{Arc, Mutex};

use actix::Actor;
use failover_messages::crd::{Failover, FailoverGroup};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::protocol::lease::LeaseWatch;
use failover_messages::store::Store;
use kube::api::{Api, ListParams};

use crate::adapter::ManagerAdapter;
use crate::seam::Sender;
use crate::tasks::{LeaseSightings, TasksConfig, Wakeups};
use crate::workflow::Progress;

use self::actors::{InboxActor, RunnerActor, RunnerCheck};
use self::admin::Readiness;
use self::config::AgentConfig;
use self::fencer::FenceCheck;
use self::lease::{LeaseActor, LeaseHandle};
use crate::errors::error_chain;
use crate::failover_group::fencing::When;
use crate::failover_object::trigger::Trigger;
use crate::kube_ops::ClusterClient;
use crate::kube_ops::traffic::TrafficConfig;
use crate::metrics::Metrics;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `--cluster` / `FAILOVER_CLUSTER` was not given.
    #[error("no cluster name: pass --cluster or set FAILOVER_CLUSTER")]
    MissingCluster,
    /// The kubeconfig could not be read.
    #[error("cannot read kubeconfig {path}")]
    ReadKubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No Kubernetes configuration could be found or used.
    #[error("no usable Kubernetes configuration for cluster {cluster}: {reason}")]
    KubeConfig {
        /// This cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
    /// The table does not exist.
    #[error("DynamoDB table {table} does not exist")]
    TableMissing {
        /// The table.
        table: String,
    },
    /// The table exists but cannot hold the records.
    #[error("DynamoDB table {table} cannot hold the failover records: {problem}")]
    TableSchema {
        /// The table.
        table: String,
        /// What is wrong.
        problem: String,
    },
    /// DescribeTable failed otherwise.
    #[error("cannot describe DynamoDB table {table}: {reason}")]
    DescribeTable {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },
    /// This cluster's inbox queue does not exist.
    #[error("SQS inbox queue {queue} of cluster {cluster} does not exist")]
    QueueMissing {
        /// The queue.
        queue: String,
        /// This cluster.
        cluster: String,
    },
    /// Looking the queue up failed otherwise.
    #[error("cannot look up SQS inbox queue {queue}: {reason}")]
    GetQueueUrl {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// A CRD is not installed in this cluster.
    #[error(
        "CRD {crd} is not installed in cluster {cluster} (`failover-agent crd | kubectl apply -f -`)"
    )]
    CrdMissing {
        /// `<plural>.<group>`.
        crd: &'static str,
        /// This cluster.
        cluster: String,
    },
    /// The Kubernetes API check failed otherwise.
    #[error("cannot list {crd} in cluster {cluster}")]
    KubeCheck {
        /// `<plural>.<group>`.
        crd: &'static str,
        /// This cluster.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The admin address could not be bound.
    #[error("cannot listen on admin address {addr}")]
    AdminBind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The clients the agent works with.
#[derive(Clone)]
pub struct Clients {
    /// This cluster's API server.
    pub kube: kube::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
}

/// Connects to this cluster's API server and to AWS as configured.
pub async fn connect(cfg: &AgentConfig, cluster: &str) -> Result<Clients, StartupError> {
    let kube_config = match &cfg.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                StartupError::ReadKubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| StartupError::KubeConfig {
                    cluster: cluster.to_owned(),
                    reason: error_chain(&e),
                })?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => kube::Config::infer()
                .await
                .map_err(|e| StartupError::KubeConfig {
                    cluster: cluster.to_owned(),
                    reason: error_chain(&e),
                })?,
        },
    };
    let kube = kube::Client::try_from(kube_config).map_err(|e| StartupError::KubeConfig {
        cluster: cluster.to_owned(),
        reason: error_chain(&e),
    })?;

    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk).timeout_config(
        aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(DYNAMODB_ATTEMPT_TIMEOUT)
            .build(),
    );
    if let Some(url) = &cfg.dynamodb_endpoint {
        dynamodb = dynamodb.endpoint_url(url);
    }
    let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk).timeout_config(
        aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(SQS_ATTEMPT_TIMEOUT)
            .build(),
    );
    if let Some(url) = &cfg.sqs_endpoint {
        sqs = sqs.endpoint_url(url);
    }
    Ok(Clients {
        kube,
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
    })
}

/// How long each start-up AWS check waits: `L/8`, between 0.5 s and 5 s, so an agent
/// restarted in a lost region still fences well within the time a forced failover elsewhere
/// waits for its lease.
fn aws_check_bound(lease: std::time::Duration) -> std::time::Duration {
    (lease / 8).clamp(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(5),
    )
}

/// An AWS error that says nothing about the request: the service was not reached or did
/// not answer (transport failure, timeout, a response that did not parse).
fn unreachable<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool {
    use aws_sdk_dynamodb::error::SdkError;
    matches!(
        e,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    )
}

/// How long one DynamoDB call attempt may go unanswered: a table behind a link that accepts
/// requests and never answers (a lost region) must not hold a check or a step for ever; the
/// store retries, and reads back a write whose answer was lost.
const DYNAMODB_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long one SQS call may go unanswered (longer than the inbox's 20 s long poll): a link
/// that accepts requests and never answers must not hold a sender or the inbox for ever.
const SQS_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The start-up checks: the table, this cluster's inbox queue, the CRDs in this cluster.
/// Marks `readiness` as they pass.
///
/// DynamoDB or SQS that does not answer (a lost region, a cut link: no answer within
/// [`aws_check_bound`], or a transport failure) does not stop the agent: it starts unready,
/// and since it cannot take its serving lease it fences every `Fence` group active here
/// before anything else. Exiting instead would leave those groups serving while a forced
/// failover elsewhere waits only for the lease. A missing table or queue, or a wrong key
/// schema, still stops it.
pub async fn preflight(
    clients: &Clients,
    cfg: &AgentConfig,
    cluster: &str,
    readiness: &Readiness,
) -> Result<(), StartupError> {
    let bound = aws_check_bound(cfg.lease_terms().duration);
    // 1. The table.
    let described = tokio::time::timeout(
        bound,
        clients
            .dynamodb
            .describe_table()
            .table_name(&cfg.table)
            .send(),
    )
    .await;
    match described {
        Err(_) => {
            tracing::warn!(table = %cfg.table, ?bound, "DynamoDB did not answer at start: starting unready (the serving lease decides whether to fence)");
        }
        Ok(Ok(out)) => {
            if let Some(desc) = out.table() {
                failover_messages::setup::check_schema(desc).map_err(|problem| {
                    StartupError::TableSchema {
                        table: cfg.table.clone(),
                        problem,
                    }
                })?;
            }
            readiness.aws_ok();
        }
        Ok(Err(e)) if unreachable(&e) => {
            tracing::warn!(table = %cfg.table, error = %error_chain(&e), "DynamoDB is unreachable at start: starting unready (the serving lease decides whether to fence)");
        }
        Ok(Err(e)) => {
            let missing = e
                .as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception());
            return Err(if missing {
                StartupError::TableMissing {
                    table: cfg.table.clone(),
                }
            } else {
                StartupError::DescribeTable {
                    table: cfg.table.clone(),
                    reason: error_chain(&e),
                }
            });
        }
    }

    // 2. The inbox queue.
    let queue = format!("{}{cluster}", cfg.queue_prefix);
    let looked_up =
        tokio::time::timeout(bound, clients.sqs.get_queue_url().queue_name(&queue).send()).await;
    match looked_up {
        Err(_) => {
            tracing::warn!(%queue, ?bound, "SQS did not answer at start: starting without the inbox check (wake-ups wait for it; the re-reads go on)");
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) if unreachable(&e) => {
            tracing::warn!(%queue, error = %error_chain(&e), "SQS is unreachable at start: starting without the inbox check");
        }
        Ok(Err(e)) => {
            let missing = e.as_service_error().is_some_and(|se| {
                se.is_queue_does_not_exist()
                    || aws_sdk_sqs::error::ProvideErrorMetadata::code(se).is_some_and(|c| {
                        c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
                    })
            });
            return Err(if missing {
                StartupError::QueueMissing {
                    queue,
                    cluster: cluster.to_owned(),
                }
            } else {
                StartupError::GetQueueUrl {
                    queue,
                    reason: error_chain(&e),
                }
            });
        }
    }

    // 3. The CRDs (also the Kubernetes API check).
    let lp = ListParams::default().limit(1);
    let check = |crd: &'static str, r: Result<(), kube::Error>| match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(StartupError::CrdMissing {
            crd,
            cluster: cluster.to_owned(),
        }),
        Err(source) => Err(StartupError::KubeCheck {
            crd,
            cluster: cluster.to_owned(),
            source,
        }),
    };
    let groups: Api<FailoverGroup> = Api::all(clients.kube.clone());
    check(
        "failovergroups.failover.io",
        groups.list_metadata(&lp).await.map(drop),
    )?;
    let failovers: Api<Failover> = Api::all(clients.kube.clone());
    check(
        "failovers.failover.io",
        failovers.list_metadata(&lp).await.map(drop),
    )?;
    readiness.kube_ok();
    Ok(())
}

/// Runs the agent until SIGINT/SIGTERM. Must run inside an actix system.
pub async fn run(cfg: AgentConfig) -> Result<(), StartupError> {
    let cluster = cfg
        .cluster
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or(StartupError::MissingCluster)?;
    let metrics = Metrics::new();
    let readiness = Readiness::default();

    let clients = connect(&cfg, &cluster).await?;
    preflight(&clients, &cfg, &cluster, &readiness).await?;
    let agent = Agent {
        cfg: &cfg,
        clients: &clients,
        cluster: &cluster,
        metrics: &metrics,
        readiness: &readiness,
    };
    agent.serve_admin().await?;
    agent.start_actors().await;
    tracing::info!(%cluster, table = %cfg.table, "agent started");

    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
}

/// What starting the agent's parts needs, once the start-up checks passed.
struct Agent<'a> {
    cfg: &'a AgentConfig,
    clients: &'a Clients,
    cluster: &'a str,
    metrics: &'a Metrics,
    readiness: &'a Readiness,
}

impl Agent<'_> {
    /// Step 3 of [`run`]: `/live`, `/ready`, `/metrics`.
    async fn serve_admin(&self) -> Result<(), StartupError> {
        let (cfg, readiness) = (self.cfg, self.readiness);
        let listener = tokio::net::TcpListener::bind(cfg.admin_addr)
            .await
            .map_err(|source| StartupError::AdminBind {
                addr: cfg.admin_addr.to_string(),
                source,
            })?;
        tracing::info!(addr = %cfg.admin_addr, "admin endpoints listening");
        // `/ready` also waits for the watches the agent relies on.
        readiness.expect_watch("failovergroups");
        readiness.expect_watch("failovers");
        let admin = admin::serve(listener, self.metrics.clone(), readiness.clone());
        actix_rt::spawn(async move {
            if let Err(e) = admin.await {
                tracing::error!(error = %e, "the admin server stopped");
            }
        });
        Ok(())
    }

    /// Steps 4 and 5 of [`run`]: the start-up fencing check, then the actors.
    async fn start_actors(&self) {
        let (cfg, clients, metrics) = (self.cfg, self.clients, self.metrics);
        let store = Store::new(&clients.dynamodb, &cfg.table);
        metrics.track_aws_calls(Arc::clone(store.calls()));
        let inbox = self.inbox(&store);
        metrics.track_sqs_calls(Arc::clone(inbox.calls()));
        let traffic = TrafficConfig {
            annotation_key: cfg.traffic_annotation.clone(),
        };

        // Fence first (protocol rule 7): before this agent runs any operation, every group it
        // is not entitled to has its side here shut down and demoted. An agent that cannot
        // take its serving lease at start fences as after a lease loss, before `/ready`.
        let cc = ClusterClient::new(clients.kube.clone(), self.cluster);
        let lease = LeaseHandle::new(cfg.lease_terms());
        let unleased = match self::lease::renew(&cc, &store, &lease, Vec::new()).await {
            Ok(_) => false,
            Err(e) => {
                tracing::error!(cluster = %self.cluster, error = %e, "cannot take the serving lease at start: fencing every group with onCoordinationLoss Fence that is active here");
                metrics.lease_lost();
                !self::fencer::run_unleased(&cc, &traffic, metrics, &lease).await
            }
        };
        let finished = self::fencer::run_check(
            &cc,
            &store,
            &traffic,
            metrics,
            When::Startup,
            &mut Default::default(),
            &lease,
        )
        .await;
        // `/ready` waits until a start-up check finished; the fencer repeats it until then.
        if finished {
            self.readiness.startup_fencing_done();
        }
        let fencer = Sender::from_addr(
            self::fencer::FencerActor::new(
                cc.clone(),
                store.clone(),
                traffic.clone(),
                metrics.clone(),
                cfg.reread_interval,
                self::fencer::owed_after(When::Startup, finished),
                lease.clone(),
            )
            .with_readiness(self.readiness.clone())
            .start(),
        );
        if unleased {
            let _ = fencer.send(FenceCheck(When::LeaseLost));
        }
        let sightings: LeaseSightings =
            Arc::new(Mutex::new(LeaseWatch::new(self.cfg.lease_terms())));
        // Its own Store: the watch's reads are not operation calls (`auto.*`).
        let auto_store = Store::new(&clients.dynamodb, &cfg.table);
        metrics.track_scoped_aws_calls("auto", Arc::clone(auto_store.calls()));
        self::auto::AutoFailoverActor::new(self::auto::AutoDeps {
            client: clients.kube.clone(),
            store: auto_store,
            inbox: inbox.clone(),
            cluster: self.cluster.to_owned(),
            lease: lease.clone(),
            metrics: metrics.clone(),
            sightings: sightings.clone(),
        })
        .start();
        LeaseActor::new(
            cc,
            store.clone(),
            lease.clone(),
            metrics.clone(),
            self.readiness.clone(),
            fencer.clone(),
        )
        .start();
        self.start_operation_actors(store, inbox.clone(), traffic, fencer, lease, sightings);
        self.start_object_actors(&inbox);
    }

    /// This cluster's inbox (its options name every cluster's queue); it sends to each
    /// cluster by the inbox route recorded in the table, read through `store`.
    fn inbox(&self, store: &Store) -> Inbox {
        Inbox::routed(
            self.clients.sqs.clone(),
            self.cluster,
            InboxOptions {
                prefix: self.cfg.queue_prefix.clone(),
                ..InboxOptions::default()
            },
            store.clone(),
        )
    }

    /// The operation runner (with its adapter and the concern actors) and the SQS inbox.
    fn start_operation_actors(
        &self,
        store: Store,
        inbox: Inbox,
        traffic: TrafficConfig,
        fencer: Sender<FenceCheck>,
        lease: LeaseHandle,
        sightings: LeaseSightings,
    ) {
        let (cfg, clients, cluster, metrics) = (self.cfg, self.clients, self.cluster, self.metrics);
        let wakeups = Wakeups::new();
        let progress_metrics = metrics.clone();
        let adapter = ManagerAdapter::new(cluster, clients.kube.clone(), store.clone())
            .with_inbox(inbox.clone())
            .with_external_wakeups(wakeups.clone())
            .with_tasks_config(TasksConfig {
                reread_interval: cfg.reread_interval,
                lease: cfg.lease_terms(),
                traffic,
                sightings,
                ..TasksConfig::default()
            })
            .with_metrics(metrics.clone())
            .with_concerns(self::concerns::start(metrics.clone()))
            .with_progress(Sender::from_fn(move |p: Progress| {
                if let Some((stage, task, outcome, elapsed)) = p.event.step_outcome() {
                    progress_metrics.step_duration(stage, task, outcome, elapsed);
                }
            }));

        let runner = RunnerActor::new(
            store,
            adapter,
            metrics.clone(),
            self.readiness.clone(),
            cfg.reread_interval,
            lease,
        )
        .start();
        let wait_seconds = u32::try_from(cfg.reread_interval.as_secs())
            .unwrap_or(20)
            .clamp(1, 20);
        InboxActor::new(
            inbox,
            wakeups,
            Sender::<RunnerCheck>::from_addr(runner),
            fencer,
            metrics.clone(),
            self.readiness.clone(),
            wait_seconds,
            cfg.reread_interval,
        )
        .start();
    }

    /// The FailoverGroup status keeper and the watcher of user-created Failovers
    /// ([`groups`], [`triggers`]). Each has its own Store (their DynamoDB calls are not
    /// operation calls; `failover_aws_calls_total` shows them as `status.*` and
    /// `trigger.*`); they send through this cluster's `inbox` (one SQS call counter).
    /// Both re-read every `--reread-interval`.
    fn start_object_actors(&self, inbox: &Inbox) {
        let (cfg, clients, cluster) = (self.cfg, self.clients, self.cluster);
        let scoped = |scope: &'static str| {
            let store = Store::new(&clients.dynamodb, &cfg.table);
            self.metrics
                .track_scoped_aws_calls(scope, Arc::clone(store.calls()));
            store
        };
        self::groups::GroupStatusActor::new(
            clients.kube.clone(),
            scoped("status"),
            cluster,
            &cfg.traffic_annotation,
            cfg.reread_interval,
        )
        .with_readiness(self.readiness.clone())
        .start();
        let trigger = Trigger::new(
            clients.kube.clone(),
            scoped("trigger"),
            inbox.clone(),
            clients.sqs.clone(),
            cluster,
        );
        self::triggers::TriggerActor::new(clients.kube.clone(), trigger, cfg.reread_interval)
            .with_readiness(self.readiness.clone())
            .start();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
