//! `type = "nats"`: each event published to a NATS JetStream subject, with a message id for
//! deduplication; with `partitions = P`, to `SUBJECT.p`, `p` from the hash of the event's key.

use std::ops::Range;

use crate::config::error::{ConfigError, Ctx, Sp, join};
use crate::config::nats_url;
use crate::config::partitions;
use crate::config::reader::Table;
use crate::config::sink::SinkKind;

/// The keys of a `nats` sink beyond the common ones.
pub(crate) const KEYS: &[&str] = &["url", "subject", "partitions"];

/// A `nats` sink as written.
pub(crate) struct Raw {
    pub url: Option<Sp<String>>,
    pub subject: Option<Sp<String>>,
    pub partitions: Option<Sp<i128>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        url: t.text("url")?,
        subject: t.text("subject")?,
        partitions: t.whole("partitions")?,
    })
}

/// `kind` is the span of `type`, where a missing `subject` is blamed.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    raw: &Raw,
) -> Result<SinkKind, ConfigError> {
    match &raw.subject {
        Some(subject) => {
            let (url, servers) = nats_url::check(cx, raw.url.as_ref(), &join(node, "url"))?;
            let (subject, partitions) = match &raw.partitions {
                None => (subject.get_ref().clone(), None),
                Some(written) => {
                    let count = partitions::count(cx, written, &join(node, "partitions"))?;
                    let at = written.span();
                    let subject = partitions::subject(cx, node, &at, Some(subject), "sink")?;
                    (subject, Some(count))
                }
            };
            Ok(SinkKind::Nats {
                url,
                servers,
                subject,
                partitions,
            })
        }
        None => Err(cx.err(
            kind,
            join(node, "subject"),
            "a `nats` sink needs `subject`, the subject to publish to (a stream must capture it)",
        )),
    }
}
