//! Notices: the lines weir writes to stderr for a person whatever the log filter (the admin
//! API's address, a reload, a canary rollback, a stop, the summary, the final error).
//!
//! With `--log-format text` a notice is `weir: …`; with `--log-format json` it goes through
//! the log as an event of target `weir::notice` (which the command line's filter always
//! lets through), so every line on stderr is then JSON and a log collector never sees a line
//! it cannot parse. The format is chosen once, at start-up, by the command line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// The log target notices use in JSON mode.
pub const TARGET: &str = "weir::notice";

/// Notices go through the (JSON) log from now on.
pub fn use_json() {
    JSON.store(true, Ordering::Relaxed);
}

pub fn info(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::info!(target: TARGET, "{message}");
    } else {
        line(format_args!("weir: {message}"));
    }
}

pub fn warn(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::warn!(target: TARGET, "{message}");
    } else {
        line(format_args!("weir: {message}"));
    }
}

pub fn error(message: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::error!(target: TARGET, "{message}");
    } else {
        line(format_args!("weir: error: {message}"));
    }
}

fn line(text: std::fmt::Arguments<'_>) {
    // A closed stderr must not turn a notice into a panic.
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
