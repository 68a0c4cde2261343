//! Automatic failover, the decisions (`spec.autoFailover`): whether a standby cluster's agent
//! is armed for a group, is counting down on the active cluster's unrenewed serving lease, or
//! starts a forced failover to its own cluster now. Pure; the actor that reads and acts is
//! the agent runtime's automatic failover actor (`runtime/auto.rs`).
//!
//! The count is the one of the force path ([`failover_messages::protocol::lease`]): the active
//! cluster's lease record (`CLUSTER#<name>`), timed on this agent's monotonic clock from its
//! first read of the record's current version, never a comparison of wall clocks. A standby
//! fires when that version has stood for `after` and
//!
//! * the spec is valid and `after` is at least twice the agents' lease (`2·L`): a shorter
//!   one would act on a single slow renewal;
//! * the group is registered, this cluster is not its active cluster, it is not suspended
//!   and no operation is in flight;
//! * this cluster's own serving lease is live: a standby cut off from DynamoDB sees every
//!   other lease stand still and must never take over on that;
//! * the active cluster's record does not say it keeps serving the group without DynamoDB.
//!
//! At the moment it would fire, two more checks read more ([`fire_check`]): no automatic
//! failover of the group started within `cooldown`, and with `targets` listed, this cluster
//! is listed and no cluster before it (other than the lost one) has a live agent. The start
//! itself is a forced operation through the same `decide_start` and conditional write as
//! every front end: with several standbys one write wins and the others' lose quietly. The
//! forced target then waits the lost side's lease out before it promotes, so the lost side
//! has fenced itself first.

use std::time::Duration;

use failover_messages::crd::AutoFailover;
use failover_messages::protocol::lease::LeaseTerms;
use failover_messages::records::GroupState;
use jiff::{SignedDuration, Timestamp};

/// Condition type on a FailoverGroup with automatic failover enabled.
pub const COND_AUTO_FAILOVER: &str = "AutoFailover";

/// The parsed settings of an enabled `spec.autoFailover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long the active cluster's lease must stand still.
    pub after: Duration,
    /// No second automatic failover within this long of the last one.
    pub cooldown: Duration,
    /// Preferred takers, in order (empty: any standby).
    pub targets: Vec<String>,
}

impl Settings {
    /// The settings of `af` when enabled and parseable (`Err`: why not armed).
    pub fn of(af: &AutoFailover, lease: LeaseTerms) -> Result<Option<Settings>, NotArmed> {
        if !af.enabled {
            return Ok(None);
        }
        let after = af
            .after()
            .map_err(|e| NotArmed::new("SpecInvalid", format!("{}: {}", e.field, e.reason)))?;
        let cooldown = af
            .cooldown()
            .map_err(|e| NotArmed::new("SpecInvalid", format!("{}: {}", e.field, e.reason)))?;
        let min = lease.duration * 2;
        if after < min {
            return Err(NotArmed::new(
                "AfterTooShort",
                format!(
                    "spec.autoFailover.after ({}) is shorter than twice the agents' lease \
                     duration ({}): one slow renewal would look like a lost cluster",
                    human(after),
                    human(min)
                ),
            ));
        }
        Ok(Some(Settings {
            after,
            cooldown,
            targets: af.targets.clone(),
        }))
    }
}

/// Why a group is not armed: the `AutoFailover=False` condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotArmed {
    /// Condition reason (CamelCase).
    pub reason: &'static str,
    /// Condition message.
    pub message: String,
    /// When it is worth asking again (the cooldown's end), if known.
    pub retry_after: Option<Duration>,
}

impl NotArmed {
    /// Not armed for `reason`, saying `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What this cluster observed for one group at one tick.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// This cluster.
    pub cluster: &'a str,
    /// The group state (`None`: not registered).
    pub state: Option<&'a GroupState>,
    /// This cluster's own serving lease is live.
    pub own_lease_live: bool,
    /// How long the active cluster's lease record has kept its version (`None`: not read).
    pub active_unchanged: Option<Duration>,
    /// The active cluster's record says it keeps serving this group without DynamoDB.
    pub active_keeps_serving: bool,
    /// This agent's lease terms (the holder renews every `L/3`).
    pub lease: LeaseTerms,
}

/// The verdict for one group at one tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not armed (see the reason).
    Off(NotArmed),
    /// Armed: the active cluster's lease is renewed as it should be.
    Watching {
        /// The active cluster.
        active: String,
    },
    /// Armed and counting: the active cluster's lease missed its renewals.
    Counting {
        /// The active cluster.
        active: String,
        /// How long its record has stood still.
        unchanged: Duration,
        /// How much longer until this cluster acts, unless it is renewed.
        left: Duration,
    },
    /// Act now (after [`fire_check`]).
    Fire {
        /// The active cluster, lost.
        active: String,
        /// How long its record has stood still.
        unchanged: Duration,
    },
}

impl Verdict {
    /// True when armed (watching, counting or firing).
    pub fn armed(&self) -> bool {
        !matches!(self, Self::Off(_))
    }
}

/// The verdict of the module docs for one group with `settings`.
pub fn decide(settings: &Settings, o: &Observed<'_>) -> Verdict {
    let off = |reason, message: String| Verdict::Off(NotArmed::new(reason, message));
    let Some(state) = o.state else {
        return off(
            "NotRegistered",
            "the group is not registered (failoverctl register)".to_owned(),
        );
    };
    let active = state.active_cluster.clone();
    if active == o.cluster {
        return off(
            "ActiveHere",
            format!("{} is the active cluster; a standby watches it", o.cluster),
        );
    }
    if state.suspended {
        return off(
            "Suspended",
            "the group is suspended (failoverctl resume)".to_owned(),
        );
    }
    if let Some(op) = &state.op_id {
        return off("OperationInFlight", format!("operation {op} is in flight"));
    }
    if !o.own_lease_live {
        return off(
            "OwnLeaseNotLive",
            format!(
                "{}'s own serving lease is not live (DynamoDB unreachable?): a cut-off standby \
                 never takes over",
                o.cluster
            ),
        );
    }
    if o.active_keeps_serving {
        return off(
            "ActiveKeepsServing",
            format!(
                "{active} keeps serving the group without DynamoDB (onCoordinationLoss: \
                 KeepServing): its lease running out proves nothing"
            ),
        );
    }
    let Some(unchanged) = o.active_unchanged else {
        return Verdict::Watching { active };
    };
    if unchanged >= settings.after {
        return Verdict::Fire { active, unchanged };
    }
    // The holder renews every L/3: two missed renewals start the visible count.
    if unchanged > o.lease.renew_every() * 2 {
        return Verdict::Counting {
            active,
            unchanged,
            left: settings.after - unchanged,
        };
    }
    Verdict::Watching { active }
}

/// What else was read when a group's verdict is [`Verdict::Fire`].
#[derive(Clone, Debug, Default)]
pub struct FireInputs {
    /// When the latest automatic failover of the group started (`None`: none on record).
    pub last_auto: Option<Timestamp>,
    /// The clusters that have a live agent (heartbeat not expired), of those in `targets`.
    pub live_targets: Vec<String>,
}

/// Whether a [`Verdict::Fire`] of `cluster` for a group whose lost active cluster is `active`
/// may go ahead at `now`: the cooldown and the preference order (`Err`: why not, as a
/// condition reason and message).
pub fn fire_check(
    settings: &Settings,
    cluster: &str,
    active: &str,
    inputs: &FireInputs,
    now: Timestamp,
) -> Result<(), NotArmed> {
    if let Some(last) = inputs.last_auto {
        let since = now.duration_since(last);
        let cooldown = SignedDuration::try_from(settings.cooldown).unwrap_or(SignedDuration::MAX);
        if since < cooldown {
            let left = (cooldown - since).unsigned_abs();
            return Err(NotArmed {
                retry_after: Some(left),
                ..NotArmed::new(
                    "CoolingDown",
                    format!(
                        "an automatic failover of the group started at {last}; no other before \
                         the cooldown ({}) ends, in {}",
                        human(settings.cooldown),
                        human(left)
                    ),
                )
            });
        }
    }
    if settings.targets.is_empty() {
        return Ok(());
    }
    let Some(mine) = settings.targets.iter().position(|t| t == cluster) else {
        return Err(NotArmed::new(
            "NotATarget",
            format!("{cluster} is not in spec.autoFailover.targets"),
        ));
    };
    if let Some(first) = settings.targets[..mine]
        .iter()
        .find(|t| *t != active && inputs.live_targets.contains(t))
    {
        return Err(NotArmed::new(
            "PreferredTargetAlive",
            format!("{first} comes first in spec.autoFailover.targets and its agent is alive"),
        ));
    }
    Ok(())
}

/// The forced operation's reason: the stale lease and since when.
pub fn reason(active: &str, unchanged: Duration, now: Timestamp) -> String {
    let since = SignedDuration::try_from(unchanged)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|| "earlier".to_owned());
    format!(
        "automatic failover: {active}'s serving lease unrenewed since about {since} ({} ago)",
        human(unchanged)
    )
}

/// `requestedBy` of an automatic operation started by `cluster`.
pub fn requested_by(cluster: &str) -> String {
    format!("auto:{cluster}")
}

/// True when `requested_by` names an automatic operation.
pub fn is_automatic(requested_by: &str) -> bool {
    requested_by.starts_with("auto:")
}

/// A duration rounded to what a person reads (`1m 30s`, `450ms`).
pub fn human(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    SignedDuration::try_from(rounded)
        .map(|s| format!("{s:#}"))
        .unwrap_or_else(|_| format!("{rounded:?}"))
}

#[cfg(test)]
mod tests;
