//! `failoverctl setup`: creates or verifies the failover table and each cluster's SQS inbox
//! and dead-letter queue, idempotently, and reports what it created and what was already
//! there.
//!
//! The table goes through [`failover_messages::setup::ensure_table`] (create if missing,
//! wait until `ACTIVE`, check the key schema, turn TTL on) and, with `--global-table`,
//! [`failover_messages::setup::global::ensure_global`] (TTL left alone; the regional table
//! made a strongly consistent global table, or checked to be one); the queues through
//! [`failover_messages::inbox::Inbox::ensure_queues`] (create if missing, set the redrive
//! policy and retention, read them back). Whether a queue existed is looked up just before,
//! so a queue created concurrently by someone else may be reported as created.

use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::records::InboxRoute;
use failover_messages::setup::global::{GlobalTableSpec, ensure_global};
use failover_messages::setup::{DEFAULT_ACTIVE_TIMEOUT, TableSetup, Ttl, ensure_table_with};
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::output::{Render, table};

/// Whether a resource was there before.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Presence {
    /// `setup` created it.
    Created,
    /// It existed (and was verified).
    AlreadyPresent,
}

impl Presence {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::AlreadyPresent => "already present",
        }
    }
}

/// What a queue is for.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum QueueRole {
    /// The cluster's inbox.
    Inbox,
    /// Where the inbox's undeliverable messages go.
    DeadLetter,
}

/// The table after `setup`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TableResult {
    /// Table name.
    pub name: String,
    /// Created now or already there.
    pub status: Presence,
    /// With `--global-table`: its regions, and whether this run made it global.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<GlobalResult>,
}

/// The global table after `setup --global-table`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GlobalResult {
    /// The region the table was created in.
    pub region: String,
    /// The replica regions.
    pub replicas: Vec<String>,
    /// The witness region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<String>,
    /// Made global now, or already was.
    pub status: Presence,
}

/// The other regions of a global table, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct GlobalRegions {
    /// Replica regions.
    pub replicas: Vec<String>,
    /// Witness region.
    pub witness: Option<String>,
}

/// How long `setup --global-table` waits for every region of the table to be `ACTIVE`
/// (DynamoDB takes about a minute or two).
pub const GLOBAL_ACTIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// One queue after `setup`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueueResult {
    /// The cluster it belongs to.
    pub cluster: String,
    /// Inbox or dead-letter queue.
    pub role: QueueRole,
    /// Queue name.
    pub name: String,
    /// Queue URL.
    pub url: String,
    /// Created now or already there.
    pub status: Presence,
}

/// The result of `failoverctl setup`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SetupResult {
    /// The table.
    pub table: TableResult,
    /// Every cluster's inbox and dead-letter queue, in the order the clusters were given.
    pub queues: Vec<QueueResult>,
}

impl SetupResult {
    fn count(&self, status: Presence) -> usize {
        usize::from(self.table.status == status)
            + usize::from(
                self.table
                    .global
                    .as_ref()
                    .is_some_and(|g| g.status == status),
            )
            + self.queues.iter().filter(|q| q.status == status).count()
    }
}

/// Where each cluster's queues live, when not where this command runs: cluster → region,
/// cluster → SQS endpoint URL.
#[derive(Clone, Debug, Default)]
pub struct QueuePlaces {
    /// Cluster → AWS region of its queues.
    pub regions: std::collections::BTreeMap<String, String>,
    /// Cluster → SQS endpoint URL to reach its queues through.
    pub endpoints: std::collections::BTreeMap<String, String>,
}

/// Creates or verifies the table and the queues of `clusters` (duplicates are set up once),
/// each cluster's in its region and through its endpoint from `places`, and records each
/// cluster's inbox route in the table (queue URL, region, endpoint), which senders follow.
/// `max_receive_count` is the number of receives after which SQS moves a message to a
/// cluster's dead-letter queue.
pub async fn setup(
    ctx: &Context,
    clusters: &[String],
    max_receive_count: u32,
    places: &QueuePlaces,
    global: Option<GlobalRegions>,
) -> Result<SetupResult, CommandError> {
    for named in places.regions.keys().chain(places.endpoints.keys()) {
        if !clusters.contains(named) {
            return Err(CommandError::Usage(format!(
                "--queue-region/--queue-endpoint name cluster {named}, which is not among --cluster {}",
                clusters.join(",")
            )));
        }
    }
    // The regions are checked before anything is created.
    let global = match global {
        None => None,
        Some(g) => {
            let home = ctx
                .dynamodb
                .config()
                .region()
                .map(|r| r.to_string())
                .ok_or_else(|| {
                    CommandError::Usage(
                        "--global-table needs this command's region (AWS_REGION or --region)"
                            .into(),
                    )
                })?;
            let spec = GlobalTableSpec::new(&home, &g.replicas, g.witness.as_deref())
                .map_err(CommandError::Usage)?;
            Some(spec)
        }
    };
    let table_err = |source| CommandError::SetupTable {
        table: ctx.table.clone(),
        source,
    };
    let ttl = if global.is_some() {
        Ttl::Untouched
    } else {
        Ttl::On
    };
    let table_status =
        match ensure_table_with(&ctx.dynamodb, &ctx.table, DEFAULT_ACTIVE_TIMEOUT, ttl).await {
            Ok(setup) => presence_of(setup),
            Err(source) => return Err(table_err(source)),
        };
    let global = match global {
        None => None,
        Some(spec) => {
            let status = ensure_global(&ctx.dynamodb, &ctx.table, &spec, GLOBAL_ACTIVE_TIMEOUT)
                .await
                .map_err(table_err)?;
            Some(GlobalResult {
                region: spec.home,
                replicas: spec.replicas,
                witness: spec.witness,
                status: presence_of(status),
            })
        }
    };
    let options = InboxOptions {
        max_receive_count,
        ..ctx.queues.clone()
    };
    let store = ctx.store();
    let mut queues = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for cluster in clusters {
        if done.contains(&cluster.as_str()) {
            continue;
        }
        done.push(cluster);
        let inbox_name = options.inbox_queue_name(cluster);
        let dead_letter_name = options.dead_letter_queue_name(cluster);
        let region = places.regions.get(cluster);
        let endpoint = places.endpoints.get(cluster);
        let sqs = ctx.sqs_for(region.map(String::as_str), endpoint.map(String::as_str));
        let exists = |queue: String| {
            let sqs = sqs.clone();
            async move { Context::queue_exists_with(&sqs, cluster, &queue).await }
        };
        let inbox_existed = exists(inbox_name).await?;
        let dead_letter_existed = exists(dead_letter_name).await?;
        let inbox = Inbox::new(sqs.clone(), "coordinator", options.clone());
        let pair =
            inbox
                .ensure_queues(cluster)
                .await
                .map_err(|source| CommandError::SetupQueues {
                    cluster: cluster.clone(),
                    source,
                })?;
        let route = InboxRoute {
            cluster: cluster.clone(),
            queue_url: pair.inbox_url.clone(),
            region: region
                .cloned()
                .or_else(|| sqs.config().region().map(|r| r.to_string())),
            endpoint: endpoint.cloned(),
            updated_at: jiff::Timestamp::now(),
        };
        store
            .put_inbox_route(&route)
            .await
            .map_err(|source| CommandError::from_store(&ctx.table, source))?;
        let presence = |existed| {
            if existed {
                Presence::AlreadyPresent
            } else {
                Presence::Created
            }
        };
        queues.push(QueueResult {
            cluster: cluster.clone(),
            role: QueueRole::Inbox,
            name: pair.inbox_name,
            url: pair.inbox_url,
            status: presence(inbox_existed),
        });
        queues.push(QueueResult {
            cluster: cluster.clone(),
            role: QueueRole::DeadLetter,
            name: pair.dead_letter_name,
            url: pair.dead_letter_url,
            status: presence(dead_letter_existed),
        });
    }
    Ok(SetupResult {
        table: TableResult {
            name: ctx.table.clone(),
            status: table_status,
            global,
        },
        queues,
    })
}

fn presence_of(setup: TableSetup) -> Presence {
    match setup {
        TableSetup::Created => Presence::Created,
        TableSetup::AlreadyExisted => Presence::AlreadyPresent,
    }
}

impl Render for SetupResult {
    fn plain(&self) -> String {
        let mut out = format!(
            "table {}: {}\n",
            self.table.name,
            self.table.status.as_str()
        );
        if let Some(g) = &self.table.global {
            out.push_str(&format!(
                "global table {} (strong consistency): {}, replicas {}{}: {}\n",
                self.table.name,
                g.region,
                g.replicas.join(", "),
                g.witness
                    .as_ref()
                    .map(|w| format!(", witness {w}"))
                    .unwrap_or_default(),
                g.status.as_str()
            ));
        }
        for q in &self.queues {
            let what = match q.role {
                QueueRole::Inbox => "inbox",
                QueueRole::DeadLetter => "dead-letter queue",
            };
            out.push_str(&format!(
                "queue {} ({what} of cluster {}): {}\n",
                q.name,
                q.cluster,
                q.status.as_str()
            ));
        }
        out.push_str(&format!(
            "{} created, {} already present\n",
            self.count(Presence::Created),
            self.count(Presence::AlreadyPresent)
        ));
        out
    }

    fn table(&self) -> String {
        let mut rows = vec![[
            "table".to_owned(),
            self.table.name.clone(),
            "-".to_owned(),
            self.table.status.as_str().to_owned(),
        ]];
        if let Some(g) = &self.table.global {
            let mut regions = vec![g.region.clone()];
            regions.extend(g.replicas.iter().cloned());
            regions.extend(g.witness.iter().map(|w| format!("{w} (witness)")));
            rows.push([
                "global".to_owned(),
                format!("{} in {}", self.table.name, regions.join(", ")),
                "-".to_owned(),
                g.status.as_str().to_owned(),
            ]);
        }
        for q in &self.queues {
            let kind = match q.role {
                QueueRole::Inbox => "inbox",
                QueueRole::DeadLetter => "dead-letter",
            };
            rows.push([
                kind.to_owned(),
                q.name.clone(),
                q.cluster.clone(),
                q.status.as_str().to_owned(),
            ]);
        }
        table(["KIND", "NAME", "CLUSTER", "STATUS"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};

    fn result(status: Presence) -> SetupResult {
        SetupResult {
            table: TableResult {
                name: "failover".into(),
                status,
                global: None,
            },
            queues: vec![
                QueueResult {
                    cluster: "east".into(),
                    role: QueueRole::Inbox,
                    name: "failover-east".into(),
                    url: "http://sqs/failover-east".into(),
                    status,
                },
                QueueResult {
                    cluster: "east".into(),
                    role: QueueRole::DeadLetter,
                    name: "failover-east-dlq".into(),
                    url: "http://sqs/failover-east-dlq".into(),
                    status: Presence::AlreadyPresent,
                },
            ],
        }
    }

    #[test]
    fn plain_says_what_was_created_and_what_was_there() {
        assert_eq!(
            render(&result(Presence::Created), OutputFormat::Plain),
            "table failover: created\n\
             queue failover-east (inbox of cluster east): created\n\
             queue failover-east-dlq (dead-letter queue of cluster east): already present\n\
             2 created, 1 already present\n"
        );
    }

    #[test]
    fn a_global_table_shows_its_regions() {
        let mut r = result(Presence::AlreadyPresent);
        r.table.global = Some(GlobalResult {
            region: "us-east-1".into(),
            replicas: vec!["us-west-2".into()],
            witness: Some("us-east-2".into()),
            status: Presence::Created,
        });
        let plain = render(&r, OutputFormat::Plain);
        assert!(
            plain.contains(
                "global table failover (strong consistency): us-east-1, replicas us-west-2, \
                 witness us-east-2: created\n"
            ),
            "{plain}"
        );
        assert!(plain.ends_with("1 created, 3 already present\n"), "{plain}");
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(
            json["table"]["global"],
            serde_json::json!({"region": "us-east-1", "replicas": ["us-west-2"],
                               "witness": "us-east-2", "status": "created"})
        );
    }

    #[test]
    fn table_has_a_row_per_resource() {
        assert_eq!(
            render(&result(Presence::AlreadyPresent), OutputFormat::Table),
            "KIND         NAME               CLUSTER  STATUS\n\
             table        failover           -        already present\n\
             inbox        failover-east      east     already present\n\
             dead-letter  failover-east-dlq  east     already present\n"
        );
    }

    #[test]
    fn json_lists_every_resource_with_its_status() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&result(Presence::Created), OutputFormat::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "table": {"name": "failover", "status": "created"},
                "queues": [
                    {"cluster": "east", "role": "inbox", "name": "failover-east",
                     "url": "http://sqs/failover-east", "status": "created"},
                    {"cluster": "east", "role": "deadLetter", "name": "failover-east-dlq",
                     "url": "http://sqs/failover-east-dlq", "status": "alreadyPresent"},
                ]
            })
        );
    }

    #[test]
    fn yaml_carries_the_same_fields() {
        let text = render(&result(Presence::Created), OutputFormat::Yaml);
        assert!(
            text.starts_with("table:\n  name: failover\n  status: created\n"),
            "{text}"
        );
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&render(&result(Presence::Created), OutputFormat::Json)).unwrap();
        assert_eq!(back, json);
    }
}
