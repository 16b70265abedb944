//! [`export_stage!`](crate::export_stage) and the per-instance state it manages.
//!
//! The macro expands in the plugin crate; the logic it calls lives in [`__private`] so that it
//! is compiled, documented and tested once, here, and natively as well as on wasm.

/// Exports a [`Stage`](crate::Stage) implementation as the component's `init` and `process`.
///
/// ```
/// # use weir_plugin::{Event, Outcome, Settings, Stage};
/// pub struct Passthrough;
///
/// impl Stage for Passthrough {
///     fn init(_: &Settings) -> Result<Self, String> {
///         Ok(Passthrough)
///     }
///     fn process(&mut self, event: Event) -> Outcome {
///         Ok(vec![event])
///     }
/// }
///
/// weir_plugin::export_stage!(Passthrough);
/// ```
///
/// On `wasm32` the expansion keeps one `Option<T>` per instance. `init` drops any previous
/// state, then stores the result of [`Stage::init`](crate::Stage::init) (nothing, if it
/// fails). `process` hands the whole batch to
/// [`Stage::process_batch`](crate::Stage::process_batch) and returns its outcomes as they are,
/// so a wrong count reaches the host, which detects it; before a successful `init`, every
/// event is rejected.
///
/// On other targets the expansion only checks that the type implements `Stage`, so the plugin
/// crate also builds natively for tests and benchmarks.
///
/// Invoke it once per crate, at module level.
#[macro_export]
macro_rules! export_stage {
    ($stage:ty $(,)?) => {
        const _: fn() = $crate::__private::assert_stage::<$stage>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static STATE: ::core::cell::RefCell<::core::option::Option<$stage>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            // The generated export macro takes an identifier, not a type, so a local unit type
            // stands in for `$stage` and forwards to the state above.
            struct WeirStageExport;

            impl $crate::__private::Guest for WeirStageExport {
                fn init(
                    settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    STATE.with(|state| $crate::__private::init::<$stage>(state, settings))
                }

                fn process(
                    batch: ::std::vec::Vec<$crate::Event>,
                ) -> ::std::vec::Vec<$crate::Outcome> {
                    STATE.with(|state| $crate::__private::process::<$stage>(state, batch))
                }
            }

    $crate::__export_stage_impl!(WeirStageExport with_types_in $crate::bindings);
        };
    };
}

/// Support for [`export_stage!`](crate::export_stage); not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;

    use crate::{Event, Failure, Outcome, Settings, Stage};

    pub use crate::bindings::Guest;

    /// The reason given for events that arrive before a successful `init`.
    pub const NOT_INITIALISED: &str =
        "stage not initialised: process was called before a successful init";

    /// Compiles only if `T` implements [`Stage`].
    pub fn assert_stage<T: Stage>() {}

    /// Replaces the instance's state with a stage built from `settings`.
    ///
    /// The old state is dropped first, so that a failed `init` leaves no stale stage behind
    /// and the two never hold memory at the same time.
    pub fn init<T: Stage>(
        state: &RefCell<Option<T>>,
        settings: Vec<(String, String)>,
    ) -> Result<(), String> {
        *state.borrow_mut() = None;
        let stage = T::init(&Settings::new(settings))?;
        *state.borrow_mut() = Some(stage);
        Ok(())
    }

    /// Runs a batch through the instance's stage, or rejects it all if there is none.
    pub fn process<T: Stage>(state: &RefCell<Option<T>>, batch: Vec<Event>) -> Vec<Outcome> {
        match state.borrow_mut().as_mut() {
            Some(stage) => stage.process_batch(batch),
            None => batch
                .iter()
                .map(|_| Err(Failure::Reject(NOT_INITIALISED.to_string())))
                .collect(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Appends its `suffix` setting to every value; rejects empty values.
        struct Suffix {
            suffix: String,
        }

        impl Stage for Suffix {
            fn init(settings: &Settings) -> Result<Self, String> {
                Ok(Suffix {
                    suffix: settings.require("suffix")?.to_string(),
                })
            }

            fn process(&mut self, mut event: Event) -> Outcome {
                if event.value.is_empty() {
                    return Err(Failure::reject("empty"));
                }
                event.value.extend_from_slice(self.suffix.as_bytes());
                Ok(vec![event])
            }
        }

        /// Breaks the contract on purpose: one outcome for the whole batch.
        struct Lossy;

        impl Stage for Lossy {
            fn init(_: &Settings) -> Result<Self, String> {
                Ok(Lossy)
            }

            fn process(&mut self, event: Event) -> Outcome {
                Ok(vec![event])
            }

            fn process_batch(&mut self, _: Vec<Event>) -> Vec<Outcome> {
                vec![Ok(Vec::new())]
            }
        }

        fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }

        #[test]
        fn process_before_init_rejects_every_event() {
            let state = RefCell::new(None::<Suffix>);
            let outcomes = process(&state, vec![Event::new("a"), Event::new("b")]);
            assert_eq!(
                outcomes,
                vec![
                    Err(Failure::reject(NOT_INITIALISED)),
                    Err(Failure::reject(NOT_INITIALISED)),
                ]
            );
        }

        #[test]
        fn one_outcome_per_input_in_order() {
            let state = RefCell::new(None);
            init::<Suffix>(&state, settings(&[("suffix", "!")])).unwrap();
            let outcomes = process(
                &state,
                vec![Event::new("a"), Event::new(""), Event::new("b")],
            );
            assert_eq!(
                outcomes,
                vec![
                    Ok(vec![Event::new("a!")]),
                    Err(Failure::reject("empty")),
                    Ok(vec![Event::new("b!")]),
                ]
            );
        }

        #[test]
        fn init_replaces_the_previous_state() {
            let state = RefCell::new(None);
            init::<Suffix>(&state, settings(&[("suffix", "1")])).unwrap();
            init::<Suffix>(&state, settings(&[("suffix", "2")])).unwrap();
            assert_eq!(
                process(&state, vec![Event::new("a")]),
                vec![Ok(vec![Event::new("a2")])]
            );
        }

        #[test]
        fn failed_init_leaves_no_state() {
            let state = RefCell::new(None);
            init::<Suffix>(&state, settings(&[("suffix", "1")])).unwrap();
            let err = init::<Suffix>(&state, Vec::new()).unwrap_err();
            assert_eq!(err, "setting `suffix` is required");
            assert_eq!(
                process(&state, vec![Event::new("a")]),
                vec![Err(Failure::reject(NOT_INITIALISED))]
            );
        }

        #[test]
        fn a_wrong_count_is_passed_through_unchanged() {
            let state = RefCell::new(None);
            init::<Lossy>(&state, Vec::new()).unwrap();
            let outcomes = process(&state, vec![Event::new("a"), Event::new("b")]);
            assert_eq!(outcomes, vec![Ok(Vec::new())]);
        }
    }
}
