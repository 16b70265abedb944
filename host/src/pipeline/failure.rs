//! [`FailureKind`]: why an event did not go on, as dead letters, metrics and reports name it;
//! [`NodeFailure`]: why a source, stage or sink stopped the whole run.
//!
//! The ways a call (or making an instance) fails are the sandbox's [`TrapKind`]s, wrapped as
//! they are; the other kinds are the host's own: a plugin's rejection or exhausted retries, an
//! over-long source line, an open breaker.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use weir_sandbox::TrapKind;

/// Why a node stopped the run: the first fatal failure, which the run's error carries. The
/// sources stop reading when one is recorded, and what is in flight drains.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeFailure {
    /// A source cannot read its input.
    #[error("source `{node}`: cannot {doing}: {cause}")]
    Read {
        node: Arc<str>,
        /// What it was doing, such as "open /var/log/auth.log".
        doing: String,
        cause: Arc<std::io::Error>,
    },
    /// A sink, or the dead-letter writer, cannot write; nothing it holds is acknowledged.
    #[error("{node}: cannot write: {cause}")]
    Write {
        /// `sink `NAME`` or `dead-letter sink PLACE`.
        node: String,
        cause: Arc<std::io::Error>,
    },
    /// A sink's server refused what it was given, for good.
    #[error("sink `{node}`: cannot publish: {message}")]
    Publish { node: Arc<str>, message: String },
    /// A stage's circuit breaker tripped, under `on_error = "stop"`.
    #[error("stage `{stage}`: {tripped} (on_error = \"stop\")")]
    Tripped { stage: String, tripped: String },
    /// A commit round could not write the stages' state and the sources' positions.
    #[error("{message}")]
    State { message: String },
    /// A thread or task of the run ended without finishing its work (a panic).
    #[error("{what} stopped unexpectedly")]
    Crashed { what: String },
}

impl NodeFailure {
    /// A failure to read, by source `node`, while `doing`.
    pub fn read(node: &str, doing: impl Into<String>, cause: std::io::Error) -> NodeFailure {
        NodeFailure::Read {
            node: Arc::from(node),
            doing: doing.into(),
            cause: Arc::new(cause),
        }
    }

    /// A failure to write, by `node`.
    pub fn write(node: impl Into<String>, cause: std::io::Error) -> NodeFailure {
        NodeFailure::Write {
            node: node.into(),
            cause: Arc::new(cause),
        }
    }

    pub fn crashed(what: impl Into<String>) -> NodeFailure {
        NodeFailure::Crashed { what: what.into() }
    }
}

/// Why an event went to the dead-letter sink (or was dropped by `on_error = "drop"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The plugin rejected the event.
    Reject,
    /// The plugin asked for retries and the last one failed too.
    RetriesExhausted,
    /// The call, or making the instance, failed as the sandbox names it: out of fuel, past
    /// its deadline, over its memory, a trap, a wrong count of outcomes, an output over its
    /// caps. Named as the sandbox names it (`out-of-fuel`, `output-cap`…).
    Trap(TrapKind),
    /// A source read an input line longer than it accepts.
    Oversized,
    /// The stage's circuit breaker was open: the event was not sent to the plugin.
    BreakerOpen,
    /// A write to the stage's state went over a limit (a key or value too long, or the
    /// stage's `state_max_keys` or `state_max_bytes`), and the plugin failed the event.
    StateLimit,
    /// The event came after the watermark had passed its time (or its window's end), and the
    /// plugin failed it as late.
    Late,
}

impl FailureKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FailureKind; 15] = [
        FailureKind::Reject,
        FailureKind::RetriesExhausted,
        FailureKind::Trap(TrapKind::OutOfFuel),
        FailureKind::Trap(TrapKind::Deadline),
        FailureKind::Trap(TrapKind::MemoryLimit),
        FailureKind::Trap(TrapKind::StackOverflow),
        FailureKind::Trap(TrapKind::Panic),
        FailureKind::Trap(TrapKind::Trap),
        FailureKind::Trap(TrapKind::WrongOutcomeCount),
        FailureKind::Trap(TrapKind::InitFailed),
        FailureKind::Oversized,
        FailureKind::Trap(TrapKind::OutputCap),
        FailureKind::BreakerOpen,
        FailureKind::StateLimit,
        FailureKind::Late,
    ];

    /// The kind's place in [`FailureKind::ALL`].
    pub fn index(self) -> usize {
        FailureKind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is listed")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Reject => "reject",
            FailureKind::RetriesExhausted => "retries-exhausted",
            FailureKind::Trap(kind) => kind.as_str(),
            FailureKind::Oversized => "oversized",
            FailureKind::BreakerOpen => "breaker-open",
            FailureKind::StateLimit => "state-limit",
            FailureKind::Late => "late",
        }
    }

    /// Whether the kind is a trap of the instance (it is replaced, the batch bisected).
    pub fn is_trap(self) -> bool {
        matches!(
            self,
            FailureKind::Trap(
                TrapKind::OutOfFuel
                    | TrapKind::Deadline
                    | TrapKind::MemoryLimit
                    | TrapKind::StackOverflow
                    | TrapKind::Panic
                    | TrapKind::Trap
            )
        )
    }
}

impl From<TrapKind> for FailureKind {
    fn from(kind: TrapKind) -> Self {
        FailureKind::Trap(kind)
    }
}

/// Kinds order as [`FailureKind::ALL`] lists them.
impl Ord for FailureKind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.index().cmp(&other.index())
    }
}

impl PartialOrd for FailureKind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// As its name, `out-of-fuel`, `breaker-open`…
impl Serialize for FailureKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_name_and_place() {
        let names: Vec<&str> = FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "reject",
                "retries-exhausted",
                "out-of-fuel",
                "deadline",
                "memory-limit",
                "stack-overflow",
                "panic",
                "trap",
                "wrong-outcome-count",
                "init-failed",
                "oversized",
                "output-cap",
                "breaker-open",
                "state-limit",
                "late",
            ]
        );
        for (i, kind) in FailureKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(
                serde_json::to_string(&kind).expect("a name"),
                format!("\"{}\"", kind.as_str())
            );
        }
        assert_eq!(
            names,
            crate::config::LETTER_KINDS,
            "a redrive's filters know every kind"
        );
        let traps: Vec<&str> = (FailureKind::ALL.into_iter())
            .filter(|k| k.is_trap())
            .map(FailureKind::as_str)
            .collect();
        assert_eq!(
            traps,
            [
                "out-of-fuel",
                "deadline",
                "memory-limit",
                "stack-overflow",
                "panic",
                "trap"
            ]
        );
    }
}
