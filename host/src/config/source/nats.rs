//! `type = "nats"`: a durable pull consumer of a NATS JetStream stream.

use std::ops::Range;
use std::time::Duration;

use crate::config::error::{ConfigError, Ctx, Sp, join};
use crate::config::nats_url;
use crate::config::partitions::{self, Partitions};
use crate::config::ranges::{ACK_WAIT, MAX_ACK_PENDING, NATS_BATCH};
use crate::config::reader::Table;
use crate::config::source::SourceKind;
use crate::config::units;

/// A NATS JetStream source.
#[derive(Debug, Clone)]
pub struct NatsSource {
    /// As written: one server URL or a comma-separated list of seeds.
    pub url: String,
    /// The servers of `url`, checked; the client connects to one and learns the cluster.
    pub servers: Vec<async_nats::ServerAddr>,
    pub stream: String,
    /// The durable consumer's name; created with `subject` as its filter if it does not exist.
    pub consumer: String,
    pub subject: Option<String>,
    /// Messages fetched per request, in [`ranges::NATS_BATCH`](crate::config::ranges::NATS_BATCH); the source's batch size unless set.
    pub batch: usize,
    /// In [`ranges::ACK_WAIT`](crate::config::ranges::ACK_WAIT): 1 s to a day; 30 s unless set.
    pub ack_wait: Duration,
    /// In [`ranges::MAX_ACK_PENDING`](crate::config::ranges::MAX_ACK_PENDING); 4 × the fetch batch unless set.
    pub max_ack_pending: usize,
    /// The header whose value becomes the event's key.
    pub key_header: Option<String>,
    /// The partitions of `subject` this source consumes (`SUBJECT.P`, each through a durable
    /// consumer `CONSUMER-P` of its own), when it is partitioned.
    pub partitions: Option<Partitions>,
}

/// The keys of a `nats` source beyond the common ones.
pub(crate) const KEYS: &[&str] = &[
    "url",
    "stream",
    "consumer",
    "subject",
    "batch",
    "ack_wait",
    "max_ack_pending",
    "key_header",
    "partitions",
    "partition_count",
];

/// A `nats` source as written.
pub(crate) struct Raw {
    pub url: Option<Sp<String>>,
    pub stream: Option<Sp<String>>,
    pub consumer: Option<Sp<String>>,
    pub subject: Option<Sp<String>>,
    pub batch: Option<Sp<i128>>,
    pub ack_wait: Option<Sp<String>>,
    pub max_ack_pending: Option<Sp<i128>>,
    pub key_header: Option<Sp<String>>,
    pub partitions: Option<Sp<Vec<Sp<i128>>>>,
    pub partition_count: Option<Sp<i128>>,
}

pub(crate) fn read(t: &Table) -> Result<Raw, ConfigError> {
    Ok(Raw {
        url: t.text("url")?,
        stream: t.text("stream")?,
        consumer: t.text("consumer")?,
        subject: t.text("subject")?,
        batch: t.whole("batch")?,
        ack_wait: t.duration("ack_wait")?,
        max_ack_pending: t.whole("max_ack_pending")?,
        key_header: t.text("key_header")?,
        partitions: t.wholes("partitions", "[0, 1]")?,
        partition_count: t.whole("partition_count")?,
    })
}

/// `kind` is the span of `type`, where a missing key is blamed; `batch_size` is the source's,
/// the fetch batch unless `batch` is set.
pub(crate) fn check(
    cx: &Ctx,
    node: &str,
    kind: &Range<usize>,
    n: &Raw,
    batch_size: usize,
) -> Result<SourceKind, ConfigError> {
    let required = |value: &Option<Sp<String>>, key: &str, what: &str| {
        value.as_ref().map(|v| v.get_ref().clone()).ok_or_else(|| {
            cx.err(
                kind,
                join(node, key),
                format!("a `nats` source needs `{key}`, {what}"),
            )
        })
    };
    let stream = required(&n.stream, "stream", "the JetStream stream to read")?;
    let consumer = required(
        &n.consumer,
        "consumer",
        "the name of its durable pull consumer",
    )?;
    let batch = match &n.batch {
        Some(v) => units::whole(cx, v, &join(node, "batch"), &NATS_BATCH)?,
        None => batch_size,
    };
    let ack_wait = match &n.ack_wait {
        Some(v) => units::duration(cx, v, &join(node, "ack_wait"), &ACK_WAIT)?,
        None => Duration::from_secs(30),
    };
    let max_ack_pending = match &n.max_ack_pending {
        Some(v) => units::whole(cx, v, &join(node, "max_ack_pending"), &MAX_ACK_PENDING)?,
        None => (4 * batch).clamp(*MAX_ACK_PENDING.start(), *MAX_ACK_PENDING.end()),
    };
    let (url, servers) = nats_url::check(cx, n.url.as_ref(), &join(node, "url"))?;
    let (subject, partitions) = partitioned(cx, node, n)?;
    Ok(SourceKind::Nats(NatsSource {
        url,
        servers,
        stream,
        consumer,
        subject,
        batch,
        ack_wait,
        max_ack_pending,
        key_header: n.key_header.as_ref().map(|s| s.get_ref().clone()),
        partitions,
    }))
}

/// The subject, and the partitions of it the source consumes: `partitions` and
/// `partition_count` go together, and need a plain `subject`.
fn partitioned(
    cx: &Ctx,
    node: &str,
    n: &Raw,
) -> Result<(Option<String>, Option<Partitions>), ConfigError> {
    let plain = n.subject.as_ref().map(|s| s.get_ref().clone());
    match (&n.partitions, &n.partition_count) {
        (None, None) => Ok((plain, None)),
        (Some(list), None) => Err(cx.err(
            &list.span(),
            join(node, "partition_count"),
            "`partitions` needs `partition_count`, the number of partitions the subject is split \
             into (the `partitions` of the sink that publishes to it)",
        )),
        (None, Some(count)) => Err(cx.err(
            &count.span(),
            join(node, "partitions"),
            "`partition_count` needs `partitions`, the partitions this source consumes, such as \
             `partitions = [0, 1]`",
        )),
        (Some(list), Some(count)) => {
            let count = partitions::count(cx, count, &join(node, "partition_count"))?;
            let owned = partitions::owned(cx, node, list, count)?;
            let subject =
                partitions::subject(cx, node, &list.span(), n.subject.as_ref(), "source")?;
            Ok((Some(subject), Some(Partitions { owned, count })))
        }
    }
}
