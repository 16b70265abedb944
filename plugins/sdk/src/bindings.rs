//! Guest bindings for the `stage` world of `weir:stage@0.3.0`, generated at compile time from
//! this crate's own copy of the contract, `wit/stage.wit`.
//!
//! The copy lives inside the crate (a test keeps it byte-identical to the workspace's
//! `wit/0.3/stage.wit`) so that the SDK builds wherever it is fetched from, as a path or a git
//! dependency. [`export_stage!`](crate::export_stage) is the supported way to use these
//! bindings: its expansion converts between their records and the SDK's own types. The
//! generated export macro is public and looks for the bindings at `weir_plugin::bindings`, so
//! that it can be expanded in a plugin crate rather than in this one.

#![doc(hidden)]
// The generated lowering of a `batch` record takes one argument per number of its four lists.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "wit",
    world: "stage",
    pub_export_macro: true,
    export_macro_name: "__export_stage_bindings",
    default_bindings_module: "weir_plugin::bindings",
});
