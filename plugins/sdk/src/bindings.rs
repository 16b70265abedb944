//! Guest bindings for the `stage` world, generated at compile time from `wit/stage.wit`.
//!
//! [`export_stage!`](crate::export_stage) is the supported way to use them. The generated
//! export macro is public and looks for these bindings at `weir_plugin::bindings`, so that it
//! can be expanded in a plugin crate rather than in this one.

#![doc(hidden)]

wit_bindgen::generate!({
    path: "../../wit/0.1",
    world: "stage",
    pub_export_macro: true,
    export_macro_name: "__export_stage_bindings",
    default_bindings_module: "weir_plugin::bindings",
    // Equality lets tests compare outcomes directly; it costs nothing at run time.
    additional_derives: [PartialEq, Eq],
});
