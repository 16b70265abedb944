//! `weir tap NODE`: the events leaving a node of a running pipeline, as JSON lines on stdout,
//! from the admin API's `GET /tap/{node}` stream.
//!
//! Event lines are printed as they come. The stream's status lines (`{"weir_tap": …}`) are
//! not: they say how many samples the tap lost because this command (or its reader) was
//! behind, and why the stream ended, which the command reports on stderr when it ends.

use std::io::{BufRead, BufReader, Read};

use super::{AdminArgs, CommandResult};

/// Longest line read from the stream. An event's JSON line is at most a few times the
/// server's 256 KiB chunk; blocks a wrong server from making the command buffer without end.
const MAX_LINE: u64 = 4 << 20;

/// What the stream's status lines said last.
#[derive(Debug, Default, serde::Deserialize)]
struct Status {
    sent: u64,
    lost: u64,
    end: Option<String>,
}

#[derive(serde::Deserialize)]
struct StatusLine {
    weir_tap: Status,
}

pub(super) fn tap(
    node: &str,
    limit: Option<u64>,
    sample: f64,
    dead_letters: bool,
    admin: &AdminArgs,
) -> CommandResult {
    // Node names are plain (letters, digits, `_`, `-`): nothing to escape in a path.
    if node.is_empty()
        || !node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err((2, format!("`{node}` is not a node name")));
    }
    if !(sample > 0.0 && sample <= 1.0) {
        return Err((
            2,
            format!("`--sample {sample}`: write a rate above 0 and at most 1"),
        ));
    }
    let client = super::admin::connect(admin.admin.as_deref(), &admin.auth)?;
    let mut path = format!("/tap/{node}?sample={sample}");
    if let Some(n) = limit {
        path += &format!("&limit={n}");
    }
    if dead_letters {
        path += "&dead_letters=true";
    }
    let stream = client.stream(&path).map_err(super::admin::client_failed)?;
    let mut reader = BufReader::new(stream);
    let mut status = Status::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(|e| (1, format!("the tap stream broke off: {e}")))?;
        if read == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        if text.starts_with("{\"weir_tap\"") {
            if let Ok(s) = serde_json::from_str::<StatusLine>(text) {
                status = s.weir_tap;
            }
            continue;
        }
        out!("{text}");
    }
    let why = match status.end.as_deref() {
        Some("limit") => "the limit was reached",
        Some("stopped") => "the pipeline ended",
        _ => "the stream closed",
    };
    let lost = if status.lost > 0 {
        format!(
            ", {} lost: this reader was slower than the pipeline, which a tap never slows",
            status.lost
        )
    } else {
        String::new()
    };
    let events = if status.sent == 1 { "event" } else { "events" };
    crate::notice::info(&format!(
        "tap `{node}`: {} {events}{lost}; {why}",
        status.sent
    ));
    Ok(())
}
