//! Partitioned NATS subjects as a pipeline file writes them: a sink's `partitions = P` and a
//! source's `partitions = [0, 1]` with `partition_count = P`, each checked here (the count in
//! [`ranges::PARTITIONS`](crate::config::ranges::PARTITIONS), the list within it and without
//! repeats, the subject one the partitions can be appended to), so that the two kinds refuse
//! the same mistakes in the same words. Which partition a key goes to is decided elsewhere,
//! at run time (`pipeline::partition`).

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join, shown};
use crate::config::ranges::PARTITIONS;
use crate::config::units;

/// The partitions a NATS source consumes: `owned`, ascending, each below `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    pub owned: Vec<u32>,
    pub count: u32,
}

/// A sink's `partitions`, or a source's `partition_count`: a count in
/// [`ranges::PARTITIONS`](crate::config::ranges::PARTITIONS).
pub(crate) fn count(cx: &Ctx, raw: &Sp<i128>, key: &str) -> Result<u32, ConfigError> {
    units::whole(cx, raw, key, &PARTITIONS)
}

/// A source's `partitions` (at `node`), each below `count`, none twice; returned ascending.
pub(crate) fn owned(
    cx: &Ctx,
    node: &str,
    list: &Sp<Vec<Sp<i128>>>,
    count: u32,
) -> Result<Vec<u32>, ConfigError> {
    let key = join(node, "partitions");
    if list.get_ref().is_empty() {
        return Err(cx.err(
            &list.span(),
            key,
            "names no partition: list the partitions this source consumes, such as `[0, 1]`",
        ));
    }
    let mut owned = Vec::with_capacity(list.get_ref().len());
    for item in list.get_ref() {
        let n = *item.get_ref();
        if !(0..i128::from(count)).contains(&n) {
            return Err(cx.err(
                &item.span(),
                key,
                format!(
                    "partition {} is not one of the {count} of `partition_count` (0 to {})",
                    cx.number(&item.span()),
                    count - 1
                ),
            ));
        }
        // In range, so it fits.
        let p = n as u32;
        if owned.contains(&p) {
            return Err(cx.err(&item.span(), key, format!("partition {p} is listed twice")));
        }
        owned.push(p);
    }
    owned.sort_unstable();
    Ok(owned)
}

/// The subject a partitioned source or sink appends `.P` to: required (blamed on `at`, the
/// span of `partitions`), and without wildcards, since `SUBJECT.P` must name one partition.
pub(crate) fn subject(
    cx: &Ctx,
    node: &str,
    at: &Range<usize>,
    subject: Option<&Sp<String>>,
    what: &str,
) -> Result<String, ConfigError> {
    let Some(subject) = subject else {
        return Err(cx.err(
            at,
            join(node, "subject"),
            format!("a partitioned `nats` {what} needs `subject`: partition P is `SUBJECT.P`"),
        ));
    };
    let text = subject.get_ref();
    let wildcard = text.split('.').any(|t| t == "*" || t == ">");
    if text.is_empty() || wildcard || text.ends_with('.') || text.contains(char::is_whitespace) {
        return Err(cx.err(
            &subject.span(),
            join(node, "subject"),
            format!(
                "{} cannot be partitioned: partition P is `SUBJECT.P`, so the subject must be \
                 a plain subject such as `orders`, without wildcards, spaces or a trailing `.`",
                shown(text)
            ),
        ));
    }
    Ok(text.clone())
}
