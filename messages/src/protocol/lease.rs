//! The serving lease: when a cluster must stop serving on its own, and when another cluster
//! may be sure it has.
//!
//! Every agent holds a lease on its cluster's record `CLUSTERS` / `CLUSTER#<name>` (the
//! heartbeat), renewed every `L/3` ([`LeaseTerms::renew_every`]). Two clocks decide, never a
//! comparison of wall clocks across machines:
//!
//! * **The holder** measures its lease on its own monotonic clock from the moment it *sent*
//!   the last renewal that succeeded ([`HeldLease`]). The write landed after that moment, so
//!   anyone who read it read it later still. When `3L/4` has passed since that send
//!   ([`LeaseTerms::holder_fences_after`]), the holder fences every group whose policy is
//!   `Fence` (`spec.onCoordinationLoss`) and it is active for; it never re-activates on its
//!   own.
//! * **An observer** (the target of a forced operation) tracks the record's version (its
//!   `lastSeen`) on *its* monotonic clock from its first read of that version
//!   ([`LeaseWatch`]). Once the same version has been in place for
//!   `L·(1+ε) + L/4` ([`LeaseTerms::observer_waits`]), the holder's lease is certainly over
//!   and, under `Fence`, its side is down.
//!
//! `ε` ([`DRIFT`]) bounds how much faster or slower one machine's monotonic clock may run
//! than another's: 5 %, far beyond what NTP-disciplined or even free-running quartz clocks
//! drift (tens of parts per million). What remains between the holder starting to fence and
//! the earliest moment an observer acts is the *fence budget* ([`LeaseTerms::fence_budget`]):
//! about `0.45 L` of real time (13.5 s for the default 30 s), within which the holder's
//! cluster must have stopped its pods and demoted its volumes. Raise `L` for workloads whose
//! pods take longer to stop.
//!
//! The lease says nothing about a process that is dead and not restarted: it cannot fence.
//! Kubernetes restarts a crashed or hung agent (the deployment's liveness probe restarts it
//! well within `L`), and the restarted agent fences before it does anything else.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::records::Heartbeat;

/// The assumed bound on the rate difference of two machines' monotonic clocks (`ε`).
pub const DRIFT: f64 = 0.05;

/// The lease duration an agent uses unless told otherwise.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

/// The timings that follow from one lease duration `L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTerms {
    /// `L`.
    pub duration: Duration,
}

impl LeaseTerms {
    /// Terms for a lease of `duration`.
    pub fn new(duration: Duration) -> Self {
        Self { duration }
    }

    /// How often the holder renews: `L/3`, so one failed renewal never costs the lease.
    pub fn renew_every(self) -> Duration {
        self.duration / 3
    }

    /// How long after sending its last successful renewal the holder fences: `3L/4` (two
    /// renewals in a row failed or hung).
    pub fn holder_fences_after(self) -> Duration {
        self.duration * 3 / 4
    }

    /// How long an observer must see one version unchanged, from its first read of it,
    /// before the holder's lease is certainly over: `L·(1+ε) + L/4`.
    pub fn observer_waits(self) -> Duration {
        self.duration.mul_f64(1.0 + DRIFT) + self.duration / 4
    }

    /// The least real time between the holder starting to fence and an observer acting on
    /// the lease's end, with both clocks off by `ε` in the worst directions.
    pub fn fence_budget(self) -> Duration {
        let observer = self.observer_waits().div_f64(1.0 + DRIFT);
        let holder = self.holder_fences_after().mul_f64(1.0 + DRIFT);
        observer.saturating_sub(holder)
    }

    /// The heartbeat record's TTL: the lease duration (readers that only want to know
    /// whether an agent is alive compare its `expiresAt` with their clock).
    pub fn record_ttl(self) -> Duration {
        self.duration
    }
}

impl Default for LeaseTerms {
    fn default() -> Self {
        Self::new(DEFAULT_DURATION)
    }
}

/// The holder's view of its own lease.
#[derive(Clone, Debug)]
pub struct HeldLease {
    terms: LeaseTerms,
    last_sent: Option<Instant>,
}

/// Where the holder's lease stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Held for at least this much longer.
    Live(Duration),
    /// No renewal ever succeeded in this process.
    NeverHeld,
    /// Ran out this long ago.
    Lost(Duration),
}

impl Holding {
    /// True when the holder must not serve on the strength of its lease.
    pub fn is_lost(self) -> bool {
        !matches!(self, Self::Live(_))
    }
}

impl HeldLease {
    /// A lease not yet held.
    pub fn new(terms: LeaseTerms) -> Self {
        Self {
            terms,
            last_sent: None,
        }
    }

    /// The terms.
    pub fn terms(&self) -> LeaseTerms {
        self.terms
    }

    /// A renewal sent at `sent` succeeded. A late answer to an older send never moves the
    /// lease back.
    pub fn renewed(&mut self, sent: Instant) {
        if self.last_sent.is_none_or(|last| sent > last) {
            self.last_sent = Some(sent);
        }
    }

    /// Where the lease stands at `now`.
    pub fn holding(&self, now: Instant) -> Holding {
        let Some(sent) = self.last_sent else {
            return Holding::NeverHeld;
        };
        let limit = self.terms.holder_fences_after();
        let held = now.saturating_duration_since(sent);
        if held < limit {
            Holding::Live(limit - held)
        } else {
            Holding::Lost(held - limit)
        }
    }
}

/// What an observer saw of one cluster's lease record, and since when (its clock).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sighting {
    /// The record's version (`lastSeen`); `None` while there is no record.
    version: Option<Timestamp>,
    /// The holder's lease duration as the record states it (else the observer's own).
    duration: Duration,
    /// The observer's first read of this version.
    first_seen: Instant,
    /// The groups the holder keeps serving when it loses DynamoDB.
    keep_serving: Vec<String>,
}

/// What an observer may conclude about a cluster's lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerLease {
    /// Never read.
    Unknown,
    /// Possibly still held: certainly over after this much longer, unless renewed.
    Live(Duration),
    /// Certainly over: the holder has stopped serving every group it fences.
    Over,
}

/// An observer's record of other clusters' leases, each version timed on the observer's
/// monotonic clock from its first read.
#[derive(Clone, Debug)]
pub struct LeaseWatch {
    own: LeaseTerms,
    peers: BTreeMap<String, Sighting>,
}

impl LeaseWatch {
    /// A watch that assumes `own` terms for a cluster with no record.
    pub fn new(own: LeaseTerms) -> Self {
        Self {
            own,
            peers: BTreeMap::new(),
        }
    }

    /// Records a read of `cluster`'s lease record (`None`: no record) made at `now`.
    pub fn observe(&mut self, cluster: &str, record: Option<&Heartbeat>, now: Instant) {
        let version = record.map(|h| h.last_seen);
        let duration = record
            .and_then(Heartbeat::lease_duration)
            .unwrap_or(self.own.duration);
        let keep_serving = record.map(|h| h.keep_serving.clone()).unwrap_or_default();
        match self.peers.get_mut(cluster) {
            Some(s) if s.version == version => {}
            _ => {
                self.peers.insert(
                    cluster.to_owned(),
                    Sighting {
                        version,
                        duration,
                        first_seen: now,
                        keep_serving,
                    },
                );
            }
        }
    }

    /// What may be concluded about `cluster`'s lease at `now`.
    pub fn peer(&self, cluster: &str, now: Instant) -> PeerLease {
        let Some(s) = self.peers.get(cluster) else {
            return PeerLease::Unknown;
        };
        let wait = LeaseTerms::new(s.duration).observer_waits();
        let seen = now.saturating_duration_since(s.first_seen);
        if seen >= wait {
            PeerLease::Over
        } else {
            PeerLease::Live(wait - seen)
        }
    }

    /// Forgets what was read of `cluster`: the next read starts its count afresh (an
    /// observer that could not read for a while must not count the gap as standing still).
    pub fn forget(&mut self, cluster: &str) {
        self.peers.remove(cluster);
    }

    /// How long `cluster`'s record has kept the version last read, on this observer's
    /// monotonic clock from its first read of that version (`None`: never read).
    pub fn unchanged_for(&self, cluster: &str, now: Instant) -> Option<Duration> {
        self.peers
            .get(cluster)
            .map(|s| now.saturating_duration_since(s.first_seen))
    }

    /// True when `cluster`'s last record says it keeps serving `group` when it loses
    /// DynamoDB (`onCoordinationLoss: KeepServing`): its lease running out proves nothing
    /// about that group.
    pub fn keeps_serving(&self, cluster: &str, group: &str) -> bool {
        self.peers
            .get(cluster)
            .is_some_and(|s| s.keep_serving.iter().any(|g| g == group))
    }
}

#[cfg(test)]
mod tests;
