//! Reads (all strongly consistent except the `GSI1` listings) and heartbeats.

use std::time::Duration;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use jiff::Timestamp;

use super::error::{Cause, StoreError};
use super::outcome::HeartbeatStatus;
use super::{Store, calls, names, values};
use crate::keys::{self, GroupRef};
use crate::records::{
    AutoArmed, GroupState, Handoff, HandoffView, Heartbeat, HistoryEntry, InboxRoute, Item,
    JournalStep, Operation, Record, attr, av_s,
};

impl Store {
    /// Runs a query to the end (or to `limit` items), page by page.
    async fn query(
        &self,
        operation: &'static str,
        req: QueryFluentBuilder,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, Cause> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page_req = req.clone().set_exclusive_start_key(start.take());
            let page = self
                .send(operation, "Query", calls::classify_error, || {
                    page_req.clone().send()
                })
                .await
                .map_err(|f| f.into_cause())?;
            out.extend(page.items().iter().cloned());
            if let Some(limit) = limit
                && out.len() >= limit
            {
                out.truncate(limit);
                break;
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Items of partition `pk` whose sort key begins with `prefix`, consistently read.
    pub(super) async fn query_partition(
        &self,
        operation: &'static str,
        pk: &str,
        prefix: &str,
        limit: Option<usize>,
        forward: bool,
    ) -> Result<Vec<Item>, Cause> {
        // An empty prefix reads the whole partition.
        let mut req = if prefix.is_empty() {
            self.client
                .query()
                .key_condition_expression("#PK = :pk")
                .set_expression_attribute_names(Some(names(&[keys::PK])))
                .set_expression_attribute_values(Some(values([(":pk", av_s(pk))])))
        } else {
            self.client
                .query()
                .key_condition_expression("#PK = :pk AND begins_with(#SK, :prefix)")
                .set_expression_attribute_names(Some(names(&[keys::PK, keys::SK])))
                .set_expression_attribute_values(Some(values([
                    (":pk", av_s(pk)),
                    (":prefix", av_s(prefix)),
                ])))
        }
        .table_name(self.table.as_ref())
        .consistent_read(true)
        .scan_index_forward(forward);
        if let Some(l) = limit {
            req = req.limit(i32::try_from(l).unwrap_or(i32::MAX).max(1));
        }
        self.query(operation, req, limit).await
    }

    /// Items of `GSI1` partition `gsi1pk` (eventually consistent, as every index).
    async fn query_gsi1(
        &self,
        operation: &'static str,
        gsi1pk: &str,
        limit: Option<usize>,
        forward: bool,
    ) -> Result<Vec<Item>, Cause> {
        let mut req = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .index_name(keys::GSI1)
            .key_condition_expression("#GSI1PK = :pk")
            .set_expression_attribute_names(Some(names(&[keys::GSI1PK])))
            .set_expression_attribute_values(Some(values([(":pk", av_s(gsi1pk))])))
            .scan_index_forward(forward);
        if let Some(l) = limit {
            req = req.limit(i32::try_from(l).unwrap_or(i32::MAX).max(1));
        }
        self.query(operation, req, limit).await
    }

    /// The group's state (consistent read); `None` when it was never registered.
    pub async fn get_group_state(
        &self,
        group: &GroupRef,
    ) -> Result<Option<GroupState>, StoreError> {
        self.read_state("get_group_state", group)
            .await
            .map_err(|source| StoreError::GetGroupState {
                group: group.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    /// The group's state and the handoff of the operation in flight it carries (abort,
    /// claim, failure mark, each volume's marks), from one consistent `GetItem`: while the
    /// state names an operation, this is what decides whether it can go on, without reading
    /// the operation item. `None` when the group was never registered.
    pub async fn get_group_state_and_handoff(
        &self,
        group: &GroupRef,
    ) -> Result<Option<(GroupState, HandoffView)>, StoreError> {
        let read = async {
            let Some(item) = self
                .get_item("get_group_state", keys::group_state_key(group))
                .await?
            else {
                return Ok(None);
            };
            let state = GroupState::from_item(&item)?;
            let view = HandoffView::from_item(GroupState::KIND, &item)?;
            Ok::<_, Cause>(Some((state, view)))
        };
        read.await.map_err(|source| StoreError::GetGroupState {
            group: group.clone(),
            table: self.table.to_string(),
            source,
        })
    }

    /// An operation (consistent read), with the abort and claim times the group state
    /// carries while it is in flight; `None` when it does not exist. Two reads while the
    /// operation is open, one once it is closed.
    pub async fn get_operation(&self, op_id: &str) -> Result<Option<Operation>, StoreError> {
        let wrap = |source: Cause| StoreError::GetOperation {
            op_id: op_id.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(op_id).map_err(|e| wrap(e.into()))?;
        self.read_operation("get_operation", op_id)
            .await
            .map_err(wrap)
    }

    /// [`Store::get_operation`] for an operation of a known group: one consistent
    /// `BatchGetItem` of the operation and the group state instead of two reads.
    pub async fn get_operation_of(
        &self,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<Operation>, StoreError> {
        let wrap = |source: Cause| StoreError::GetOperation {
            op_id: op_id.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(op_id).map_err(|e| wrap(e.into()))?;
        self.read_operation_of("get_operation", group, op_id)
            .await
            .map_err(wrap)
    }

    /// [`Store::get_operation_of`] and the group's state (`None` when it has none), both
    /// from the same consistent `BatchGetItem`. An operation of another group is an error.
    pub async fn get_operation_and_state_of(
        &self,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Operation, Option<GroupState>)>, StoreError> {
        let wrap = |source: Cause| StoreError::GetOperation {
            op_id: op_id.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(op_id).map_err(|e| wrap(e.into()))?;
        self.read_operation_and_state_of("get_operation", group, op_id)
            .await
            .map_err(wrap)
    }

    /// The handoff of an operation, one line per volume marked `READY_FOR_PROMOTION` or
    /// `PROMOTED`, in volume-name order: from the group state while it carries this
    /// operation (in flight, or the last closed), else from the copy the close left on the
    /// operation item. Two consistent reads.
    pub async fn list_handoffs(&self, op_id: &str) -> Result<Vec<Handoff>, StoreError> {
        let wrap = |source: Cause| StoreError::ListHandoffs {
            op_id: op_id.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(op_id).map_err(|e| wrap(e.into()))?;
        self.handoff_view("list_handoffs", op_id)
            .await
            .map(|found| {
                found
                    .map(|(op, view)| view.handoffs(&op.id, op.epoch))
                    .unwrap_or_default()
            })
            .map_err(wrap)
    }

    /// [`Store::list_handoffs`] for an operation of a known group: one consistent
    /// `BatchGetItem`.
    pub async fn list_handoffs_of(
        &self,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Vec<Handoff>, StoreError> {
        let wrap = |source: Cause| StoreError::ListHandoffs {
            op_id: op_id.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(op_id).map_err(|e| wrap(e.into()))?;
        self.handoff_view_of("list_handoffs", group, op_id)
            .await
            .map(|found| {
                found
                    .map(|(op, view)| view.handoffs(&op.id, op.epoch))
                    .unwrap_or_default()
            })
            .map_err(wrap)
    }

    /// The published stages of each cluster of `clusters` in operation `op_id`, from one
    /// consistent `GetItem` of the operation item (in `clusters`' order, each in the order its
    /// steps were started). Unlike [`Store::journal`] it leaves out the notes on long waits
    /// of stages not yet published (their steps are `STARTED`): enough for whoever waits for
    /// a step to be `DONE`, or times finished stages. No operation item: no steps.
    pub async fn published_journals(
        &self,
        op_id: &str,
        clusters: &[&str],
    ) -> Result<Vec<Vec<JournalStep>>, StoreError> {
        self.read_journals(op_id, clusters, false).await
    }

    /// One cluster's journal of an operation (consistent; one `Query` of the partition
    /// `OP#<id>`), in the order the steps were started (`startedAt`, then stage order).
    pub async fn journal(
        &self,
        op_id: &str,
        cluster: &str,
    ) -> Result<Vec<JournalStep>, StoreError> {
        Ok(self.journals(op_id, &[cluster]).await?.concat())
    }

    /// The journals of each cluster of `clusters` in operation `op_id` ([`Store::journal`]),
    /// from one consistent `Query` of the partition `OP#<id>`, in `clusters`' order.
    pub async fn journals(
        &self,
        op_id: &str,
        clusters: &[&str],
    ) -> Result<Vec<Vec<JournalStep>>, StoreError> {
        self.read_journals(op_id, clusters, true).await
    }

    /// Each cluster's journal of `clusters` in operation `op_id`: with `notes`, from the
    /// whole partition (the operation item's published stages and the notes on long waits,
    /// one `Query`), else from the operation item alone (one `GetItem`).
    async fn read_journals(
        &self,
        op_id: &str,
        clusters: &[&str],
        notes: bool,
    ) -> Result<Vec<Vec<JournalStep>>, StoreError> {
        let wrap = |source: Cause| StoreError::ReadJournal {
            op_id: op_id.to_owned(),
            cluster: clusters.join(","),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(op_id).map_err(|e| wrap(e.into()))?;
        for cluster in clusters {
            keys::validate_cluster(cluster).map_err(|e| wrap(e.into()))?;
        }
        let items: Vec<Item> = if notes {
            self.query_partition("journal", &keys::operation_pk(op_id), "", None, true)
                .await
                .map_err(wrap)?
        } else {
            self.get_item("journal", keys::operation_key(op_id))
                .await
                .map_err(wrap)?
                .into_iter()
                .collect()
        };
        clusters
            .iter()
            .map(|c| crate::records::flatten_journal(&items, c).map_err(Cause::from))
            .collect::<Result<_, _>>()
            .map_err(wrap)
    }

    /// Every registered group (`GSI1`, `GSI1PK = GROUPS`), in name order. Eventually
    /// consistent: read one group with [`Store::get_group_state`] before acting on it. A record
    /// that does not decode is logged and left out (one bad item never hides the others).
    pub async fn list_groups(&self) -> Result<Vec<GroupState>, StoreError> {
        let wrap = |source: Cause| StoreError::ListGroups {
            table: self.table.to_string(),
            source,
        };
        let items = self
            .query_gsi1("list_groups", keys::GSI1_GROUPS, None, true)
            .await
            .map_err(wrap)?;
        Ok(self.decode_each(&items, "group state"))
    }

    /// Every item of `items` that decodes; one that does not is logged (naming its key) and
    /// left out, so one bad record never hides the others.
    fn decode_each<R: Record>(&self, items: &[Item], what: &str) -> Vec<R> {
        items
            .iter()
            .filter_map(|item| match R::from_item(item) {
                Ok(r) => Some(r),
                Err(e) => {
                    let key = |name| match item.get(name) {
                        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => s.as_str(),
                        _ => "?",
                    };
                    tracing::warn!(
                        table = %self.table, pk = key(attr::PK), sk = key(attr::SK), error = %e,
                        "skipping an unreadable {what} record"
                    );
                    None
                }
            })
            .collect()
    }

    /// Operations, newest first (`GSI1`, `GSI1PK = OPS`), at most `limit`. Eventually
    /// consistent.
    pub async fn list_operations(
        &self,
        limit: Option<usize>,
    ) -> Result<Vec<Operation>, StoreError> {
        let wrap = |source: Cause| StoreError::ListOperations {
            table: self.table.to_string(),
            source,
        };
        self.query_gsi1("list_operations", keys::GSI1_OPERATIONS, limit, false)
            .await
            .and_then(|items| decode_all(&items))
            .map_err(wrap)
    }

    /// A group's closed operations, newest first (consistent query of
    /// `PK = GROUP#<ns>/<name>`, `SK` begins with `HIST#`), at most `limit`.
    pub async fn history(
        &self,
        group: &GroupRef,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let wrap = |source: Cause| StoreError::ReadHistory {
            group: group.clone(),
            table: self.table.to_string(),
            source,
        };
        self.query_partition(
            "history",
            &keys::group_pk(group),
            keys::HISTORY_PREFIX,
            limit,
            false,
        )
        .await
        .and_then(|items| decode_all(&items))
        .map_err(wrap)
    }

    /// Records where `route.cluster` receives (replaces what was recorded).
    pub async fn put_inbox_route(&self, route: &InboxRoute) -> Result<(), StoreError> {
        let wrap = |source: Cause| StoreError::PutInboxRoute {
            cluster: route.cluster.clone(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_cluster(&route.cluster).map_err(|e| wrap(e.into()))?;
        let req = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(route.to_item()));
        self.send("put_inbox_route", "PutItem", calls::classify_error, || {
            req.clone().send()
        })
        .await
        .map_err(|f| wrap(f.into_cause()))?;
        Ok(())
    }

    /// Where `cluster` receives, if `failoverctl setup` recorded it (consistent read).
    pub async fn get_inbox_route(&self, cluster: &str) -> Result<Option<InboxRoute>, StoreError> {
        let wrap = |source: Cause| StoreError::GetInboxRoute {
            cluster: cluster.to_owned(),
            table: self.table.to_string(),
            source,
        };
        match self
            .get_item("get_inbox_route", keys::inbox_route_key(cluster))
            .await
            .map_err(wrap)?
        {
            Some(item) => InboxRoute::from_item(&item)
                .map(Some)
                .map_err(|e| wrap(e.into())),
            None => Ok(None),
        }
    }

    /// Writes this cluster's heartbeat as a lease of `ttl` keeping no group serving when
    /// DynamoDB is lost ([`Store::put_lease`]).
    pub async fn put_heartbeat(
        &self,
        cluster: &str,
        agent_version: &str,
        ttl: Duration,
    ) -> Result<Heartbeat, StoreError> {
        self.put_lease(cluster, agent_version, ttl, &[]).await
    }

    /// Renews this cluster's serving lease (its heartbeat record): `lastSeen = now` (the
    /// lease's version), `expiresAt = now + duration` (rounded up to whole seconds: it is the
    /// table's TTL attribute), `leaseDurationMs`, and the groups it keeps serving when it
    /// loses DynamoDB.
    pub async fn put_lease(
        &self,
        cluster: &str,
        agent_version: &str,
        ttl: Duration,
        keep_serving: &[String],
    ) -> Result<Heartbeat, StoreError> {
        self.put_lease_armed(cluster, agent_version, ttl, keep_serving, &[])
            .await
    }

    /// [`Store::put_lease`], also publishing the groups armed for automatic failover here.
    pub async fn put_lease_armed(
        &self,
        cluster: &str,
        agent_version: &str,
        ttl: Duration,
        keep_serving: &[String],
        auto_armed: &[AutoArmed],
    ) -> Result<Heartbeat, StoreError> {
        let wrap = |source: Cause| StoreError::PutHeartbeat {
            cluster: cluster.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_cluster(cluster).map_err(|e| wrap(e.into()))?;
        let now = self.now();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_ms = now.as_millisecond().saturating_add(ttl_ms);
        let expires_at = expires_ms
            .checked_add(999)
            .map(|ms| ms.div_euclid(1000))
            .and_then(|s| Timestamp::from_second(s).ok())
            .ok_or_else(|| wrap(Cause::Invalid(format!("heartbeat TTL {ttl:?} is too long"))))?;
        let hb = Heartbeat {
            cluster: cluster.to_owned(),
            agent_version: agent_version.to_owned(),
            last_seen: now,
            expires_at,
            lease_duration_ms: u64::try_from(ttl.as_millis()).ok(),
            keep_serving: {
                let mut k = keep_serving.to_vec();
                k.sort();
                k.dedup();
                k
            },
            auto_armed: auto_armed.to_vec(),
        };
        let req = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(hb.to_item()));
        self.send("put_heartbeat", "PutItem", calls::classify_error, || {
            req.clone().send()
        })
        .await
        .map_err(|f| wrap(f.into_cause()))?;
        Ok(hb)
    }

    /// A cluster's heartbeat (consistent) and whether it is stale by the store's clock.
    pub async fn get_heartbeat(
        &self,
        cluster: &str,
    ) -> Result<Option<HeartbeatStatus>, StoreError> {
        let wrap = |source: Cause| StoreError::GetHeartbeat {
            cluster: cluster.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_cluster(cluster).map_err(|e| wrap(e.into()))?;
        let Some(item) = self
            .get_item("get_heartbeat", keys::heartbeat_key(cluster))
            .await
            .map_err(wrap)?
        else {
            return Ok(None);
        };
        let heartbeat = Heartbeat::from_item(&item).map_err(|e| wrap(e.into()))?;
        Ok(Some(self.heartbeat_status(heartbeat)))
    }

    /// Every cluster's heartbeat (consistent query of `PK = CLUSTERS`), in name order, each
    /// with whether it is stale. Expired items that DynamoDB has not deleted yet are
    /// included and marked stale.
    pub async fn list_heartbeats(&self) -> Result<Vec<HeartbeatStatus>, StoreError> {
        let wrap = |source: Cause| StoreError::ListHeartbeats {
            table: self.table.to_string(),
            source,
        };
        let items = self
            .query_partition(
                "list_heartbeats",
                keys::CLUSTERS_PK,
                keys::CLUSTER_PREFIX,
                None,
                true,
            )
            .await
            .map_err(wrap)?;
        items
            .iter()
            .map(|i| Heartbeat::from_item(i).map(|h| self.heartbeat_status(h)))
            .collect::<Result<_, _>>()
            .map_err(|e| wrap(e.into()))
    }

    fn heartbeat_status(&self, heartbeat: Heartbeat) -> HeartbeatStatus {
        let stale = heartbeat.is_stale(self.now());
        HeartbeatStatus { heartbeat, stale }
    }
}

/// Decodes every item, failing on the first that is not a valid record.
fn decode_all<R: Record>(items: &[Item]) -> Result<Vec<R>, Cause> {
    items
        .iter()
        .map(R::from_item)
        .collect::<Result<_, _>>()
        .map_err(Cause::from)
}
