//! `failoverctl` as users run it: the real binary against a moto server (DynamoDB + SQS).
//!
//! Every test takes its own table and queue prefix, so the tests run in parallel on one
//! server. The binary gets static test credentials through the environment and an empty
//! AWS profile, so nothing on the machine running the tests leaks in. Each assertion
//! message carries the command's stdout and stderr.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use assert_cmd::Command;
use aws_sdk_sqs::types::QueueAttributeName;

mod common;

use common::{TestEnv, json, output};

impl TestEnv {
    async fn new(name: &str) -> Result<Self> {
        Self::create("cli", name).await
    }

    fn setup(&self, clusters: &[&str]) {
        let mut args = vec!["setup"];
        for c in clusters {
            args.extend(["--cluster", c]);
        }
        let run = self.run(&args);
        assert_eq!(run.code, 0, "setup failed:\n{run}");
    }
}

#[tokio::test]
async fn setup_records_where_each_cluster_receives_and_refuses_a_stray_place() -> Result<()> {
    let env = TestEnv::new("routes").await?;
    let endpoint = env.moto.endpoint_url.clone();
    let run = env.run(&[
        "setup",
        "--cluster",
        "east,west",
        "--queue-region",
        "west=eu-west-1",
        "--queue-endpoint",
        &format!("west={endpoint}"),
    ]);
    assert_eq!(run.code, 0, "{run}");
    let store = failover_messages::store::Store::new(&env.moto.dynamodb(), env.table.clone());
    let east = store
        .get_inbox_route("east")
        .await?
        .context("east's route")?;
    assert!(
        east.queue_url.ends_with(&format!("{}east", env.prefix)),
        "{east:?}"
    );
    assert_eq!(east.endpoint, None, "{east:?}");
    let west = store
        .get_inbox_route("west")
        .await?
        .context("west's route")?;
    assert_eq!(
        (west.region.as_deref(), west.endpoint.as_deref()),
        (Some("eu-west-1"), Some(endpoint.as_str())),
        "{west:?}"
    );
    assert!(
        west.queue_url.ends_with(&format!("{}west", env.prefix)),
        "{west:?}"
    );

    // A place for a cluster that is not being set up is a usage error, before anything.
    let stray = env.run(&[
        "setup",
        "--cluster",
        "east",
        "--queue-endpoint",
        &format!("north={endpoint}"),
    ]);
    assert_eq!(stray.code, 2, "{stray}");
    assert!(stray.stderr.contains("north"), "{stray}");
    let malformed = env.run(&["setup", "--cluster", "east", "--queue-region", "east"]);
    assert_eq!(malformed.code, 2, "{malformed}");
    Ok(())
}

#[tokio::test]
async fn setup_global_table_checks_the_regions_and_refuses_what_it_cannot_make() -> Result<()> {
    let env = TestEnv::new("global").await?;
    let others: Vec<&str> = ["us-west-2", "us-east-2", "eu-west-1"]
        .into_iter()
        .filter(|r| *r != env.moto.region)
        .collect();
    let ddb = env.moto.dynamodb();
    let table_exists = || async {
        ddb.describe_table()
            .table_name(&env.table)
            .send()
            .await
            .is_ok()
    };

    // Two regions are not a strongly consistent table: refused before anything is made.
    let two = env.run(&[
        "setup",
        "--cluster",
        "east",
        "--global-table",
        "--replica-region",
        others[0],
    ]);
    assert_eq!(two.code, 2, "{two}");
    assert!(two.stderr.contains("exactly three regions"), "{two}");
    let twice = env.run(&[
        "setup",
        "--cluster",
        "east",
        "--global-table",
        "--replica-region",
        others[0],
        "--witness-region",
        others[0],
    ]);
    assert_eq!(twice.code, 2, "{twice}");
    assert!(twice.stderr.contains("named twice"), "{twice}");
    let without = env.run(&["setup", "--cluster", "east", "--replica-region", others[0]]);
    assert_eq!(
        without.code, 2,
        "--replica-region needs --global-table: {without}"
    );
    assert!(!table_exists().await, "nothing is created on a usage error");

    // moto has no global tables: it answers UpdateTable without the strong consistency
    // DynamoDB reports at once. setup says so, changes nothing more, and sets up no queue.
    let ignored = env.run(&[
        "setup",
        "--cluster",
        "east",
        "--global-table",
        "--replica-region",
        others[0],
        "--witness-region",
        others[1],
    ]);
    assert_eq!(ignored.code, 3, "{ignored}");
    assert!(
        ignored.stderr.contains(&env.table)
            && ignored
                .stderr
                .contains("does not show multi-Region strong consistency"),
        "{ignored}"
    );
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&env.table)
        .send()
        .await?;
    let ttl_status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status())
        .map(|s| s.as_str().to_owned());
    assert_ne!(
        ttl_status.as_deref(),
        Some("ENABLED"),
        "TTL is left off for a global table"
    );
    let store = failover_messages::store::Store::new(&ddb, env.table.clone());
    assert!(
        store.get_inbox_route("east").await?.is_none(),
        "no queue set up"
    );

    // A table that holds items cannot become strongly consistent: named and refused.
    env.setup(&["east"]);
    let full = env.run(&[
        "setup",
        "--cluster",
        "east",
        "--global-table",
        "--replica-region",
        others[0],
        "--replica-region",
        others[1],
    ]);
    assert_eq!(full.code, 3, "{full}");
    assert!(full.stderr.contains("holds items"), "{full}");
    Ok(())
}

#[tokio::test]
async fn setup_twice_is_idempotent_and_leaves_the_table_and_queues_in_place() -> Result<()> {
    let env = TestEnv::new("setup").await?;
    let first = env.run(&[
        "setup",
        "--cluster",
        "east",
        "--cluster",
        "west",
        "--max-receive-count",
        "5",
        "-o",
        "json",
    ]);
    assert_eq!(first.code, 0, "{first}");
    let report = json(&first);
    assert_eq!(report["table"]["name"], env.table.as_str(), "{first}");
    assert_eq!(report["table"]["status"], "created", "{first}");
    let queues = report["queues"].as_array().context("queues is a list")?;
    let names: Vec<&str> = queues.iter().filter_map(|q| q["name"].as_str()).collect();
    let expected: Vec<String> = ["east", "east-dlq", "west", "west-dlq"]
        .iter()
        .map(|s| format!("{}{s}", env.prefix))
        .collect();
    assert_eq!(names, expected, "{first}");
    assert!(queues.iter().all(|q| q["status"] == "created"), "{first}");

    let second = env.run(&[
        "setup",
        "--cluster",
        "east,west",
        "--max-receive-count",
        "5",
    ]);
    assert_eq!(second.code, 0, "{second}");
    assert!(
        second
            .stdout
            .contains(&format!("table {}: already present", env.table)),
        "{second}"
    );
    assert!(
        second.stdout.contains(&format!(
            "queue {}west-dlq (dead-letter queue of cluster west): already present",
            env.prefix
        )),
        "{second}"
    );
    assert!(
        second.stdout.contains("0 created, 5 already present"),
        "{second}"
    );

    // What the SDK sees afterwards.
    let table = env
        .moto
        .dynamodb()
        .describe_table()
        .table_name(&env.table)
        .send()
        .await?
        .table
        .context("DescribeTable returned no table")?;
    assert_eq!(table.table_status().map(|s| s.as_str()), Some("ACTIVE"));
    assert!(
        table
            .global_secondary_indexes()
            .iter()
            .any(|i| i.index_name() == Some("GSI1"))
    );
    let sqs = env.moto.sqs();
    for name in &expected {
        sqs.get_queue_url()
            .queue_name(name)
            .send()
            .await
            .with_context(|| format!("queue {name} exists"))?;
    }
    let inbox_url = sqs
        .get_queue_url()
        .queue_name(&expected[0])
        .send()
        .await?
        .queue_url
        .context("no URL")?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(inbox_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await?;
    let policy = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        .context("the inbox has a redrive policy")?;
    let policy: serde_json::Value = serde_json::from_str(policy)?;
    assert!(
        policy["deadLetterTargetArn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&expected[1])),
        "{policy}"
    );
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");
    Ok(())
}

#[tokio::test]
async fn register_is_idempotent_for_the_same_cluster_and_refused_for_another() -> Result<()> {
    let env = TestEnv::new("register").await?;
    env.setup(&["east", "west"]);

    let first = env.run(&["register", "shop/orders", "--active", "east"]);
    assert_eq!(first.code, 0, "{first}");
    assert!(
        first.stdout.contains("registered group shop/orders")
            && first.stdout.contains("active cluster east"),
        "{first}"
    );

    let again = env.run(&["register", "shop/orders", "--active", "east"]);
    assert_eq!(again.code, 0, "{again}");
    assert!(again.stdout.contains("already registered"), "{again}");

    let other = env.run(&["register", "shop/orders", "--active", "west"]);
    assert_eq!(other.code, 3, "{other}");
    assert!(other.stdout.is_empty(), "{other}");
    assert!(
        other.stderr.starts_with("error: group shop/orders"),
        "{other}"
    );
    assert!(
        other.stderr.contains("active cluster east"),
        "the refusal names the active cluster:\n{other}"
    );
    assert!(other.stderr.contains(&env.table), "{other}");
    Ok(())
}

#[tokio::test]
async fn register_with_a_cluster_that_was_never_set_up_exits_7_naming_it() -> Result<()> {
    let env = TestEnv::new("unknown-cluster").await?;
    env.setup(&["east"]);
    let run = env.run(&["register", "shop/orders", "--active", "north"]);
    assert_eq!(run.code, 7, "{run}");
    assert!(run.stderr.contains("unknown cluster north"), "{run}");
    assert!(
        run.stderr.contains(&format!("{}north", env.prefix)),
        "names the queue it looked for:\n{run}"
    );
    // Nothing was registered.
    let status = env.run(&["status", "shop/orders"]);
    assert_eq!(status.code, 7, "{status}");
    Ok(())
}

#[tokio::test]
async fn status_shows_the_group_with_its_active_cluster_and_epoch_in_json() -> Result<()> {
    let env = TestEnv::new("status").await?;
    env.setup(&["east", "west"]);
    let reg = env.run(&["register", "shop/orders", "--active", "west"]);
    assert_eq!(reg.code, 0, "{reg}");

    // Table and prefix from the environment this time.
    let mut cmd = env.bare_command();
    cmd.env("FAILOVER_TABLE", &env.table)
        .env("FAILOVER_QUEUE_PREFIX", &env.prefix)
        .args(["status", "shop/orders", "-o", "json"]);
    let one = output(cmd);
    assert_eq!(one.code, 0, "{one}");
    let group = json(&one);
    assert_eq!(group["group"], "shop/orders", "{one}");
    assert_eq!(group["activeCluster"], "west", "{one}");
    assert_eq!(group["epoch"], 0, "{one}");
    assert!(group["operation"].is_null(), "{one}");

    let all = env.run(&["status", "--output", "json"]);
    assert_eq!(all.code, 0, "{all}");
    let list = json(&all);
    assert_eq!(list["table"], env.table.as_str(), "{all}");
    let groups = list["groups"].as_array().context("groups is a list")?;
    assert_eq!(groups.len(), 1, "{all}");
    assert_eq!(groups[0]["activeCluster"], "west", "{all}");

    let plain = env.run(&["status"]);
    assert_eq!(plain.code, 0, "{plain}");
    assert_eq!(
        plain.stdout, "shop/orders: active west, epoch 0, idle\n",
        "{plain}"
    );
    Ok(())
}

#[tokio::test]
async fn status_of_an_unknown_group_exits_7_naming_it() -> Result<()> {
    let env = TestEnv::new("status-unknown").await?;
    env.setup(&["east"]);
    let run = env.run(&["status", "shop/missing"]);
    assert_eq!(run.code, 7, "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    assert!(
        run.stderr
            .starts_with("error: group shop/missing is not registered"),
        "{run}"
    );
    assert!(run.stderr.contains(&env.table), "{run}");
    Ok(())
}

#[tokio::test]
async fn a_missing_table_exits_7_and_says_how_to_create_it() -> Result<()> {
    let env = TestEnv::new("no-table").await?;
    let run = env.run(&["status"]);
    assert_eq!(run.code, 7, "{run}");
    assert!(
        run.stderr
            .starts_with(&format!("error: table {} does not exist", env.table)),
        "{run}"
    );
    assert!(run.stderr.contains("failoverctl setup"), "{run}");
    Ok(())
}

#[test]
fn a_group_without_a_namespace_is_a_usage_error_saying_the_expected_form() {
    for args in [
        &["register", "orders", "--active", "east"][..],
        &["status", "orders"][..],
    ] {
        let mut cmd = Command::cargo_bin("failoverctl").expect("the failoverctl binary is built");
        cmd.args(args).timeout(Duration::from_secs(30));
        let run = output(cmd);
        assert_eq!(run.code, 2, "{run}");
        assert!(run.stderr.contains("<namespace>/<name>"), "{run}");
        assert!(run.stderr.contains("\"orders\""), "{run}");
        assert!(run.stdout.is_empty(), "{run}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let mut cmd = Command::cargo_bin("failoverctl").expect("the failoverctl binary is built");
    cmd.arg("--help").timeout(Duration::from_secs(30));
    let run = output(cmd);
    assert_eq!(run.code, 0, "{run}");
    for line in ["3  refused", "4  failed", "7  not found"] {
        assert!(run.stdout.contains(line), "{run}");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_fast_with_exit_4_naming_the_table() -> Result<()> {
    let env = TestEnv::new("closed-port").await?;
    // A port nobody listens on: bind one, note it, close it.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let run = env.run(&["status", "--endpoint-url", &endpoint]);
    let took = started.elapsed();
    assert_eq!(run.code, 4, "{run}");
    assert!(
        run.stderr
            .starts_with(&format!("error: listing groups in table {}", env.table)),
        "{run}"
    );
    assert!(run.stderr.contains("caused by:"), "{run}");
    assert!(took < Duration::from_secs(15), "took {took:?}:\n{run}");

    let run = env.run(&["setup", "--cluster", "east", "--endpoint-url", &endpoint]);
    assert_eq!(run.code, 4, "{run}");
    assert!(run.stderr.contains(&env.table), "{run}");
    Ok(())
}
