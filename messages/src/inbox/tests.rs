//! Unit tests of the inbox's pure parts: queue names, option checks and error chains.

use super::*;

#[test]
fn queues_are_named_after_the_cluster() {
    let opts = InboxOptions::default();
    assert_eq!(opts.inbox_queue_name("east"), "failover-east");
    assert_eq!(opts.dead_letter_queue_name("east"), "failover-east-dlq");
    let opts = InboxOptions {
        prefix: "t1-".into(),
        ..Default::default()
    };
    assert_eq!(opts.dead_letter_queue_name("west"), "t1-west-dlq");
}

#[test]
fn queue_names_are_checked() {
    assert!(check_queue_name("failover-east").is_ok());
    assert!(check_queue_name("failover-east.fifo").is_err());
    assert!(check_queue_name(&"x".repeat(81)).is_err());
    let err = check_queue_name("failover/east").unwrap_err();
    assert_eq!(err.queue(), "failover/east");
    assert!(err.to_string().contains("failover/east"), "{err}");
}

#[test]
fn options_must_be_whole_seconds_in_range() {
    assert_eq!(
        seconds_attr("q", "t", Duration::from_secs(30), 0, 43200).unwrap(),
        30
    );
    assert!(seconds_attr("q", "t", Duration::from_millis(1500), 0, 43200).is_err());
    assert!(seconds_attr("q", "t", Duration::from_secs(50_000), 0, 43200).is_err());
}

#[test]
fn error_chain_includes_sources() {
    let err = Envelope::decode("{").unwrap_err();
    let text = error_chain(&err);
    assert!(
        text.starts_with("envelope body is not valid JSON: "),
        "{text}"
    );
}
