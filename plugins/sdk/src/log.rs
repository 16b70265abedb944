//! Logging through the host's `log` import, with a stderr fallback off wasm.

use std::fmt;

pub use crate::bindings::weir::stage::log::Level;

/// Writes `message` to the host's log at `level`; the host rate-limits and caps it.
///
/// On targets other than `wasm32` there is no host to call, so the line goes to stderr: plugin
/// logic then runs unchanged in native tests and benchmarks.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::weir::stage::log::log(level, message);

    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write;
        // A closed stderr must not turn a log line into a panic.
        let _ = writeln!(std::io::stderr().lock(), "[{level}] {message}");
    }
}

impl Level {
    /// The level's lower-case name, as in the WIT enum.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
