//! [`export_stage!`](crate::export_stage) and the per-instance state it manages.
//!
//! The macro expands in the plugin crate; the logic it calls lives in [`__private`] so that it
//! is compiled, documented and tested once, here, and natively as well as on wasm. A call
//! moves the bindings' `batch` record into the SDK's [`Batch`](crate::Batch) (the vectors
//! move, nothing is copied), runs it as [`native::process`](crate::native::process) does, and
//! moves the [`Output`](crate::Output) back into the bindings' record; when the stage passed
//! every input unchanged, the input batch itself goes back.

/// Exports a [`Transform`](crate::Transform) (so also any [`Stage`](crate::Stage)) as the
/// component's `describe`, `init` and `process`.
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
/// On `wasm32` the expansion keeps one `Option<T>` per instance. `describe` returns the
/// plugin crate's name and version (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`, read where the
/// macro expands) and the stage's `SETTINGS`. `init` drops any previous state, then stores
/// the result of [`native::init`](crate::native::init) (nothing, if it fails). `process` runs
/// the batch through [`native::process`](crate::native::process); before a successful `init`,
/// every event is rejected.
///
/// On other targets the expansion only checks that the type implements `Transform`, so the
/// plugin crate also builds natively for tests and benchmarks.
///
/// Invoke it once per crate, at module level.
#[macro_export]
macro_rules! export_stage {
    ($stage:ty $(,)?) => {
        const _: fn() = $crate::__private::assert_transform::<$stage>;

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
                fn describe() -> $crate::__private::WitDescription {
                    $crate::__private::describe::<$stage>(
                        ::core::env!("CARGO_PKG_NAME"),
                        ::core::env!("CARGO_PKG_VERSION"),
                    )
                }

                fn init(
                    settings: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    STATE.with(|state| $crate::__private::init::<$stage>(state, settings))
                }

                fn process(batch: $crate::__private::WitBatch) -> $crate::__private::WitOutput {
                    STATE.with(|state| $crate::__private::process::<$stage>(state, batch))
                }

                fn on_timer(
                    fired: ::std::vec::Vec<$crate::time::Timer>,
                ) -> $crate::__private::WitBatch {
                    STATE.with(|state| $crate::__private::on_timer::<$stage>(state, fired))
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

    use crate::bindings::weir::stage::types as wit;
    use crate::emit::Finished;
    use crate::{Batch, FailedEvent, Failure, Output, SettingType, Settings, Transform, native};

    pub use crate::bindings::Guest;
    pub use wit::{Batch as WitBatch, Description as WitDescription, Output as WitOutput};

    /// The reason given for events that arrive before a successful `init`.
    pub const NOT_INITIALISED: &str =
        "stage not initialised: process was called before a successful init";

    /// Compiles only if `T` implements [`Transform`].
    pub fn assert_transform<T: Transform>() {}

    /// What the stage says of itself: the plugin crate's name and version, and its settings.
    pub fn describe<T: Transform>(name: &str, version: &str) -> WitDescription {
        let settings = T::SETTINGS
            .iter()
            .map(|s| wit::Setting {
                name: s.name().to_string(),
                type_: match s.setting_type() {
                    SettingType::Text => wit::SettingType::Text,
                    SettingType::Integer => wit::SettingType::Integer,
                    SettingType::Float => wit::SettingType::Float,
                    SettingType::Boolean => wit::SettingType::Boolean,
                },
                required: s.is_required(),
                default: s.default_value().map(str::to_string),
                help: s.help_text().to_string(),
            })
            .collect();
        WitDescription {
            name: name.to_string(),
            version: version.to_string(),
            settings,
        }
    }

    /// Replaces the instance's state with a stage built from `settings`.
    ///
    /// The old state is dropped first, so that a failed `init` leaves no stale stage behind
    /// and the two never hold memory at the same time.
    pub fn init<T: Transform>(
        state: &RefCell<Option<T>>,
        settings: Vec<(String, String)>,
    ) -> Result<(), String> {
        *state.borrow_mut() = None;
        let stage = native::init::<T>(Settings::new(settings))?;
        *state.borrow_mut() = Some(stage);
        Ok(())
    }

    /// Runs a batch through the instance's stage, or rejects it all if there is none.
    pub fn process<T: Transform>(state: &RefCell<Option<T>>, batch: WitBatch) -> WitOutput {
        let batch = Batch {
            data: batch.data,
            events: batch.events,
            headers: batch.headers,
            timestamps: batch.timestamps,
        };
        let finished = match state.borrow_mut().as_mut() {
            Some(stage) => native::run(stage, &batch),
            None => Finished::Written(reject_all(batch.len())),
        };
        to_wit(match finished {
            // Every input passed unchanged: the input is the output, moved back as it came.
            Finished::Input => Output {
                events: batch,
                ..Output::default()
            },
            Finished::Written(output) => output,
        })
    }

    /// Runs fired timers through the instance's stage (none, if there is no stage) and packs
    /// the events they became.
    pub fn on_timer<T: Transform>(
        state: &RefCell<Option<T>>,
        fired: Vec<crate::time::Timer>,
    ) -> WitBatch {
        let events = match state.borrow_mut().as_mut() {
            Some(stage) => stage.on_timer(fired),
            None => Vec::new(),
        };
        let mut batch = Batch::new();
        for event in &events {
            batch.push(event);
        }
        WitBatch {
            data: batch.data,
            events: batch.events,
            headers: batch.headers,
            timestamps: batch.timestamps,
        }
    }

    /// Every input rejected as not initialised.
    fn reject_all(inputs: usize) -> Output {
        Output {
            events: Batch::new(),
            counts: vec![0; inputs],
            failures: (0..inputs)
                .map(|index| FailedEvent {
                    index: index as u32,
                    failure: Failure::reject(NOT_INITIALISED),
                })
                .collect(),
        }
    }

    /// Moves an output into the bindings' record; only failures are rebuilt.
    fn to_wit(output: Output) -> WitOutput {
        let events = output.events;
        WitOutput {
            events: WitBatch {
                data: events.data,
                events: events.events,
                headers: events.headers,
                timestamps: events.timestamps,
            },
            counts: output.counts,
            failures: output
                .failures
                .into_iter()
                .map(|f| {
                    let (kind, reason) = match f.failure {
                        Failure::Reject(reason) => (wit::FailureKind::Reject, reason),
                        Failure::Retry(reason) => (wit::FailureKind::Retry, reason),
                    };
                    wit::Failure {
                        index: f.index,
                        kind,
                        reason,
                    }
                })
                .collect(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::{Declare, Event, Outcome, Stage};

        /// Appends its `suffix` setting (default `!`) to every value; rejects empty values.
        struct Suffix {
            suffix: String,
        }

        impl Stage for Suffix {
            const SETTINGS: &'static [Declare] = &[
                Declare::text("suffix")
                    .default("!")
                    .help("appended to every value"),
                Declare::integer("unused").required(),
            ];

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

        /// Runs owned events through the export's `process`, as the bindings would call it,
        /// and reads the output back.
        fn run<T: Transform>(state: &RefCell<Option<T>>, values: &[&str]) -> Vec<Outcome> {
            let events: Vec<Event> = values.iter().map(|v| Event::new(*v)).collect();
            let batch = Batch::from_events(&events);
            let out = process(
                state,
                WitBatch {
                    data: batch.data,
                    events: batch.events,
                    headers: batch.headers,
                    timestamps: batch.timestamps,
                },
            );
            let output = Output {
                events: Batch {
                    data: out.events.data,
                    events: out.events.events,
                    headers: out.events.headers,
                    timestamps: out.events.timestamps,
                },
                counts: out.counts,
                failures: out
                    .failures
                    .into_iter()
                    .map(|f| FailedEvent {
                        index: f.index,
                        failure: match f.kind {
                            wit::FailureKind::Reject => Failure::Reject(f.reason),
                            wit::FailureKind::Retry => Failure::Retry(f.reason),
                        },
                    })
                    .collect(),
            };
            output.outcomes()
        }

        #[test]
        fn process_before_init_rejects_every_event() {
            let state = RefCell::new(None::<Suffix>);
            assert_eq!(
                run(&state, &["a", "b"]),
                vec![
                    Err(Failure::reject(NOT_INITIALISED)),
                    Err(Failure::reject(NOT_INITIALISED)),
                ]
            );
        }

        #[test]
        fn one_outcome_per_input_in_order_with_declared_defaults() {
            let state = RefCell::new(None);
            init::<Suffix>(&state, settings(&[("unused", "1")])).unwrap();
            assert_eq!(
                run(&state, &["a", "", "b"]),
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
            init::<Suffix>(&state, settings(&[("suffix", "1"), ("unused", "0")])).unwrap();
            init::<Suffix>(&state, settings(&[("suffix", "2"), ("unused", "0")])).unwrap();
            assert_eq!(run(&state, &["a"]), vec![Ok(vec![Event::new("a2")])]);
        }

        #[test]
        fn failed_init_leaves_no_state() {
            let state = RefCell::new(None);
            init::<Suffix>(&state, settings(&[("unused", "1")])).unwrap();
            let err = init::<Suffix>(&state, Vec::new()).unwrap_err();
            assert_eq!(err, "setting `unused` is required");
            assert_eq!(
                run(&state, &["a"]),
                vec![Err(Failure::reject(NOT_INITIALISED))]
            );
        }

        #[test]
        fn a_wrong_count_reaches_the_host_as_counts_of_that_length() {
            let state = RefCell::new(None);
            init::<Lossy>(&state, Vec::new()).unwrap();
            assert_eq!(run(&state, &["a", "b"]), vec![Ok(Vec::new())]);
        }

        #[test]
        fn describe_gives_the_crate_and_the_declared_settings() {
            let d = describe::<Suffix>("suffix", "1.2.3");
            assert_eq!((d.name.as_str(), d.version.as_str()), ("suffix", "1.2.3"));
            assert_eq!(d.settings.len(), 2);
            let s = &d.settings[0];
            assert_eq!(s.name, "suffix");
            assert!(matches!(s.type_, wit::SettingType::Text));
            assert!(!s.required);
            assert_eq!(s.default.as_deref(), Some("!"));
            assert_eq!(s.help, "appended to every value");
            assert!(d.settings[1].required);
            assert!(describe::<Lossy>("lossy", "0").settings.is_empty());
        }
    }
}
