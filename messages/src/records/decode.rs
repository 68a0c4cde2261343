//! Decoding attribute maps: [`DecodeError`] and its [`Problem`], and the typed reader the
//! records' `from_item` use, which names the record, key and attribute in every error.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

use super::{Item, Timings, attr};
use crate::keys::{self, GroupRef};

/// What is wrong with one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The attribute is absent.
    Missing,
    /// The attribute has another DynamoDB type.
    WrongType {
        /// Type the record needs (`S`, `N`, `BOOL`, `M`).
        expected: &'static str,
        /// Type found.
        found: &'static str,
    },
    /// The value does not parse or is out of range.
    BadValue(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("is missing"),
            Problem::WrongType { expected, found } => {
                write!(f, "has type {found}, expected {expected}")
            }
            Problem::BadValue(why) => write!(f, "has a bad value: {why}"),
        }
    }
}

/// An item from the table that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record} record {key}: attribute `{attribute}` {problem}")]
pub struct DecodeError {
    /// Kind of record (`group state`, `operation`, …).
    pub record: &'static str,
    /// `PK/SK` of the item, or `(no key)`.
    pub key: String,
    /// Attribute name (a dotted path inside maps).
    pub attribute: String,
    /// What is wrong.
    pub problem: Problem,
}

fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(80).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

/// Typed reads from one item, producing [`DecodeError`]s that name the record.
pub(super) struct Reader<'a> {
    record: &'static str,
    key: String,
    prefix: String,
    item: &'a Item,
}

impl<'a> Reader<'a> {
    pub(super) fn new(record: &'static str, item: &'a Item) -> Self {
        let key = match (item.get(keys::PK), item.get(keys::SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                let mut k = format!("{pk}/{sk}");
                if k.len() > 200 {
                    k = shorten(&k);
                }
                k
            }
            _ => "(no key)".to_owned(),
        };
        Self {
            record,
            key,
            prefix: String::new(),
            item,
        }
    }

    pub(super) fn nested(&self, attribute: &str, item: &'a Item) -> Reader<'a> {
        Reader {
            record: self.record,
            key: self.key.clone(),
            prefix: format!("{}{attribute}.", self.prefix),
            item,
        }
    }

    pub(super) fn err(&self, attribute: &str, problem: Problem) -> DecodeError {
        DecodeError {
            record: self.record,
            key: self.key.clone(),
            attribute: format!("{}{attribute}", self.prefix),
            problem,
        }
    }

    pub(super) fn get(&self, attribute: &str) -> Option<&'a AttributeValue> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(v) => Some(v),
        }
    }

    pub(super) fn wrong(
        &self,
        attribute: &str,
        expected: &'static str,
        found: &AttributeValue,
    ) -> DecodeError {
        self.err(
            attribute,
            Problem::WrongType {
                expected,
                found: type_name(found),
            },
        )
    }

    pub(super) fn opt_s(&self, attribute: &str) -> Result<Option<&'a str>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(attribute, "S", v)),
        }
    }

    pub(super) fn s(&self, attribute: &str) -> Result<&'a str, DecodeError> {
        self.opt_s(attribute)?
            .ok_or_else(|| self.err(attribute, Problem::Missing))
    }

    pub(super) fn opt_string(&self, attribute: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_s(attribute)?.map(str::to_owned))
    }

    /// A string that must be non-empty and satisfy `check`.
    pub(super) fn checked(
        &self,
        attribute: &str,
        check: impl Fn(&str) -> Result<(), keys::KeyError>,
    ) -> Result<String, DecodeError> {
        let s = self.s(attribute)?;
        check(s).map_err(|e| self.err(attribute, Problem::BadValue(e.to_string())))?;
        Ok(s.to_owned())
    }

    pub(super) fn parsed<T: FromStr>(&self, attribute: &str) -> Result<T, DecodeError>
    where
        T::Err: fmt::Display,
    {
        let s = self.s(attribute)?;
        s.parse()
            .map_err(|e: T::Err| self.err(attribute, Problem::BadValue(e.to_string())))
    }

    pub(super) fn opt_number<T: FromStr>(
        &self,
        attribute: &str,
        what: &str,
    ) -> Result<Option<T>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| {
                self.err(
                    attribute,
                    Problem::BadValue(format!("{} is not {what}", shorten(n))),
                )
            }),
            Some(v) => Err(self.wrong(attribute, "N", v)),
        }
    }

    pub(super) fn number<T: FromStr>(&self, attribute: &str, what: &str) -> Result<T, DecodeError> {
        self.opt_number(attribute, what)?
            .ok_or_else(|| self.err(attribute, Problem::Missing))
    }

    pub(super) fn u64(&self, attribute: &str) -> Result<u64, DecodeError> {
        self.number(attribute, "an unsigned 64-bit integer")
    }

    pub(super) fn opt_u64(&self, attribute: &str) -> Result<Option<u64>, DecodeError> {
        self.opt_number(attribute, "an unsigned 64-bit integer")
    }

    pub(super) fn opt_bool(&self, attribute: &str) -> Result<Option<bool>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(attribute, "BOOL", v)),
        }
    }

    pub(super) fn opt_millis(&self, attribute: &str) -> Result<Option<Timestamp>, DecodeError> {
        let Some(ms) = self.opt_number::<i64>(attribute, "an integer number of milliseconds")?
        else {
            return Ok(None);
        };
        Timestamp::from_millisecond(ms).map(Some).map_err(|_| {
            self.err(
                attribute,
                Problem::BadValue(format!("{ms} ms since the Unix epoch is out of range")),
            )
        })
    }

    pub(super) fn millis(&self, attribute: &str) -> Result<Timestamp, DecodeError> {
        self.opt_millis(attribute)?
            .ok_or_else(|| self.err(attribute, Problem::Missing))
    }

    pub(super) fn seconds(&self, attribute: &str) -> Result<Timestamp, DecodeError> {
        let s: i64 = self.number(attribute, "an integer number of seconds")?;
        Timestamp::from_second(s).map_err(|_| {
            self.err(
                attribute,
                Problem::BadValue(format!("{s} s since the Unix epoch is out of range")),
            )
        })
    }

    /// A string set (`SS`); absent is empty.
    pub(super) fn opt_string_set(&self, attribute: &str) -> Result<Vec<String>, DecodeError> {
        match self.get(attribute) {
            None => Ok(Vec::new()),
            Some(AttributeValue::Ss(v)) => {
                let mut v = v.clone();
                v.sort();
                Ok(v)
            }
            Some(v) => Err(self.wrong(attribute, "SS", v)),
        }
    }

    pub(super) fn opt_map(&self, attribute: &str) -> Result<Option<&'a Item>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(v) => Err(self.wrong(attribute, "M", v)),
        }
    }

    pub(super) fn group(&self, attribute: &str) -> Result<GroupRef, DecodeError> {
        self.parsed(attribute)
    }
}

fn number_map<T: FromStr>(
    r: &Reader<'_>,
    m: &Item,
    what: &str,
) -> Result<BTreeMap<String, T>, DecodeError> {
    let mut out = BTreeMap::new();
    for k in m.keys() {
        out.insert(k.clone(), r.number(k, what)?);
    }
    Ok(out)
}

pub(super) fn decode_timings(r: &Reader<'_>) -> Result<Timings, DecodeError> {
    let Some(m) = r.opt_map(attr::TIMINGS)? else {
        return Ok(Timings::default());
    };
    let t = r.nested(attr::TIMINGS, m);
    let stages_ms = match t.opt_map(attr::STAGES_MS)? {
        Some(sm) => {
            let sr = t.nested(attr::STAGES_MS, sm);
            number_map(&sr, sm, "an unsigned 64-bit integer")?
        }
        None => BTreeMap::new(),
    };
    Ok(Timings {
        total_ms: t.opt_u64(attr::TOTAL_MS)?,
        downtime_ms: t.opt_u64(attr::DOWNTIME_MS)?,
        stages_ms,
    })
}

pub(super) fn decode_replicas(r: &Reader<'_>) -> Result<BTreeMap<String, u32>, DecodeError> {
    match r.opt_map(attr::ORIGINAL_REPLICAS)? {
        Some(m) => {
            let mr = r.nested(attr::ORIGINAL_REPLICAS, m);
            number_map(&mr, m, "an unsigned 32-bit integer")
        }
        None => Ok(BTreeMap::new()),
    }
}
