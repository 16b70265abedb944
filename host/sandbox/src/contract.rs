//! The contract's two versions, as host bindings, and the adapter that lets a 0.1 plugin
//! take and return packed batches.
//!
//! `weir:stage@0.2.0` (`wit/0.2`) is what the host speaks: its `batch` record is the host's
//! own batch type ([`crate::Events`]). `weir:stage@0.1.0` (`wit/0.1`) passes a list of event
//! records each way; [`to_v01`] and [`from_v01`] turn a packed batch into that list and its
//! outcomes back into a packed [`Output`], so the rest of the host sees one shape. The
//! adapter allocates per event; it is the price of the older contract, paid only by its
//! plugins.

// Exports are called asynchronously so that a call can be abandoned at its deadline even
// while the guest waits in a host call (a WASI sleep, poll or read), where epoch
// interruption never fires; see `store`.
pub(crate) mod v01 {
    wasmtime::component::bindgen!({
        world: "stage",
        path: "../../wit/0.1",
        exports: { default: async },
    });
}

pub(crate) mod v02 {
    wasmtime::component::bindgen!({
        world: "stage",
        path: "../../wit/0.2",
        additional_derives: [PartialEq, Eq],
        exports: { default: async },
    });
}

pub(crate) mod v03 {
    // 0.3's `types` and `log` are 0.2's, unchanged: the same Rust types serve both, so a
    // batch crosses either version without a copy.
    wasmtime::component::bindgen!({
        world: "stage",
        path: "../../wit/0.3",
        additional_derives: [PartialEq, Eq],
        exports: { default: async },
        with: {
            "weir:stage/types": super::v02::weir::stage::types,
            "weir:stage/log": super::v02::weir::stage::log,
        },
    });
}

/// The packed batch, as [`crate::events`] extends it.
type Events = v02::weir::stage::types::Batch;

pub use v02::weir::stage::types::{
    Description, Failure as GuestFailure, FailureKind as GuestFailureKind, Output, Setting,
    SettingType,
};

type EventV01 = v01::weir::stage::types::Event;
type OutcomeV01 = v01::weir::stage::types::Outcome;

/// The events of a packed batch as 0.1 event records.
pub(crate) fn to_v01(batch: &Events) -> Vec<EventV01> {
    batch
        .iter()
        .map(|e| EventV01 {
            key: e.key().map(<[u8]>::to_vec),
            value: e.value().to_vec(),
            headers: e
                .headers()
                .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
                .collect(),
            timestamp: e.timestamp(),
        })
        .collect()
}

/// A 0.1 plugin's outcomes as a packed output. The caller has checked that there is one
/// outcome per input event.
pub(crate) fn from_v01(outcomes: Vec<OutcomeV01>) -> Output {
    let mut events = Events::new();
    let mut counts = Vec::with_capacity(outcomes.len());
    let mut failures = Vec::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(out) => {
                counts.push(u32::try_from(out.len()).unwrap_or(u32::MAX));
                for e in out {
                    events.push_parts(
                        e.key.as_deref(),
                        &e.value,
                        e.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())),
                        e.timestamp,
                    );
                }
            }
            Err(failure) => {
                counts.push(0);
                let (kind, reason) = match failure {
                    v01::weir::stage::types::Failure::Reject(r) => (GuestFailureKind::Reject, r),
                    v01::weir::stage::types::Failure::Retry(r) => (GuestFailureKind::Retry, r),
                };
                failures.push(GuestFailure {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    kind,
                    reason,
                });
            }
        }
    }
    Output {
        events,
        counts,
        failures,
    }
}

/// The 0.1 adapter, public for the property test of guest outputs (`tests/guest_output.rs`):
/// the records a 0.1 plugin is handed stay opaque.
#[doc(hidden)]
pub mod adapter {
    use super::{EventV01, Events, Output};

    /// A packed batch as the list of 0.1 event records a 0.1 plugin is handed.
    pub struct V01Events(Vec<EventV01>);

    /// [`super::to_v01`].
    pub fn to_v01(batch: &Events) -> V01Events {
        V01Events(super::to_v01(batch))
    }

    impl V01Events {
        pub fn len(&self) -> usize {
            self.0.len()
        }

        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        /// Bytes of every key, value, header name and header value of the records.
        pub fn bytes(&self) -> usize {
            (self.0.iter())
                .map(|e| {
                    let key = e.key.as_ref().map_or(0, Vec::len);
                    let headers: usize = e.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
                    key + e.value.len() + headers
                })
                .sum()
        }

        /// The records back through [`super::from_v01`], as a 0.1 plugin that returns each
        /// event unchanged, one outcome per event, would have them.
        pub fn round_trip(self) -> Output {
            super::from_v01(self.0.into_iter().map(|e| Ok(vec![e])).collect())
        }
    }
}

impl Output {
    /// Checks an output against the contract for a call with `inputs` events: a well-formed
    /// batch, one count per input (or none, meaning one output each), counts that add up to
    /// the outputs, and failures in increasing order, in range, each with a count of 0.
    pub fn check(&self, inputs: usize) -> Result<(), String> {
        self.events.check()?;
        self.check_outcomes(inputs)
    }

    /// The outcome half of [`Output::check`], for an output whose batch was charged
    /// ([`crate::cost::charge`]) and so checked already: work in the inputs and failures,
    /// bounded by the batch the host sent.
    pub fn check_outcomes(&self, inputs: usize) -> Result<(), String> {
        weir_wire::check_outcomes(
            inputs,
            self.events.len(),
            &self.counts,
            self.failures.iter().map(|f| f.index),
        )
    }

    /// The output range of each input event, in order, for a checked output.
    pub fn ranges(&self, inputs: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let mut next = 0usize;
        (0..inputs).map(move |i| {
            let count = if self.counts.is_empty() {
                1
            } else {
                self.counts[i] as usize
            };
            let range = next..next + count;
            next += count;
            range
        })
    }
}
