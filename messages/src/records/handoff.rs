//! The handoff of one operation: which volumes the source marked `READY_FOR_PROMOTION` and
//! the target `PROMOTED`, whether the group as a whole was handed off, claimed or aborted.
//!
//! While the operation runs these live on the group state item, next to the `epoch` and
//! `opId` every write of them is conditioned on (attributes `ready`, `promoted`,
//! `groupReadyAt`, `promotionStartedAt`, `abortRequestedAt`): each protocol write is one
//! conditional `UpdateItem` of that one item. The group state keeps them after the close
//! until the next operation starts, and closing copies them onto the operation item (same
//! attribute names), so [`HandoffView`] decodes either item. [`Handoff`] is one volume's
//! line of it, as users and `failoverctl` read it.
//!
//! The group state also carries the operation's failure mark (`failedAt`, `failedBy`,
//! `failureMessage`, [`FailureMark`]): written before any claim, it excludes the claim as
//! the abort does, and the next start clears it with the handoff. Closing does not copy it:
//! the operation item records the failure itself (phase `Failed`, `message`).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::av_ms;
use super::{DecodeError, HandoffState, Item, attr};
use crate::keys;

/// One volume's way from source to target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// Operation id.
    pub op_id: String,
    /// VolumeReplication name.
    pub volume: String,
    /// READY_FOR_PROMOTION or PROMOTED.
    pub state: HandoffState,
    /// The operation's epoch.
    pub epoch: u64,
    /// Cluster that wrote READY_FOR_PROMOTION (the target for a forced promotion).
    pub writer: String,
    /// When the source marked it ready (absent for a forced promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// When the target marked it promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Timestamp>,
}

/// Who marked a volume, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// The cluster that wrote the mark.
    pub writer: String,
    /// When.
    pub at: Timestamp,
}

impl Mark {
    /// The map value of one volume in `ready` or `promoted`.
    pub fn to_av(&self) -> AttributeValue {
        AttributeValue::M(Item::from([
            (
                attr::WRITER.to_owned(),
                AttributeValue::S(self.writer.clone()),
            ),
            (attr::AT.to_owned(), av_ms(self.at)),
        ]))
    }
}

/// The handoff attributes of an operation, from the group state item or the closed
/// operation item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandoffView {
    /// When the coordinator requested an abort.
    pub abort_requested_at: Option<Timestamp>,
    /// When the source handed the whole group off (every volume ready, or a group without
    /// volumes down).
    pub group_ready_at: Option<Timestamp>,
    /// When the target claimed the promotion.
    pub promotion_started_at: Option<Timestamp>,
    /// Volume → the source's `READY_FOR_PROMOTION`.
    pub ready: BTreeMap<String, Mark>,
    /// Volume → the target's `PROMOTED`.
    pub promoted: BTreeMap<String, Mark>,
    /// The failure mark: a step of the operation ran out of time before any claim.
    pub failure: Option<FailureMark>,
}

/// The failure mark of an operation on the group state: who failed it, when, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureMark {
    /// The cluster whose run failed.
    pub by: String,
    /// When the mark was written.
    pub at: Timestamp,
    /// What failed.
    pub message: Option<String>,
}

/// The attributes [`HandoffView`] reads, which closing copies from the group state onto the
/// operation item.
pub const HANDOFF_ATTRIBUTES: [&str; 5] = [
    attr::ABORT_REQUESTED_AT,
    attr::GROUP_READY_AT,
    attr::PROMOTION_STARTED_AT,
    attr::READY,
    attr::PROMOTED,
];

impl HandoffView {
    /// Decodes the handoff attributes of `item` (a `kind` record: group state or
    /// operation); absent ones are empty.
    pub fn from_item(kind: &'static str, item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(kind, item);
        Ok(Self {
            abort_requested_at: r.opt_millis(attr::ABORT_REQUESTED_AT)?,
            group_ready_at: r.opt_millis(attr::GROUP_READY_AT)?,
            promotion_started_at: r.opt_millis(attr::PROMOTION_STARTED_AT)?,
            ready: marks(&r, attr::READY)?,
            promoted: marks(&r, attr::PROMOTED)?,
            failure: match r.opt_millis(attr::FAILED_AT)? {
                Some(at) => Some(FailureMark {
                    by: r.opt_string(attr::FAILED_BY)?.unwrap_or_default(),
                    at,
                    message: r.opt_string(attr::FAILURE_MESSAGE)?,
                }),
                None => None,
            },
        })
    }

    /// One line per volume marked ready or promoted, in volume-name order.
    pub fn handoffs(&self, op_id: &str, epoch: u64) -> Vec<Handoff> {
        let volumes: std::collections::BTreeSet<&String> =
            self.ready.keys().chain(self.promoted.keys()).collect();
        volumes
            .into_iter()
            .map(|volume| {
                let ready = self.ready.get(volume);
                let promoted = self.promoted.get(volume);
                Handoff {
                    op_id: op_id.to_owned(),
                    volume: volume.clone(),
                    state: if promoted.is_some() {
                        HandoffState::Promoted
                    } else {
                        HandoffState::ReadyForPromotion
                    },
                    epoch,
                    writer: ready
                        .or(promoted)
                        .map(|m| m.writer.clone())
                        .unwrap_or_default(),
                    ready_at: ready.map(|m| m.at),
                    promoted_at: promoted.map(|m| m.at),
                }
            })
            .collect()
    }
}

/// The raw handoff attributes of `item`, for copying them onto another item.
pub fn handoff_attributes(item: &Item) -> Item {
    HANDOFF_ATTRIBUTES
        .iter()
        .filter_map(|a| item.get(*a).map(|v| ((*a).to_owned(), v.clone())))
        .collect()
}

fn marks(r: &Reader<'_>, attribute: &str) -> Result<BTreeMap<String, Mark>, DecodeError> {
    let Some(map) = r.opt_map(attribute)? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (volume, value) in map {
        let entry = r.nested(attribute, map);
        let AttributeValue::M(m) = value else {
            return Err(entry.wrong(volume, "M", value));
        };
        let mr = entry.nested(volume, m);
        keys::validate_volume(volume)
            .map_err(|e| entry.err(volume, super::decode::Problem::BadValue(e.to_string())))?;
        out.insert(
            volume.clone(),
            Mark {
                writer: mr.checked(attr::WRITER, keys::validate_cluster)?,
                at: mr.millis(attr::AT)?,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    #[test]
    fn a_view_reads_back_as_one_line_per_volume() {
        let mark = |w: &str, at| Mark {
            writer: w.into(),
            at: ts(at),
        };
        let item = Item::from([
            (attr::GROUP_READY_AT.to_owned(), av_ms(ts(10))),
            (
                attr::READY.to_owned(),
                AttributeValue::M(Item::from([
                    ("data-0".to_owned(), mark("east", 10).to_av()),
                    ("data-1".to_owned(), mark("east", 10).to_av()),
                ])),
            ),
            (
                attr::PROMOTED.to_owned(),
                AttributeValue::M(Item::from([
                    ("data-1".to_owned(), mark("west", 20).to_av()),
                    ("data-2".to_owned(), mark("west", 21).to_av()),
                ])),
            ),
        ]);
        let view = HandoffView::from_item("group state", &item).unwrap();
        assert_eq!(view.group_ready_at, Some(ts(10)));
        let lines = view.handoffs("op-1", 7);
        let summary: Vec<_> = lines
            .iter()
            .map(|h| {
                (
                    h.volume.as_str(),
                    h.state,
                    h.writer.as_str(),
                    h.ready_at,
                    h.promoted_at,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "data-0",
                    HandoffState::ReadyForPromotion,
                    "east",
                    Some(ts(10)),
                    None
                ),
                (
                    "data-1",
                    HandoffState::Promoted,
                    "east",
                    Some(ts(10)),
                    Some(ts(20))
                ),
                ("data-2", HandoffState::Promoted, "west", None, Some(ts(21))),
            ]
        );
        assert!(lines.iter().all(|h| h.epoch == 7 && h.op_id == "op-1"));
        assert_eq!(handoff_attributes(&item).len(), 3);
    }

    #[test]
    fn a_failure_mark_reads_back_with_who_and_why() {
        let item = Item::from([
            (attr::FAILED_AT.to_owned(), av_ms(ts(30))),
            (attr::FAILED_BY.to_owned(), AttributeValue::S("west".into())),
            (
                attr::FAILURE_MESSAGE.to_owned(),
                AttributeValue::S("the wait for READY ran out".into()),
            ),
        ]);
        let view = HandoffView::from_item("group state", &item).unwrap();
        assert_eq!(
            view.failure,
            Some(FailureMark {
                by: "west".into(),
                at: ts(30),
                message: Some("the wait for READY ran out".into()),
            })
        );
        assert!(view.handoffs("op-1", 7).is_empty());
        assert!(
            handoff_attributes(&item).is_empty(),
            "a close does not copy the failure mark"
        );
        let none = HandoffView::from_item("group state", &Item::new()).unwrap();
        assert_eq!(none.failure, None);
    }

    #[test]
    fn a_bad_mark_names_the_volume() {
        let item = Item::from([(
            attr::READY.to_owned(),
            AttributeValue::M(Item::from([(
                "data-0".to_owned(),
                AttributeValue::S("east".into()),
            )])),
        )]);
        let err = HandoffView::from_item("group state", &item).unwrap_err();
        assert!(err.attribute.contains("data-0"), "{err}");
    }
}
