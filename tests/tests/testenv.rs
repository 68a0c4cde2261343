//! Self-tests of the test environment: the two control planes run real controllers and
//! kwok makes pods Running/Ready, and moto answers the AWS SDK with real error types.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use failover_tests::kube::{Cluster, TestEnv, pod_names, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Api, Patch, PatchParams, PostParams};

const DEADLINE: Duration = Duration::from_secs(60);

fn deployment(name: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
            }
        }
    }))?)
}

fn statefulset(name: &str) -> Result<StatefulSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "registry.invalid/db:1"}]}
            }
        }
    }))?)
}

async fn scale<K>(api: &Api<K>, name: &str, replicas: i32) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
    )
    .await
    .with_context(|| format!("scaling {name} to {replicas}"))?;
    Ok(())
}

async fn ready_replicas(
    c: &Cluster,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Option<i32>, String> {
    let r = match kind {
        "Deployment" => Api::<Deployment>::namespaced(c.client.clone(), ns)
            .get(name)
            .await
            .map(|d| d.status.and_then(|s| s.ready_replicas)),
        _ => Api::<StatefulSet>::namespaced(c.client.clone(), ns)
            .get(name)
            .await
            .map(|s| s.status.and_then(|s| s.ready_replicas)),
    };
    r.map_err(|e| e.to_string())
}

async fn scale_up_and_down(c: &Cluster, ns: &str, kind: &str, name: &str) -> Result<()> {
    let selector = format!("app={name}");
    match kind {
        "Deployment" => {
            scale(
                &Api::<Deployment>::namespaced(c.client.clone(), ns),
                name,
                3,
            )
            .await?
        }
        _ => {
            scale(
                &Api::<StatefulSet>::namespaced(c.client.clone(), ns),
                name,
                3,
            )
            .await?
        }
    }
    wait_for(
        &format!("{kind} {ns}/{name} in {} to have 3 ready replicas", c.name),
        DEADLINE,
        || async { Ok(ready_replicas(c, ns, kind, name).await?.filter(|r| *r == 3)) },
    )
    .await?;
    match kind {
        "Deployment" => {
            scale(
                &Api::<Deployment>::namespaced(c.client.clone(), ns),
                name,
                0,
            )
            .await?
        }
        _ => {
            scale(
                &Api::<StatefulSet>::namespaced(c.client.clone(), ns),
                name,
                0,
            )
            .await?
        }
    }
    wait_for(
        &format!("pods of {kind} {ns}/{name} in {} to be gone", c.name),
        DEADLINE,
        || async {
            let pods = pod_names(&c.client, ns, &selector)
                .await
                .map_err(|e| e.to_string())?;
            Ok(pods.is_empty().then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn deployments_and_statefulsets_scale_up_to_ready_and_down_to_no_pods_in_both_clusters()
-> Result<()> {
    let env = TestEnv::attach().await?;
    let ns = env.namespace("scale").await?;
    let mut result = Ok(());
    for c in env.clusters() {
        Api::<Deployment>::namespaced(c.client.clone(), &ns.name)
            .create(&PostParams::default(), &deployment("web")?)
            .await?;
        Api::<StatefulSet>::namespaced(c.client.clone(), &ns.name)
            .create(&PostParams::default(), &statefulset("db")?)
            .await?;
    }
    for c in env.clusters() {
        for (kind, name) in [("Deployment", "web"), ("StatefulSet", "db")] {
            if let Err(e) = scale_up_and_down(c, &ns.name, kind, name).await {
                result = Err(e.context(ns.dump().await));
                break;
            }
        }
    }
    ns.cleanup().await;
    result
}

#[tokio::test]
async fn a_cronjob_suspends_in_both_clusters() -> Result<()> {
    let env = TestEnv::attach().await?;
    let ns = env.namespace("cron").await?;
    let cj: CronJob = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "backup"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "b", "image": "registry.invalid/backup:1"}]
            }}}}
        }
    }))?;
    for c in env.clusters() {
        let api = Api::<CronJob>::namespaced(c.client.clone(), &ns.name);
        api.create(&PostParams::default(), &cj).await?;
        api.patch(
            "backup",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
        )
        .await?;
        let got = api.get("backup").await?;
        assert_eq!(
            got.spec.suspend,
            Some(true),
            "cronjob suspended in {}",
            c.name
        );
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn moto_answers_dynamodb_with_conditional_check_failed_and_carries_sqs_messages() -> Result<()>
{
    let env = TestEnv::attach().await?;
    let ddb = env.aws.dynamodb();
    let table = env.aws.unique("selftest");
    ddb.create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("PK")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("PK")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await?;
    let put = || {
        ddb.put_item()
            .table_name(&table)
            .item("PK", AttributeValue::S("GROUP#a/b".into()))
            .condition_expression("attribute_not_exists(PK)")
    };
    put().send().await.context("first conditional put")?;
    let err = put()
        .send()
        .await
        .expect_err("second conditional put must fail");
    assert!(
        err.into_service_error()
            .is_conditional_check_failed_exception(),
        "a failed condition surfaces as ConditionalCheckFailedException"
    );

    let sqs = env.aws.sqs();
    let url = sqs
        .create_queue()
        .queue_name(env.aws.unique("selftest"))
        .send()
        .await?
        .queue_url
        .context("queue url")?;
    sqs.send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await?;
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(2)
        .send()
        .await?;
    let bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["hello"]);
    Ok(())
}
