//! The SQS inbox layer (`failover_messages::inbox`) against a real moto server.
//!
//! Each test uses its own queue prefix, so the tests run in parallel on one server. A poison
//! message must reach the dead-letter queue through the redrive policy (never deleted by
//! us), duplicates and reordering must be harmless, and a missing queue must be named.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use failover_messages::envelope::{DecodeError, Envelope, EnvelopeKind};
use failover_messages::inbox::{Inbox, InboxError, InboxOptions, RECEIVE_VISIBILITY};
use failover_messages::keys::GroupRef;

use failover_tests::aws::{AwsEnv, moto};

/// A queue prefix no other test or earlier run uses (moto may outlive a test run, and
/// process ids get reused).
fn prefix(moto: &AwsEnv, name: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}-", moto.unique(name), &random[..8])
}

fn envelope(kind: EnvelopeKind, operation_id: &str, epoch: u64) -> Envelope {
    Envelope {
        kind,
        operation_id: operation_id.to_owned(),
        group: GroupRef::new("shop", "orders").unwrap(),
        epoch,
        sender: "east".into(),
        sent_at: jiff::Timestamp::now(),
    }
}

/// Options for a test: its own prefix, short visibility timeout.
fn options(prefix: String, max_receive_count: u32) -> InboxOptions {
    InboxOptions {
        prefix,
        max_receive_count,
        visibility_timeout: Duration::from_secs(1),
        ..InboxOptions::default()
    }
}

async fn client_url(moto: &AwsEnv, queue: &str) -> anyhow::Result<String> {
    let out = aws_sdk_sqs::Client::new(&moto.sdk)
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn duplicated_and_reordered_envelopes_round_trip() -> anyhow::Result<()> {
    let moto = moto().await?;
    let client = aws_sdk_sqs::Client::new(&moto.sdk);
    // Default visibility timeout: nothing here should be delivered twice.
    let opts = InboxOptions {
        prefix: prefix(&moto, "rt"),
        ..InboxOptions::default()
    };
    let west = Inbox::new(client.clone(), "west", opts.clone());
    let east = Inbox::new(client, "east", opts);
    west.ensure_queues("west").await?;

    let started = envelope(EnvelopeKind::OperationStarted, "op-1", 5);
    let ready = envelope(EnvelopeKind::ReadyForPromotion, "op-1", 5);
    let wake = envelope(EnvelopeKind::Wake, "op-1", 5);
    // Out of protocol order, with duplicates.
    let sent = [
        ready.clone(),
        started.clone(),
        ready.clone(),
        wake.clone(),
        started.clone(),
    ];
    for e in &sent {
        east.send("west", e).await?;
    }

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < sent.len() && Instant::now() < deadline {
        for r in west.receive(1, 10).await? {
            assert_eq!(r.receive_count, 1, "first delivery of {}", r.message_id);
            got.push(r.envelope?);
            west.delete(&r.receipt_handle).await?;
        }
    }
    let key = |e: &Envelope| (e.kind.as_str(), e.operation_id.clone(), e.epoch, e.sent_at);
    let mut expected: Vec<_> = sent.iter().map(key).collect();
    let mut found: Vec<_> = got.iter().map(key).collect();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    assert_eq!(west.rejected_count(), 0);
    // Every SQS call is counted, by API, on the inbox that made it.
    let sends = east.calls().by_api();
    assert_eq!(sends.get("SendMessage"), Some(&5), "{sends:?}");
    assert_eq!(sends.get("ReceiveMessage"), None, "{sends:?}");
    let receives = west.calls().by_api();
    assert_eq!(receives.get("DeleteMessage"), Some(&5), "{receives:?}");
    assert!(
        receives.get("ReceiveMessage").is_some_and(|n| *n >= 1),
        "{receives:?}"
    );
    assert_eq!(receives.get("SendMessage"), None, "{receives:?}");

    // Deleted means gone, not merely hidden.
    let queue_url = client_url(&moto, &west.queue_name()).await?;
    let attrs = aws_sdk_sqs::Client::new(&moto.sdk)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let attrs = attrs.attributes().cloned().unwrap_or_default();
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("0")
    );
    assert_eq!(
        attrs
            .get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .map(String::as_str),
        Some("0")
    );
    Ok(())
}

#[tokio::test]
async fn malformed_and_unknown_messages_reach_the_dead_letter_queue_after_max_receive_count()
-> anyhow::Result<()> {
    let moto = moto().await?;
    let client = aws_sdk_sqs::Client::new(&moto.sdk);
    let max_receive_count = 2;
    let inbox = Inbox::new(
        client.clone(),
        "east",
        options(prefix(&moto, "dlq"), max_receive_count),
    );
    let queues = inbox.ensure_queues("east").await?;

    let garbage = "this is not JSON {";
    let unknown = r#"{"v":1,"kind":"SelfDestruct","operationId":"op-9","group":"shop/orders","epoch":1,"sender":"mallory","sentAt":"2026-11-26T10:00:00Z"}"#;
    for body in [garbage, unknown] {
        client
            .send_message()
            .queue_url(&queues.inbox_url)
            .message_body(body)
            .send()
            .await?;
    }
    let good = envelope(EnvelopeKind::Wake, "op-2", 3);
    inbox.send("east", &good).await?;

    let mut rejected = Vec::new();
    let mut handled = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        for r in inbox.receive(1, 10).await? {
            match r.envelope {
                Ok(e) => {
                    handled.push(e);
                    inbox.delete(&r.receipt_handle).await?;
                }
                // Left alone: the redrive policy moves it after maxReceiveCount receives.
                Err(err) => rejected.push((r.receive_count, err)),
            }
        }
        let in_dlq = client
            .get_queue_attributes()
            .queue_url(&queues.dead_letter_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        if in_dlq == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "poison messages did not reach the DLQ; rejected so far: {rejected:?}"
        );
    }

    // The valid envelope was handled (SQS may deliver it more than once) and deleted.
    assert!(
        !handled.is_empty() && handled.iter().all(|e| *e == good),
        "{handled:?}"
    );
    // Each poison message was received exactly maxReceiveCount times, then moved.
    let mut counts: Vec<u32> = rejected.iter().map(|(c, _)| *c).collect();
    counts.sort();
    assert_eq!(counts, [1, 1, 2, 2]);
    assert_eq!(inbox.rejected_count(), 4);
    assert!(
        rejected
            .iter()
            .any(|(_, e)| matches!(e, DecodeError::MalformedJson(_)))
    );
    assert!(
        rejected
            .iter()
            .any(|(_, e)| matches!(e, DecodeError::UnknownKind { kind } if kind == "SelfDestruct"))
    );

    let dead = client
        .receive_message()
        .queue_url(&queues.dead_letter_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await?;
    let mut bodies: Vec<&str> = dead.messages().iter().filter_map(|m| m.body()).collect();
    bodies.sort();
    let mut expected = vec![garbage, unknown];
    expected.sort();
    assert_eq!(bodies, expected);
    assert!(
        inbox.receive(0, 10).await?.is_empty(),
        "the inbox is empty afterwards"
    );
    Ok(())
}

/// Messages received but not yet deleted, as SQS counts them.
async fn in_flight(client: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<u32> {
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    Ok(attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// An agent killed during a long poll leaves the poll open in SQS; it still takes the next
/// wake-up, whose answer nobody reads. With the queue's 30 s visibility the restarted agent
/// would not see that wake-up for 30 s; the inbox's receives hide it only for
/// `RECEIVE_VISIBILITY`.
#[tokio::test]
async fn a_wake_up_taken_by_a_dead_readers_poll_comes_back_within_seconds() -> anyhow::Result<()> {
    let moto = moto().await?;
    let client = aws_sdk_sqs::Client::new(&moto.sdk);
    let options = InboxOptions {
        prefix: prefix(&moto, "zombie"),
        ..InboxOptions::default()
    };
    assert_eq!(options.visibility_timeout, Duration::from_secs(30));
    let inbox = Inbox::new(client.clone(), "east", options);
    let queues = inbox.ensure_queues("east").await?;

    // The dead reader: a long poll whose answer is never looked at.
    let dead = tokio::spawn({
        let inbox = inbox.clone();
        async move { inbox.receive(20, 10).await }
    });
    let wake = envelope(EnvelopeKind::Wake, "op-zombie", 1);
    inbox.send("east", &wake).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while in_flight(&client, &queues.inbox_url).await? == 0 {
        assert!(
            Instant::now() < deadline,
            "the dead reader's poll never took the wake-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken = Instant::now();
    dead.abort();

    // The restarted reader gets it once it shows again, well before the queue's 30 s.
    loop {
        let got = inbox.receive(1, 10).await?;
        if let Some(r) = got.first() {
            assert_eq!(r.envelope.as_ref().ok(), Some(&wake));
            assert_eq!(
                r.receive_count, 2,
                "received once by the dead poll, once now"
            );
            inbox.delete(&r.receipt_handle).await?;
            break;
        }
        assert!(
            taken.elapsed() < Duration::from_secs(15),
            "the wake-up taken by the dead poll was still hidden after {:?}",
            taken.elapsed()
        );
    }
    assert!(
        taken.elapsed() >= RECEIVE_VISIBILITY - Duration::from_secs(1),
        "came back after {:?}, before its visibility ran out: was it taken at all?",
        taken.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_queue_is_an_error_naming_the_queue() -> anyhow::Result<()> {
    let moto = moto().await?;
    let client = aws_sdk_sqs::Client::new(&moto.sdk);
    let prefix = prefix(&moto, "missing");
    let inbox = Inbox::new(client, "nowhere", options(prefix.clone(), 3));
    let queue = format!("{prefix}nowhere");

    let err = inbox
        .send("nowhere", &envelope(EnvelopeKind::Wake, "op-1", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, InboxError::QueueDoesNotExist { queue: q, .. } if *q == queue),
        "{err:?}"
    );
    assert!(err.to_string().contains(&queue), "{err}");

    let err = inbox.receive(0, 1).await.unwrap_err();
    assert!(
        matches!(&err, InboxError::QueueDoesNotExist { .. }),
        "{err:?}"
    );
    assert_eq!(err.queue(), queue);

    let err = inbox.delete("no-such-receipt").await.unwrap_err();
    assert!(
        matches!(&err, InboxError::QueueDoesNotExist { .. }),
        "{err:?}"
    );
    // The failed look-ups are counted as errors (each call found no queue URL).
    let errors = inbox.calls().by_outcome();
    assert!(
        errors
            .get(&failover_messages::store::CallOutcome::Error)
            .is_some_and(|n| *n >= 3),
        "{errors:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ensure_queues_is_idempotent_and_converges_on_new_options() -> anyhow::Result<()> {
    let moto = moto().await?;
    let client = aws_sdk_sqs::Client::new(&moto.sdk);
    let prefix = prefix(&moto, "idem");
    let inbox = Inbox::new(client.clone(), "east", options(prefix.clone(), 3));
    let first = inbox.ensure_queues("east").await?;
    let again = inbox.ensure_queues("east").await?;
    assert_eq!(first, again);
    assert_eq!(first.inbox_name, format!("{prefix}east"));
    assert_eq!(first.dead_letter_name, format!("{prefix}east-dlq"));

    // A fresh process (empty URL cache) with another maxReceiveCount updates the policy.
    let changed = Inbox::new(client.clone(), "east", options(prefix, 5));
    let third = changed.ensure_queues("east").await?;
    assert_eq!(third, first);
    let attrs = client
        .get_queue_attributes()
        .queue_url(&first.inbox_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await?;
    let policy: serde_json::Value = serde_json::from_str(
        attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .expect("redrive policy"),
    )?;
    assert_eq!(
        policy["deadLetterTargetArn"],
        first.dead_letter_arn.as_str()
    );
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");
    Ok(())
}
