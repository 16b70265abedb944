//! [`FailureKind`]: why an event did not go on, as dead letters, metrics and reports name it.

use serde::Serialize;
use weir_sandbox::TrapKind;

/// Why an event went to the dead-letter sink (or was dropped by `on_error = "drop"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The plugin rejected the event.
    Reject,
    /// The plugin asked for retries and the last one failed too.
    RetriesExhausted,
    /// The call ran out of fuel.
    OutOfFuel,
    /// The call ran past its wall-clock deadline.
    Deadline,
    /// The instance tried to grow its memory past the stage's cap.
    MemoryLimit,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest panicked or reached `unreachable`.
    Panic,
    /// Any other trap, or an output that breaks the contract's encoding.
    Trap,
    /// The plugin returned a different number of outcomes than events it was given.
    WrongOutcomeCount,
    /// A fresh instance could not be initialised to process the event.
    InitFailed,
    /// A source read an input line longer than it accepts.
    Oversized,
    /// The plugin's outputs for the event broke one of the stage's output caps.
    OutputCap,
    /// The stage's circuit breaker was open: the event was not sent to the plugin.
    BreakerOpen,
}

impl FailureKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FailureKind; 13] = [
        FailureKind::Reject,
        FailureKind::RetriesExhausted,
        FailureKind::OutOfFuel,
        FailureKind::Deadline,
        FailureKind::MemoryLimit,
        FailureKind::StackOverflow,
        FailureKind::Panic,
        FailureKind::Trap,
        FailureKind::WrongOutcomeCount,
        FailureKind::InitFailed,
        FailureKind::Oversized,
        FailureKind::OutputCap,
        FailureKind::BreakerOpen,
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
            FailureKind::OutOfFuel => "out-of-fuel",
            FailureKind::Deadline => "deadline",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::StackOverflow => "stack-overflow",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::WrongOutcomeCount => "wrong-outcome-count",
            FailureKind::InitFailed => "init-failed",
            FailureKind::Oversized => "oversized",
            FailureKind::OutputCap => "output-cap",
            FailureKind::BreakerOpen => "breaker-open",
        }
    }

    /// Whether the kind is a trap of the instance (it is replaced, the batch bisected).
    pub fn is_trap(self) -> bool {
        matches!(
            self,
            FailureKind::OutOfFuel
                | FailureKind::Deadline
                | FailureKind::MemoryLimit
                | FailureKind::StackOverflow
                | FailureKind::Panic
                | FailureKind::Trap
        )
    }
}

impl From<TrapKind> for FailureKind {
    fn from(kind: TrapKind) -> Self {
        match kind {
            TrapKind::OutOfFuel => FailureKind::OutOfFuel,
            TrapKind::Deadline => FailureKind::Deadline,
            TrapKind::MemoryLimit => FailureKind::MemoryLimit,
            TrapKind::StackOverflow => FailureKind::StackOverflow,
            TrapKind::Panic => FailureKind::Panic,
            TrapKind::Trap => FailureKind::Trap,
            TrapKind::WrongOutcomeCount => FailureKind::WrongOutcomeCount,
            TrapKind::InitFailed => FailureKind::InitFailed,
            TrapKind::OutputCap => FailureKind::OutputCap,
        }
    }
}
