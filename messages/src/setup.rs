//! Creating or verifying the failover table, idempotently.
//!
//! [`ensure_table`] creates the table when it does not exist (`PK`/`SK` strings,
//! `GSI1` on `GSI1PK`/`GSI1SK` projecting all attributes, on-demand billing), waits until the
//! table and its index are `ACTIVE`, checks the key schema of a table that already existed
//! (a wrong one is an error naming the table and what differs), and turns TTL on for
//! `expiresAt`. Running it again changes nothing. SQS queues are set up elsewhere.
//! [`global`] makes the table a strongly consistent global table across three regions.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use crate::keys;
use crate::store::{AwsError, failure_kind};

pub mod global;

/// How long [`ensure_table`] waits for the table to become `ACTIVE` by default.
pub const DEFAULT_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// What [`ensure_table`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableSetup {
    /// The table was created.
    Created,
    /// The table existed with the right schema.
    AlreadyExisted,
}

/// Why the table could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Describing the table failed.
    #[error("describing table {table}")]
    DescribeTable {
        /// The table.
        table: String,
        /// The failed call.
        #[source]
        source: AwsError,
    },
    /// Creating the table failed.
    #[error("creating table {table}")]
    CreateTable {
        /// The table.
        table: String,
        /// The failed call.
        #[source]
        source: AwsError,
    },
    /// The table exists with a schema the failover records cannot use.
    #[error("table {table} exists but cannot hold the failover records: {problem}")]
    WrongSchema {
        /// The table.
        table: String,
        /// What differs.
        problem: String,
    },
    /// The table or its index did not become `ACTIVE` in time.
    #[error("table {table} is still {status} after {waited:?}")]
    NotActive {
        /// The table.
        table: String,
        /// Its last status.
        status: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The table cannot become (or is not) the strongly consistent global table asked for;
    /// nothing was changed.
    #[error("table {table} cannot be made the global table asked for: {problem}")]
    GlobalTable {
        /// The table.
        table: String,
        /// Why.
        problem: String,
    },
    /// The `UpdateTable` call that makes the table global failed.
    #[error("making table {table} a global table")]
    UpdateTable {
        /// The table.
        table: String,
        /// The failed call.
        #[source]
        source: AwsError,
    },
    /// Reading the TTL setting failed.
    #[error("reading the TTL setting of table {table}")]
    DescribeTimeToLive {
        /// The table.
        table: String,
        /// The failed call.
        #[source]
        source: AwsError,
    },
    /// Turning TTL on failed.
    #[error("turning on TTL on attribute {attribute} of table {table}")]
    UpdateTimeToLive {
        /// The table.
        table: String,
        /// The TTL attribute.
        attribute: &'static str,
        /// The failed call.
        #[source]
        source: AwsError,
    },
}

/// Creates the table or verifies it, waits until it is `ACTIVE`, and turns TTL on for
/// `expiresAt`. Idempotent. Waits at most [`DEFAULT_ACTIVE_TIMEOUT`].
pub async fn ensure_table(client: &Client, table: &str) -> Result<TableSetup, SetupError> {
    ensure_table_with_timeout(client, table, DEFAULT_ACTIVE_TIMEOUT).await
}

/// [`ensure_table`] with another timeout for the table to become `ACTIVE`.
pub async fn ensure_table_with_timeout(
    client: &Client,
    table: &str,
    active_timeout: Duration,
) -> Result<TableSetup, SetupError> {
    ensure_table_with(client, table, active_timeout, Ttl::On).await
}

/// Whether [`ensure_table_with`] turns TTL on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// Turn TTL on for `expiresAt` (expired records are deleted; nothing relies on it).
    On,
    /// Leave the TTL setting alone (a table to be made a strongly consistent global
    /// table: check in the AWS documentation which settings such tables accept).
    Untouched,
}

/// [`ensure_table`] with a timeout and a TTL choice.
pub async fn ensure_table_with(
    client: &Client,
    table: &str,
    active_timeout: Duration,
    ttl: Ttl,
) -> Result<TableSetup, SetupError> {
    let setup = match describe(client, table).await? {
        Some(_) => TableSetup::AlreadyExisted,
        None => match create(client, table).await? {
            true => TableSetup::Created,
            false => TableSetup::AlreadyExisted,
        },
    };
    let desc = wait_active(client, table, active_timeout).await?;
    check_schema(&desc).map_err(|problem| SetupError::WrongSchema {
        table: table.to_owned(),
        problem,
    })?;
    if setup == TableSetup::AlreadyExisted
        && desc
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .is_some_and(|m| *m != BillingMode::PayPerRequest)
    {
        tracing::warn!(
            table,
            "table uses provisioned capacity; failovers may be throttled"
        );
    }
    if ttl == Ttl::On {
        ensure_ttl(client, table).await?;
    }
    tracing::info!(table, ?setup, "failover table ready");
    Ok(setup)
}

async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, SetupError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(out.table),
        Err(SdkError::ServiceError(se))
            if matches!(se.err(), DescribeTableError::ResourceNotFoundException(_)) =>
        {
            Ok(None)
        }
        Err(err) => Err(SetupError::DescribeTable {
            table: table.to_owned(),
            source: aws_error("DescribeTable", err),
        }),
    }
}

fn aws_error<E>(api: &'static str, err: SdkError<E>) -> AwsError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = failure_kind(&err);
    AwsError::new(api, 1, kind, err)
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute name and type are set")
}

fn key_element(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("attribute name and key type are set")
}

/// Creates the table; `false` when someone else created it first.
async fn create(client: &Client, table: &str) -> Result<bool, SetupError> {
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(keys::GSI1)
        .key_schema(key_element(keys::GSI1PK, KeyType::Hash))
        .key_schema(key_element(keys::GSI1SK, KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .expect("index name and key schema are set");
    let result = client
        .create_table()
        .table_name(table)
        .attribute_definitions(string_attribute(keys::PK))
        .attribute_definitions(string_attribute(keys::SK))
        .attribute_definitions(string_attribute(keys::GSI1PK))
        .attribute_definitions(string_attribute(keys::GSI1SK))
        .key_schema(key_element(keys::PK, KeyType::Hash))
        .key_schema(key_element(keys::SK, KeyType::Range))
        .global_secondary_indexes(gsi)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match result {
        Ok(_) => {
            tracing::info!(table, "created the failover table");
            Ok(true)
        }
        Err(SdkError::ServiceError(se))
            if matches!(se.err(), CreateTableError::ResourceInUseException(_)) =>
        {
            Ok(false)
        }
        Err(err) => Err(SetupError::CreateTable {
            table: table.to_owned(),
            source: aws_error("CreateTable", err),
        }),
    }
}

/// What one look at a table found, for [`poll_describe`].
pub(crate) enum Look<T> {
    /// Done waiting.
    Ready(T),
    /// Not yet: what is awaited.
    Waiting(String),
    /// It will never be ready as asked.
    Refused(SetupError),
}

/// Describes `table` until `judge` finds it ready (or refuses it), from `first` apart, then
/// backing off to 5 s; each new status is logged. `NotActive`, naming the last status,
/// after `timeout`.
pub(crate) async fn poll_describe<T>(
    client: &Client,
    table: &str,
    timeout: Duration,
    first: Duration,
    judge: impl Fn(Option<&TableDescription>) -> Look<T>,
) -> Result<T, SetupError> {
    let started = Instant::now();
    let mut wait = first;
    let mut last = String::new();
    loop {
        let status = match judge(describe(client, table).await?.as_ref()) {
            Look::Ready(done) => return Ok(done),
            Look::Refused(e) => return Err(e),
            Look::Waiting(status) => status,
        };
        let waited = started.elapsed();
        if status != last {
            tracing::info!(table, %status, ?waited, "waiting for the table");
            last.clone_from(&status);
        }
        if waited >= timeout {
            return Err(SetupError::NotActive {
                table: table.to_owned(),
                status,
                waited,
            });
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn wait_active(
    client: &Client,
    table: &str,
    timeout: Duration,
) -> Result<TableDescription, SetupError> {
    poll_describe(client, table, timeout, Duration::from_millis(100), |desc| {
        let Some(d) = desc else {
            return Look::Waiting("missing".to_owned());
        };
        match d.table_status() {
            Some(TableStatus::Active) => {
                let pending = d
                    .global_secondary_indexes()
                    .iter()
                    .find(|i| i.index_status().is_some_and(|s| *s != IndexStatus::Active));
                match pending {
                    None => Look::Ready(d.clone()),
                    Some(i) => Look::Waiting(format!(
                        "waiting for index {} ({})",
                        i.index_name().unwrap_or("?"),
                        i.index_status().map(|s| s.as_str()).unwrap_or("?")
                    )),
                }
            }
            Some(s) => Look::Waiting(s.as_str().to_owned()),
            None => Look::Waiting("of unknown status".to_owned()),
        }
    })
    .await
}

/// Checks that a table can hold the failover records: `PK` (S, HASH), `SK` (S, RANGE), and
/// an index `GSI1` on `GSI1PK` (S, HASH) / `GSI1SK` (S, RANGE) projecting all attributes.
pub fn check_schema(desc: &TableDescription) -> Result<(), String> {
    let attr_type = |name: &str| {
        desc.attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().as_str().to_owned())
    };
    let describe_keys = |ks: &[KeySchemaElement]| {
        ks.iter()
            .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let keys_match = |ks: &[KeySchemaElement], hash: &str, range: &str| {
        ks.len() == 2
            && ks
                .iter()
                .any(|k| k.attribute_name() == hash && *k.key_type() == KeyType::Hash)
            && ks
                .iter()
                .any(|k| k.attribute_name() == range && *k.key_type() == KeyType::Range)
    };
    if !keys_match(desc.key_schema(), keys::PK, keys::SK) {
        return Err(format!(
            "key schema is [{}], expected [PK HASH, SK RANGE]",
            describe_keys(desc.key_schema())
        ));
    }
    for name in [keys::PK, keys::SK] {
        match attr_type(name) {
            Some(t) if t == "S" => {}
            Some(t) => return Err(format!("key attribute {name} has type {t}, expected S")),
            None => return Err(format!("key attribute {name} has no definition")),
        }
    }
    let Some(gsi) = desc
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(keys::GSI1))
    else {
        return Err(format!("it has no global secondary index {}", keys::GSI1));
    };
    if !keys_match(gsi.key_schema(), keys::GSI1PK, keys::GSI1SK) {
        return Err(format!(
            "index {} has key schema [{}], expected [GSI1PK HASH, GSI1SK RANGE]",
            keys::GSI1,
            describe_keys(gsi.key_schema())
        ));
    }
    for name in [keys::GSI1PK, keys::GSI1SK] {
        match attr_type(name) {
            Some(t) if t == "S" => {}
            Some(t) => return Err(format!("index attribute {name} has type {t}, expected S")),
            None => return Err(format!("index attribute {name} has no definition")),
        }
    }
    let projection = gsi.projection().and_then(|p| p.projection_type());
    if projection != Some(&ProjectionType::All) {
        return Err(format!(
            "index {} projects {}, expected ALL",
            keys::GSI1,
            projection.map(|p| p.as_str()).unwrap_or("nothing")
        ));
    }
    Ok(())
}

async fn ensure_ttl(client: &Client, table: &str) -> Result<(), SetupError> {
    let out = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|err| SetupError::DescribeTimeToLive {
            table: table.to_owned(),
            source: aws_error("DescribeTimeToLive", err),
        })?;
    let desc = out.time_to_live_description();
    let status = desc.and_then(|d| d.time_to_live_status());
    let attribute = desc.and_then(|d| d.attribute_name());
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
            if attribute == Some(keys::TTL_ATTRIBUTE) {
                return Ok(());
            }
            return Err(SetupError::WrongSchema {
                table: table.to_owned(),
                problem: format!(
                    "TTL is on for attribute {}, expected {}",
                    attribute.unwrap_or("?"),
                    keys::TTL_ATTRIBUTE
                ),
            });
        }
        Some(TimeToLiveStatus::Disabling) => {
            tracing::warn!(table, "TTL is being disabled; trying to turn it on again");
        }
        _ => {}
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(keys::TTL_ATTRIBUTE)
        .build()
        .expect("enabled and attribute name are set");
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|err| SetupError::UpdateTimeToLive {
            table: table.to_owned(),
            attribute: keys::TTL_ATTRIBUTE,
            source: aws_error("UpdateTimeToLive", err),
        })?;
    tracing::info!(table, attribute = keys::TTL_ATTRIBUTE, "turned on TTL");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription;

    fn good() -> aws_sdk_dynamodb::types::builders::TableDescriptionBuilder {
        TableDescription::builder()
            .attribute_definitions(string_attribute("PK"))
            .attribute_definitions(string_attribute("SK"))
            .attribute_definitions(string_attribute("GSI1PK"))
            .attribute_definitions(string_attribute("GSI1SK"))
            .key_schema(key_element("PK", KeyType::Hash))
            .key_schema(key_element("SK", KeyType::Range))
    }

    fn gsi(projection: ProjectionType) -> GlobalSecondaryIndexDescription {
        GlobalSecondaryIndexDescription::builder()
            .index_name("GSI1")
            .key_schema(key_element("GSI1PK", KeyType::Hash))
            .key_schema(key_element("GSI1SK", KeyType::Range))
            .projection(Projection::builder().projection_type(projection).build())
            .build()
    }

    #[test]
    fn the_expected_schema_passes() {
        assert_eq!(
            check_schema(
                &good()
                    .global_secondary_indexes(gsi(ProjectionType::All))
                    .build()
            ),
            Ok(())
        );
    }

    #[test]
    fn wrong_schemas_are_named() {
        let only_hash = TableDescription::builder()
            .attribute_definitions(string_attribute("id"))
            .key_schema(key_element("id", KeyType::Hash))
            .build();
        let e = check_schema(&only_hash).unwrap_err();
        assert_eq!(e, "key schema is [id HASH], expected [PK HASH, SK RANGE]");

        let e = check_schema(&good().build()).unwrap_err();
        assert!(e.contains("no global secondary index GSI1"), "{e}");

        let e = check_schema(
            &good()
                .global_secondary_indexes(gsi(ProjectionType::KeysOnly))
                .build(),
        )
        .unwrap_err();
        assert!(e.contains("projects KEYS_ONLY"), "{e}");

        let numeric_pk = TableDescription::builder()
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("PK")
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(string_attribute("SK"))
            .key_schema(key_element("PK", KeyType::Hash))
            .key_schema(key_element("SK", KeyType::Range))
            .build();
        assert!(
            check_schema(&numeric_pk)
                .unwrap_err()
                .contains("PK has type N")
        );
    }
}
