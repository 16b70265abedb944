//! NATS JetStream: a durable pull consumer as a source, a subject captured by a stream as a
//! sink.
//!
//! Both connect before any event is read ([`source::prepare_source`], [`sink::prepare_sink`]), so an
//! unreachable server, a missing stream or a subject no stream captures stops the run at once
//! with an error that names the URL and the stream or subject. After that a lost connection is
//! the client's to restore: it reconnects with backoff ([`reconnect_delay`]) for as long as the
//! run lasts, and nothing is lost meanwhile. The source's messages stay unacknowledged on the
//! server until their batch is done, and are redelivered if the acks never arrive; the sink
//! republishes under the same message ids what the server did not confirm.
//!
//! - `source`: messages in from a durable consumer, or from one per partition the source
//!   owns (`SUBJECT.p`), batched by size and linger; each batch registered with the source's
//!   [`ledger::Acks`].
//! - `ledger`: which messages each batch holds; acks (or `Term` for dead letters) once the
//!   batch is done, or with stages that keep state in the data folder once the commit round
//!   covering it is durable; progress acks for batches slow to finish.
//! - `committed`: with such state, the stream sequences committed per consumer: the position
//!   the rounds write, and what a redelivered message is compared to after a restart.
//! - `sink`: events out, to one subject or to the partition of each event's key, with message
//!   ids from their origins, acknowledged upstream only after the server's PubAck.

pub(crate) mod committed;
pub(crate) mod ledger;
pub(crate) mod sink;
pub(crate) mod source;

use std::time::Duration;

/// Why a NATS source or sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("NATS at {url}: cannot use stream `{stream}`: {message} (create the stream first)")]
    Stream {
        url: String,
        stream: String,
        message: String,
    },
    #[error("NATS at {url}: cannot use consumer `{consumer}` of stream `{stream}`: {message}")]
    Consumer {
        url: String,
        stream: String,
        consumer: String,
        message: String,
    },
    #[error(
        "NATS at {url}: no stream captures subject `{subject}`: {message} (a NATS sink publishes to a stream: create one that captures the subject)"
    )]
    Subject {
        url: String,
        subject: String,
        message: String,
    },
}

/// The longest wait between two attempts to reconnect. Blocks a dead server from costing a
/// busy loop of attempts, while a restarted one is found again within seconds.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// How long to wait before reconnection attempt `attempts`: 50 ms doubling to
/// [`MAX_RECONNECT_DELAY`], with jitter so that many processes do not retry in step.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let base = Duration::from_millis(50)
        .saturating_mul(1 << attempts.min(16))
        .min(MAX_RECONNECT_DELAY);
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Connects to one of `servers` (the seeds of `url`, which errors name) for the node `node`:
/// fails at once when none can be reached, and reconnects by itself for ever after, to any
/// seed or to a server the cluster announced.
async fn connect(
    url: &str,
    servers: &[async_nats::ServerAddr],
    node: &str,
) -> Result<async_nats::Client, NatsError> {
    let name = node.to_string();
    async_nats::ConnectOptions::new()
        .name(format!("weir {node}"))
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let name = name.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!(node = %name, "NATS connection lost; reconnecting")
                    }
                    async_nats::Event::Connected => {
                        tracing::info!(node = %name, "NATS connection (re)established")
                    }
                    other => tracing::debug!(node = %name, "NATS: {other}"),
                }
            }
        })
        .connect(servers)
        .await
        .map_err(|e| NatsError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}
