//! `type = "dead_letters"`: the letters of a dead-letter file, sent again into the stages that
//! failed them (or into `into`), with the same filters as `weir redrive`: `kind`, `node`,
//! `since` and `limit`. Its progress is kept in `progress` (beside the letter file unless set).

use std::ops::Range;
use std::path::PathBuf;

use crate::config::error::{ConfigError, Ctx, Sp, join, list, shown};
use crate::config::reader::Table;
use crate::config::source::SourceKind;
use crate::config::source::file::existing_file;
use crate::config::units;

/// The keys of a `dead_letters` source beyond the common ones.
pub(crate) const KEYS: &[&str] = &["path", "into", "kind", "node", "since", "limit", "progress"];

/// Every kind a letter may have, as letters name them. A filter naming another kind would
/// select nothing, silently: it is refused instead. (The pipeline's `FailureKind` checks
/// that this list is its own.)
pub const LETTER_KINDS: &[&str] = &[
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
];

/// `limit`: letters sent by one redrive. At least one; at most 10^12, as a generated count.
const LIMIT: std::ops::RangeInclusive<u64> = 1..=1_000_000_000_000;

/// Which letters a redrive sends: each filter that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Letters of these kinds only (any kind when empty).
    pub kinds: Vec<String>,
    /// Letters failed at these nodes only (any node when empty).
    pub nodes: Vec<String>,
    /// Letters written at or after this time, in ms since the Unix epoch (a letter without
    /// its time, from an older file, is not selected).
    pub since: Option<u64>,
    /// At most this many letters.
    pub limit: Option<u64>,
}

/// A `dead_letters` source, checked.
#[derive(Debug, Clone)]
pub struct DeadLettersSource {
    /// The letter file.
    pub path: PathBuf,
    /// Every letter goes to this stage, whatever stage failed it.
    pub into: Option<String>,
    pub select: Selection,
    /// Where its progress is kept: `PATH.redrive` unless set.
    pub progress: PathBuf,
    /// How often its progress is written: the pipeline's `checkpoint_interval`.
    pub interval: std::time::Duration,
}

/// A `dead_letters` source as written.
pub(crate) struct Raw {
    pub path: Option<Sp<String>>,
    pub into: Option<Sp<String>>,
    pub kind: Option<Sp<Vec<Sp<String>>>>,
    pub node: Option<Sp<Vec<Sp<String>>>>,
    pub since: Option<Sp<String>>,
    pub limit: Option<Sp<i128>>,
    pub progress: Option<Sp<String>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        path: t.text("path")?,
        into: t.text("into")?,
        kind: t.texts("kind", "[\"reject\"]")?,
        node: t.texts("node", "[\"parse\"]")?,
        since: t.text("since")?,
        limit: t.whole("limit")?,
        progress: t.text("progress")?,
    })
}

/// The progress file of a letter file, unless one is named: beside it, `PATH.redrive`.
pub fn default_progress(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".redrive");
    PathBuf::from(name)
}

/// `since`: a duration ago (`"2h"`: letters of the last two hours) or a time in milliseconds
/// since the Unix epoch (`"1733000000000"`), resolved against `now` (ms).
pub fn parse_since(text: &str, now: u64) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{} is too large a time", shown(text)));
    }
    let ago = units::parse_duration(text).map_err(|_| {
        format!(
            "{} is not a time: write a duration ago, such as `2h` or `30m`, or milliseconds \
             since the Unix epoch, such as `1733000000000`",
            shown(text)
        )
    })?;
    Ok(now.saturating_sub(ago.as_millis() as u64))
}

/// Refuses a kind no letter has, naming the kinds there are.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if LETTER_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(format!(
            "no letter has the kind {}: the kinds are {}",
            shown(kind),
            list(LETTER_KINDS, "and")
        ))
    }
}

/// The letter file must exist now, as a file source's; `kind` is the span of `type`.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<SourceKind, ConfigError> {
    let path = existing_file(
        cx,
        node,
        kind,
        raw.path.as_ref(),
        "a `dead_letters` source needs `path`, the dead-letter file to send again",
    )?;
    let texts = |v: &Option<Sp<Vec<Sp<String>>>>| -> Vec<String> {
        v.as_ref()
            .map(|v| v.get_ref().iter().map(|s| s.get_ref().clone()).collect())
            .unwrap_or_default()
    };
    if let Some(kinds) = &raw.kind {
        for k in kinds.get_ref() {
            check_kind(k.get_ref()).map_err(|m| cx.err(&k.span(), join(node, "kind"), m))?;
        }
    }
    let since = match &raw.since {
        Some(s) => Some(
            parse_since(s.get_ref(), now_ms())
                .map_err(|m| cx.err(&s.span(), join(node, "since"), m))?,
        ),
        None => None,
    };
    let limit = match &raw.limit {
        Some(v) => Some(units::whole(cx, v, &join(node, "limit"), &LIMIT)?),
        None => None,
    };
    Ok(SourceKind::DeadLetters(Box::new(DeadLettersSource {
        progress: match &raw.progress {
            Some(p) => cx.path(p.get_ref()),
            None => default_progress(&path),
        },
        path,
        interval: crate::config::DEFAULT_CHECKPOINT_INTERVAL,
        into: raw.into.as_ref().map(|i| i.get_ref().clone()),
        select: Selection {
            kinds: texts(&raw.kind),
            nodes: texts(&raw.node),
            since,
            limit,
        },
    })))
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_ago_or_epoch_milliseconds_and_kinds_are_checked() {
        assert_eq!(parse_since("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_since("1733000000000", 5), Ok(1_733_000_000_000));
        assert_eq!(parse_since("3h", 1_000), Ok(0), "not before the epoch");
        assert!(
            parse_since("yesterday", 5)
                .unwrap_err()
                .contains("not a time")
        );
        assert!(check_kind("panic").is_ok());
        let e = check_kind("panik").unwrap_err();
        assert!(e.contains("`panik`") && e.contains("`reject`"), "{e}");
        assert_eq!(
            default_progress(std::path::Path::new("out/dead.jsonl")),
            PathBuf::from("out/dead.jsonl.redrive")
        );
    }
}
