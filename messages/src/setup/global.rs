//! Making the failover table a DynamoDB global table in multi-Region strong consistency
//! (MRSC), so it stays writable from a surviving region.
//!
//! MRSC takes exactly three regions, given in the one `UpdateTable` call that makes a
//! regional table global: the table's own region plus two replicas, or plus one replica and
//! a witness (a region that stores the replication log, holds no table and serves no
//! reads). The consistency mode and the membership cannot change afterwards, and the table
//! must be empty when it becomes global. [`GlobalTableSpec::new`] checks the shape before
//! anything is sent; [`global_state`] reads a `DescribeTable` answer against it (pure);
//! [`ensure_global`] sends the call once, when the table is still regional, and waits until
//! every replica and the witness are `ACTIVE`.
//!
//! The protocol asks nothing else of the table: no protocol write is a transaction and
//! nothing relies on TTL deletion, so the same agents run on a regional and on an MRSC table.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    CreateGlobalTableWitnessGroupMemberAction, CreateReplicationGroupMemberAction,
    GlobalTableWitnessGroupUpdate, MultiRegionConsistency, ReplicaStatus, ReplicationGroupUpdate,
    TableDescription, TableStatus, WitnessStatus,
};

use super::{Look, SetupError, TableSetup, aws_error, describe, poll_describe};

/// The regions of a strongly consistent global table, checked for the shape MRSC accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalTableSpec {
    /// The region the table is created in (this command's region).
    pub home: String,
    /// The other regions holding a replica (one or two).
    pub replicas: Vec<String>,
    /// The witness region, with exactly one replica.
    pub witness: Option<String>,
}

impl GlobalTableSpec {
    /// Checks that the regions make an MRSC table: three distinct regions in all, the home
    /// region, then two replicas, or one replica and a witness.
    pub fn new(home: &str, replicas: &[String], witness: Option<&str>) -> Result<Self, String> {
        let mut all = vec![home];
        all.extend(replicas.iter().map(String::as_str));
        all.extend(witness);
        if let Some(blank) = all.iter().find(|r| r.trim().is_empty()) {
            return Err(format!("a region name is empty ({blank:?})"));
        }
        for (i, r) in all.iter().enumerate() {
            if all[..i].contains(r) {
                return Err(format!(
                    "region {r} is named twice (the table is in {home}; replicas and the witness \
                     must each be another region)"
                ));
            }
        }
        match (replicas.len(), witness) {
            (2, None) | (1, Some(_)) => Ok(Self {
                home: home.to_owned(),
                replicas: replicas.to_vec(),
                witness: witness.map(str::to_owned),
            }),
            (n, w) => Err(format!(
                "a strongly consistent global table spans exactly three regions: the table's \
                 ({home}) and two --replica-region, or one --replica-region and a \
                 --witness-region; got {n} replica region(s){}",
                if w.is_some() { " and a witness" } else { "" }
            )),
        }
    }
}

/// What a table's description says against a [`GlobalTableSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalState {
    /// A regional table: no replica, no witness.
    Regional,
    /// Strongly consistent with exactly the wanted regions, all `ACTIVE`.
    Ready,
    /// Strongly consistent with the wanted regions, some still being created (what).
    Settling(String),
    /// Global in another way (what differs): it cannot be changed into the wanted table.
    Differs(String),
}

/// Reads `desc` against `spec` (pure).
pub fn global_state(desc: &TableDescription, spec: &GlobalTableSpec) -> GlobalState {
    let replicas: Vec<&str> = desc
        .replicas()
        .iter()
        .filter_map(|r| r.region_name())
        .filter(|r| *r != spec.home)
        .collect();
    let witnesses: Vec<&str> = desc
        .global_table_witnesses()
        .iter()
        .filter_map(|w| w.region_name())
        .collect();
    let strong = desc.multi_region_consistency() == Some(&MultiRegionConsistency::Strong);
    if replicas.is_empty() && witnesses.is_empty() && !strong {
        return GlobalState::Regional;
    }
    let shown = |rs: &[&str]| {
        if rs.is_empty() {
            "none".to_owned()
        } else {
            rs.join(", ")
        }
    };
    let found = format!(
        "replicas in {}, witness {}",
        shown(&replicas),
        shown(&witnesses)
    );
    if !strong {
        return GlobalState::Differs(format!(
            "it is a global table in eventual consistency ({found}); its mode cannot change: \
             use another table name"
        ));
    }
    let mut want_replicas: Vec<&str> = spec.replicas.iter().map(String::as_str).collect();
    let mut have_replicas = replicas.clone();
    want_replicas.sort_unstable();
    have_replicas.sort_unstable();
    let want_witness: Vec<&str> = spec.witness.iter().map(String::as_str).collect();
    if want_replicas != have_replicas || want_witness != witnesses {
        return GlobalState::Differs(format!(
            "it is strongly consistent with {found}, not replicas in {}, witness {}; its regions \
             cannot change",
            shown(&want_replicas),
            shown(&want_witness)
        ));
    }
    let mut pending = Vec::new();
    if let Some(s) = desc.table_status().filter(|s| **s != TableStatus::Active) {
        pending.push(format!("table {}", s.as_str()));
    }
    for r in desc.replicas() {
        if let Some(s) = r.replica_status().filter(|s| **s != ReplicaStatus::Active) {
            pending.push(format!(
                "replica {} {}",
                r.region_name().unwrap_or("?"),
                s.as_str()
            ));
        }
    }
    for w in desc.global_table_witnesses() {
        if let Some(s) = w.witness_status().filter(|s| **s != WitnessStatus::Active) {
            pending.push(format!(
                "witness {} {}",
                w.region_name().unwrap_or("?"),
                s.as_str()
            ));
        }
    }
    if pending.is_empty() {
        GlobalState::Ready
    } else {
        GlobalState::Settling(pending.join(", "))
    }
}

/// Makes the (existing, `ACTIVE`) table `table` strongly consistent across `spec`'s regions,
/// or checks that it already is; waits at most `timeout` for every replica and the witness
/// to be `ACTIVE`. `Created` when this call made it global.
///
/// Refused (nothing changed): a table global in another way, a table that holds items, an
/// endpoint that answers the request without making the table strongly consistent (an
/// emulator without global tables).
pub async fn ensure_global(
    client: &Client,
    table: &str,
    spec: &GlobalTableSpec,
    timeout: Duration,
) -> Result<TableSetup, SetupError> {
    let refused = |problem: String| SetupError::GlobalTable {
        table: table.to_owned(),
        problem,
    };
    let desc = describe(client, table)
        .await?
        .ok_or_else(|| refused("the table does not exist".into()))?;
    let setup = match global_state(&desc, spec) {
        GlobalState::Ready => return Ok(TableSetup::AlreadyExisted),
        GlobalState::Settling(_) => TableSetup::AlreadyExisted,
        GlobalState::Differs(problem) => return Err(refused(problem)),
        GlobalState::Regional => {
            if holds_items(client, table).await? {
                return Err(refused(
                    "it holds items, and a table becomes strongly consistent only while empty: \
                     use a new table name (--table), or empty this one"
                        .into(),
                ));
            }
            make_global(client, table, spec).await?;
            TableSetup::Created
        }
    };
    wait_global(client, table, spec, timeout).await?;
    Ok(setup)
}

/// Whether `table` holds any item (one strongly consistent `Scan` of one item).
async fn holds_items(client: &Client, table: &str) -> Result<bool, SetupError> {
    let out = client
        .scan()
        .table_name(table)
        .limit(1)
        .consistent_read(true)
        .send()
        .await
        .map_err(|err| SetupError::DescribeTable {
            table: table.to_owned(),
            source: aws_error("Scan", err),
        })?;
    Ok(out.count() > 0 || out.last_evaluated_key().is_some())
}

/// The one `UpdateTable` call that makes `table` an MRSC table.
async fn make_global(
    client: &Client,
    table: &str,
    spec: &GlobalTableSpec,
) -> Result<(), SetupError> {
    let mut req = client
        .update_table()
        .table_name(table)
        .multi_region_consistency(MultiRegionConsistency::Strong);
    for region in &spec.replicas {
        let create = CreateReplicationGroupMemberAction::builder()
            .region_name(region)
            .build()
            .expect("the region name is set");
        req = req.replica_updates(ReplicationGroupUpdate::builder().create(create).build());
    }
    if let Some(region) = &spec.witness {
        let create = CreateGlobalTableWitnessGroupMemberAction::builder()
            .region_name(region)
            .build()
            .expect("the region name is set");
        req = req.global_table_witness_updates(
            GlobalTableWitnessGroupUpdate::builder()
                .create(create)
                .build(),
        );
    }
    let out = req.send().await.map_err(|err| SetupError::UpdateTable {
        table: table.to_owned(),
        source: aws_error("UpdateTable", err),
    })?;
    // DynamoDB answers the call with the mode already set; an endpoint that accepted the
    // call but answers without it ignored it, and waiting would only time out.
    let strong = out
        .table_description()
        .and_then(|d| d.multi_region_consistency())
        == Some(&MultiRegionConsistency::Strong);
    if !strong {
        return Err(SetupError::GlobalTable {
            table: table.to_owned(),
            problem: "the DynamoDB endpoint accepted the request to make it strongly consistent \
                      but its answer does not show multi-Region strong consistency (an endpoint \
                      without global tables?); the table is unchanged"
                .into(),
        });
    }
    tracing::info!(
        table,
        replicas = ?spec.replicas,
        witness = ?spec.witness,
        "requested the strongly consistent global table"
    );
    Ok(())
}

/// Polls until [`global_state`] is `Ready`, logging what it waits for.
async fn wait_global(
    client: &Client,
    table: &str,
    spec: &GlobalTableSpec,
    timeout: Duration,
) -> Result<(), SetupError> {
    poll_describe(
        client,
        table,
        timeout,
        Duration::from_millis(500),
        |desc| match desc.map(|d| global_state(d, spec)) {
            Some(GlobalState::Ready) => Look::Ready(()),
            Some(GlobalState::Differs(problem)) => Look::Refused(SetupError::GlobalTable {
                table: table.to_owned(),
                problem,
            }),
            Some(GlobalState::Settling(what)) => Look::Waiting(what),
            Some(GlobalState::Regional) => Look::Waiting("not global yet".to_owned()),
            None => Look::Waiting("missing".to_owned()),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{GlobalTableWitnessDescription, ReplicaDescription};

    fn regions(rs: &[&str]) -> Vec<String> {
        rs.iter().map(|r| (*r).to_owned()).collect()
    }

    fn spec() -> GlobalTableSpec {
        GlobalTableSpec::new("us-east-1", &regions(&["us-west-2"]), Some("us-east-2")).unwrap()
    }

    fn replica(region: &str, status: ReplicaStatus) -> ReplicaDescription {
        ReplicaDescription::builder()
            .region_name(region)
            .replica_status(status)
            .build()
    }

    fn witness(region: &str, status: WitnessStatus) -> GlobalTableWitnessDescription {
        GlobalTableWitnessDescription::builder()
            .region_name(region)
            .witness_status(status)
            .build()
    }

    #[test]
    fn three_regions_two_replicas_or_a_replica_and_a_witness() {
        assert!(
            GlobalTableSpec::new("us-east-1", &regions(&["us-west-2", "us-east-2"]), None).is_ok()
        );
        assert!(
            GlobalTableSpec::new("us-east-1", &regions(&["us-west-2"]), Some("us-east-2")).is_ok()
        );
        let one = GlobalTableSpec::new("us-east-1", &regions(&["us-west-2"]), None).unwrap_err();
        assert!(
            one.contains("exactly three regions") && one.contains("got 1"),
            "{one}"
        );
        let four = GlobalTableSpec::new(
            "us-east-1",
            &regions(&["us-west-2", "eu-west-1"]),
            Some("us-east-2"),
        )
        .unwrap_err();
        assert!(
            four.contains("got 2 replica region(s) and a witness"),
            "{four}"
        );
        let home = GlobalTableSpec::new("us-east-1", &regions(&["us-east-1"]), Some("us-east-2"))
            .unwrap_err();
        assert!(home.contains("us-east-1 is named twice"), "{home}");
        let same = GlobalTableSpec::new("us-east-1", &regions(&["us-west-2"]), Some("us-west-2"))
            .unwrap_err();
        assert!(same.contains("us-west-2 is named twice"), "{same}");
    }

    #[test]
    fn a_regional_table_is_regional() {
        let desc = TableDescription::builder()
            .table_status(TableStatus::Active)
            .build();
        assert_eq!(global_state(&desc, &spec()), GlobalState::Regional);
    }

    #[test]
    fn the_wanted_table_is_ready_once_every_region_is_active() {
        let settling = TableDescription::builder()
            .table_status(TableStatus::Updating)
            .multi_region_consistency(MultiRegionConsistency::Strong)
            .replicas(replica("us-west-2", ReplicaStatus::Creating))
            .global_table_witnesses(witness("us-east-2", WitnessStatus::Creating))
            .build();
        assert_eq!(
            global_state(&settling, &spec()),
            GlobalState::Settling(
                "table UPDATING, replica us-west-2 CREATING, witness us-east-2 CREATING".into()
            )
        );
        let ready = TableDescription::builder()
            .table_status(TableStatus::Active)
            .multi_region_consistency(MultiRegionConsistency::Strong)
            .replicas(replica("us-west-2", ReplicaStatus::Active))
            .global_table_witnesses(witness("us-east-2", WitnessStatus::Active))
            .build();
        assert_eq!(global_state(&ready, &spec()), GlobalState::Ready);
    }

    #[test]
    fn another_global_table_is_named_and_refused() {
        let eventual = TableDescription::builder()
            .table_status(TableStatus::Active)
            .replicas(replica("us-west-2", ReplicaStatus::Active))
            .build();
        let GlobalState::Differs(why) = global_state(&eventual, &spec()) else {
            panic!("an eventually consistent global table differs");
        };
        assert!(
            why.contains("eventual consistency (replicas in us-west-2, witness none)"),
            "{why}"
        );
        let elsewhere = TableDescription::builder()
            .table_status(TableStatus::Active)
            .multi_region_consistency(MultiRegionConsistency::Strong)
            .replicas(replica("eu-west-1", ReplicaStatus::Active))
            .global_table_witnesses(witness("us-east-2", WitnessStatus::Active))
            .build();
        let GlobalState::Differs(why) = global_state(&elsewhere, &spec()) else {
            panic!("other regions differ");
        };
        assert!(
            why.contains("replicas in eu-west-1, witness us-east-2, not replicas in us-west-2"),
            "{why}"
        );
    }
}
