//! The enums records store by name (`Mode`, `Phase`, `HandoffState`, `StepStatus`): each
//! with its wire name, `Display` and `FromStr`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of {}"),
                        s,
                        [$($wire),+].join(", ")
                    )),
                }
            }
        }
    };
}

wire_enum! {
    /// How a failover orders the two sides.
    Mode, "mode" {
        /// Source down and demoted before the target promotes.
        Consistency = "CONSISTENCY",
        /// Target promoted and serving before the source shuts down.
        Uptime = "UPTIME",
    }
}

wire_enum! {
    /// Phase of an operation. The names match the `Failover` custom resource's phases.
    Phase, "phase" {
        /// Started, no agent has picked it up yet.
        Pending = "Pending",
        /// An agent is working on it.
        Running = "Running",
        /// The lease expired while it ran; a new operation may take over.
        Stalled = "Stalled",
        /// An abort was requested and granted; the source is reactivating.
        Aborting = "Aborting",
        /// Closed: the target owns the group.
        Succeeded = "Succeeded",
        /// Closed with an error.
        Failed = "Failed",
        /// Closed by an abort before promotion; the source still owns the group.
        Aborted = "Aborted",
        /// Closed after a rollback; the source still owns the group.
        RolledBack = "RolledBack",
        /// Closed by a later operation that took the group over after this one's lease
        /// expired.
        Superseded = "Superseded",
    }
}

impl Phase {
    /// True for phases after which the operation never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::RolledBack | Self::Superseded
        )
    }
}

wire_enum! {
    /// State of one volume's handoff record.
    HandoffState, "handoff state" {
        /// The source demoted the volume; the target may promote it.
        ReadyForPromotion = "READY_FOR_PROMOTION",
        /// The target promoted the volume.
        Promoted = "PROMOTED",
    }
}

wire_enum! {
    /// Status of a journal step.
    StepStatus, "step status" {
        /// The intent was written; the outcome is unknown (maybe the agent died).
        Started = "STARTED",
        /// The step finished.
        Done = "DONE",
        /// The step failed.
        Failed = "FAILED",
    }
}
