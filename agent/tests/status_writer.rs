//! The one writer of a `Failover`'s status ([`StatusWriter`]) against a real API server: a
//! journal write carries the progress folded before it, a progress write after it sends
//! nothing, and a later progress write keeps the journal.
//!
//! Needs the test environment (`make env-up`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use failover_agent::failover_object::status_writer::StatusWriter;
use failover_agent::workflow::{Progress, ProgressEvent};
use failover_messages::crd::{
    Failover, FailoverMode, FailoverPhase, FailoverSpec, FailoverStatus, GroupProgress,
    GroupRef as CrdGroupRef,
};
use failover_tests::fixtures::install_crds;
use failover_tests::kube::TestEnv;
use kube::api::{Api, PostParams};

const DEADLINE: Duration = Duration::from_secs(60);
const NAME: &str = "op-writer";
const LINE: &str = "SourceShutdown ScaleDown:Deployment/web STARTED epoch=3 attempts=1 \
                    started=2026-12-05T10:00:00.25Z";

fn progress(event: ProgressEvent) -> Progress {
    Progress {
        operation_id: NAME.into(),
        cluster: "west".into(),
        at: jiff::Timestamp::now(),
        event,
    }
}

async fn read(api: &Api<Failover>) -> Result<(String, FailoverStatus)> {
    let fo = api.get(NAME).await?;
    Ok((
        fo.metadata.resource_version.context("no resourceVersion")?,
        fo.status.unwrap_or_default(),
    ))
}

#[tokio::test]
async fn the_journal_s_writes_carry_the_progress_and_the_progress_writes_keep_the_journal()
-> Result<()> {
    let env = TestEnv::attach().await?;
    install_crds(&env.west, DEADLINE).await?;
    let ns = env.namespace("fo-writer").await?;
    let api: Api<Failover> = Api::namespaced(env.west.client.clone(), &ns.name);
    let spec = FailoverSpec {
        target_cluster: "west".into(),
        mode: FailoverMode::Consistency,
        groups: vec![CrdGroupRef {
            name: "orders".into(),
            namespace: None,
        }],
        force: false,
        source_is_down: false,
        reason: None,
    };
    api.create(&PostParams::default(), &Failover::new(NAME, spec))
        .await?;
    let writer = StatusWriter::new(
        api.clone(),
        NAME,
        FailoverStatus {
            phase: Some(FailoverPhase::Pending),
            operation_id: Some(NAME.into()),
            groups: vec![GroupProgress {
                name: "orders".into(),
                ..GroupProgress::default()
            }],
            ..FailoverStatus::default()
        },
    );

    // A stage starts; the journal's next write (its first step's intent) carries it.
    writer.fold(&progress(ProgressEvent::StageStarted {
        stage: "SourceShutdown".into(),
        number: 2,
        title: "Source Cluster Shutdown".into(),
    }));
    ensure!(writer.unwritten(), "a folded change reads as unwritten");
    let returned = writer.write_journal(vec![LINE.into()]).await?;
    ensure!(
        returned.as_ref().map(|s| s.journal.len()) == Some(1),
        "the API server kept the journal: {returned:?}"
    );
    let (version, status) = read(&api).await?;
    ensure!(status.journal == [LINE], "journal: {:?}", status.journal);
    ensure!(
        status.phase == Some(FailoverPhase::Running)
            && status.groups[0].stage.as_deref() == Some("SourceShutdown"),
        "the journal's write did not carry the progress: {status:?}"
    );

    // Nothing is left for the reporter: its write sends nothing (the object is unchanged).
    ensure!(
        !writer.unwritten(),
        "the journal's write carried everything"
    );
    writer.write_if_unwritten().await?;
    let (same, _) = read(&api).await?;
    ensure!(
        same == version,
        "a write with nothing new changed the object: {version} -> {same}"
    );

    // Progress after the journal's write goes out with the reporter's, journal kept.
    writer.fold(&progress(ProgressEvent::TaskFinished {
        stage: "SourceShutdown".into(),
        task: "ScaleDown:Deployment/web".into(),
        elapsed: Duration::from_millis(20),
    }));
    writer.write_if_unwritten().await?;
    let (_, status) = read(&api).await?;
    ensure!(
        status.groups[0].task.as_deref() == Some("ScaleDown:Deployment/web")
            && status.journal == [LINE],
        "the progress write lost the journal or the progress: {status:?}"
    );
    Ok(())
}
