//! Encoding records as attribute maps: the `av_*` attribute constructors, the item builder
//! the records' `to_item` use, and the map attributes (`timings`, `originalReplicas`).

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

use super::{Item, Timings, attr};
use crate::keys;

/// `S` attribute.
pub fn av_s(s: impl Into<String>) -> AttributeValue {
    AttributeValue::S(s.into())
}

/// `N` attribute from an integer.
pub fn av_n(n: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// `N` attribute: milliseconds since the Unix epoch.
pub fn av_ms(at: Timestamp) -> AttributeValue {
    av_n(at.as_millisecond())
}

/// `BOOL` attribute.
pub fn av_bool(b: bool) -> AttributeValue {
    AttributeValue::Bool(b)
}

/// An item under construction: keys first, then one attribute per call.
pub(super) struct Builder(pub(super) Item);

impl Builder {
    pub(super) fn new(key: (String, String)) -> Self {
        let mut item = Item::new();
        item.insert(keys::PK.into(), av_s(key.0));
        item.insert(keys::SK.into(), av_s(key.1));
        Self(item)
    }
    pub(super) fn s(mut self, attribute: &str, v: impl Into<String>) -> Self {
        self.0.insert(attribute.into(), av_s(v));
        self
    }
    pub(super) fn opt_s(self, attribute: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.s(attribute, v),
            None => self,
        }
    }
    pub(super) fn n(mut self, attribute: &str, v: impl fmt::Display) -> Self {
        self.0.insert(attribute.into(), av_n(v));
        self
    }
    pub(super) fn opt_n(self, attribute: &str, v: Option<impl fmt::Display>) -> Self {
        match v {
            Some(v) => self.n(attribute, v),
            None => self,
        }
    }
    /// A string set; left out when empty (DynamoDB has no empty sets).
    pub(super) fn ss(mut self, attribute: &str, values: &[String]) -> Self {
        if !values.is_empty() {
            self.0
                .insert(attribute.into(), AttributeValue::Ss(values.to_vec()));
        }
        self
    }
    pub(super) fn ms(mut self, attribute: &str, at: Timestamp) -> Self {
        self.0.insert(attribute.into(), av_ms(at));
        self
    }
    pub(super) fn opt_ms(self, attribute: &str, at: Option<Timestamp>) -> Self {
        match at {
            Some(at) => self.ms(attribute, at),
            None => self,
        }
    }
    pub(super) fn bool(mut self, attribute: &str, b: bool) -> Self {
        self.0.insert(attribute.into(), av_bool(b));
        self
    }
    pub(super) fn raw(mut self, attribute: &str, v: AttributeValue) -> Self {
        self.0.insert(attribute.into(), v);
        self
    }
}

/// The `timings` map attribute.
pub fn timings_to_av(t: &Timings) -> AttributeValue {
    let mut m = Item::new();
    if let Some(total) = t.total_ms {
        m.insert(attr::TOTAL_MS.into(), av_n(total));
    }
    if let Some(down) = t.downtime_ms {
        m.insert(attr::DOWNTIME_MS.into(), av_n(down));
    }
    if !t.stages_ms.is_empty() {
        let stages = t
            .stages_ms
            .iter()
            .map(|(k, v)| (k.clone(), av_n(v)))
            .collect();
        m.insert(attr::STAGES_MS.into(), AttributeValue::M(stages));
    }
    AttributeValue::M(m)
}

/// The `originalReplicas` map attribute.
pub fn replicas_to_av(replicas: &BTreeMap<String, u32>) -> AttributeValue {
    AttributeValue::M(replicas.iter().map(|(k, v)| (k.clone(), av_n(v))).collect())
}
