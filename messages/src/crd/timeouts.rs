//! Per-stage time limits of a `FailoverGroup` (`spec.timeouts`), their defaults, and the
//! duration syntax (`90s`, `5m`, `1h30m`) with its parser.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// The stages a timeout can be set for, in CONSISTENCY order (UPTIME runs the same stages,
/// target first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeoutStage {
    /// Stage 1: validation, lock acquisition, consistent view (both sides).
    Initialization,
    /// Stage 2: network off, Flux suspended, workloads scaled to 0, pods gone (source).
    SourceShutdown,
    /// Stage 3: volumes demoted to Secondary and marked ready for promotion (source).
    VolumeDemotion,
    /// Stage 4: waiting for the handoff, promotion and verification of volumes (target).
    VolumePromotion,
    /// Stage 5: workloads up, Flux resumed, ready, network on (target).
    TargetActivation,
    /// Stage 6: global state, history, lock release, status (both sides).
    Completion,
}

impl TimeoutStage {
    /// Every stage, in order.
    pub const ALL: [TimeoutStage; 6] = [
        Self::Initialization,
        Self::SourceShutdown,
        Self::VolumeDemotion,
        Self::VolumePromotion,
        Self::TargetActivation,
        Self::Completion,
    ];

    /// The field name under `spec.timeouts`.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Initialization => "initialization",
            Self::SourceShutdown => "sourceShutdown",
            Self::VolumeDemotion => "volumeDemotion",
            Self::VolumePromotion => "volumePromotion",
            Self::TargetActivation => "targetActivation",
            Self::Completion => "completion",
        }
    }

    /// The limit used when the field is not set.
    pub fn default_timeout(self) -> Duration {
        match self {
            Self::Initialization => Duration::from_secs(60),
            Self::SourceShutdown => Duration::from_secs(10 * 60),
            Self::VolumeDemotion => Duration::from_secs(10 * 60),
            Self::VolumePromotion => Duration::from_secs(15 * 60),
            Self::TargetActivation => Duration::from_secs(10 * 60),
            Self::Completion => Duration::from_secs(60),
        }
    }
}

impl fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// Per-stage time limits, as duration strings: one or more `<integer><unit>` parts with unit
/// `ms`, `s`, `m` or `h` (e.g. `90s`, `5m`, `1h30m`). Unset fields use the defaults below;
/// read them through [`StageTimeouts::get`] or [`StageTimeouts::resolve`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageTimeouts {
    /// Stage 1, validation and lock acquisition (both sides). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initialization: Option<String>,
    /// Stage 2, network off, Flux suspended, workloads scaled to zero, pods gone (source).
    /// Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub source_shutdown: Option<String>,
    /// Stage 3, volumes demoted to Secondary and marked ready for promotion (source).
    /// Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub volume_demotion: Option<String>,
    /// Stage 4, waiting for the handoff, then promoting and verifying volumes (target).
    /// Default `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub volume_promotion: Option<String>,
    /// Stage 5, workloads scaled up, Flux resumed, workloads ready, network on (target).
    /// Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub target_activation: Option<String>,
    /// Stage 6, global state, history, lock release (both sides). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub completion: Option<String>,
}

/// The per-stage limits with defaults applied and strings parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedTimeouts {
    /// Stage 1.
    pub initialization: Duration,
    /// Stage 2.
    pub source_shutdown: Duration,
    /// Stage 3.
    pub volume_demotion: Duration,
    /// Stage 4.
    pub volume_promotion: Duration,
    /// Stage 5.
    pub target_activation: Duration,
    /// Stage 6.
    pub completion: Duration,
}

impl ResolvedTimeouts {
    /// The limit of one stage.
    pub fn get(&self, stage: TimeoutStage) -> Duration {
        match stage {
            TimeoutStage::Initialization => self.initialization,
            TimeoutStage::SourceShutdown => self.source_shutdown,
            TimeoutStage::VolumeDemotion => self.volume_demotion,
            TimeoutStage::VolumePromotion => self.volume_promotion,
            TimeoutStage::TargetActivation => self.target_activation,
            TimeoutStage::Completion => self.completion,
        }
    }
}

impl Default for ResolvedTimeouts {
    fn default() -> Self {
        StageTimeouts::default()
            .resolve()
            .expect("the defaults are valid durations")
    }
}

impl StageTimeouts {
    fn raw(&self, stage: TimeoutStage) -> Option<&str> {
        match stage {
            TimeoutStage::Initialization => self.initialization.as_deref(),
            TimeoutStage::SourceShutdown => self.source_shutdown.as_deref(),
            TimeoutStage::VolumeDemotion => self.volume_demotion.as_deref(),
            TimeoutStage::VolumePromotion => self.volume_promotion.as_deref(),
            TimeoutStage::TargetActivation => self.target_activation.as_deref(),
            TimeoutStage::Completion => self.completion.as_deref(),
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        TimeoutStage::ALL.iter().all(|s| self.raw(*s).is_none())
    }

    /// The limit of one stage: the parsed field, or the stage's default when unset.
    /// The error names the field (`spec.timeouts.<stage>`) and the offending value.
    pub fn get(&self, stage: TimeoutStage) -> Result<Duration, DurationError> {
        match self.raw(stage) {
            None => Ok(stage.default_timeout()),
            Some(raw) => {
                parse_positive_duration(&format!("spec.timeouts.{}", stage.field_name()), raw)
            }
        }
    }

    /// Every stage's limit; fails on the first invalid field (in stage order).
    pub fn resolve(&self) -> Result<ResolvedTimeouts, DurationError> {
        Ok(ResolvedTimeouts {
            initialization: self.get(TimeoutStage::Initialization)?,
            source_shutdown: self.get(TimeoutStage::SourceShutdown)?,
            volume_demotion: self.get(TimeoutStage::VolumeDemotion)?,
            volume_promotion: self.get(TimeoutStage::VolumePromotion)?,
            target_activation: self.get(TimeoutStage::TargetActivation)?,
            completion: self.get(TimeoutStage::Completion)?,
        })
    }
}

/// A duration field that does not parse, or is zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {value:?} in `{field}`: {reason} (expected e.g. \"90s\", \"5m\", \"1h30m\"; units ms, s, m, h)"
)]
pub struct DurationError {
    /// Path of the field, e.g. `spec.timeouts.sourceShutdown`.
    pub field: String,
    /// The value found.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a duration string (`90s`, `5m`, `1h30m`, `250ms`), the syntax of
/// [`DURATION_PATTERN`]; `field` only labels the error.
pub fn parse_duration(field: &str, value: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        field: field.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let (unit_len, unit) = if rest.starts_with("ms") {
            (2, Duration::from_millis(1))
        } else if rest.starts_with('s') {
            (1, Duration::from_secs(1))
        } else if rest.starts_with('m') {
            (1, Duration::from_secs(60))
        } else if rest.starts_with('h') {
            (1, Duration::from_secs(3600))
        } else {
            return Err(err("expected a unit (ms, s, m or h) after the number"));
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

pub(super) fn parse_positive_duration(field: &str, value: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(field, value)?;
    if d.is_zero() {
        return Err(DurationError {
            field: field.to_owned(),
            value: value.to_owned(),
            reason: "must be greater than zero".to_owned(),
        });
    }
    Ok(d)
}
