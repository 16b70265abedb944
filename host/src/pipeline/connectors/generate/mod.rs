//! `type = "generate"`: workload W1's values, made on a blocking thread. Event `i` is `size`
//! bytes, byte `j` being `b'a' + (i + j) % 26`; its position is in value bytes, all known
//! ahead, so a progress line can say how far it is. With `keys` and `event_time`, event `i`
//! also has the key `k{(i * 7919) % keys}` and the time `event_time + i` (workload W5).

use std::sync::atomic::Ordering;

use super::parts::SourceParts;
use super::seam::{ConnectorError, RunningSource};
use crate::config::{self, SourceKind};
use crate::pipeline::pool;

/// `type = "generate"`.
pub(crate) struct GenerateSource {
    config: config::Source,
    count: u64,
    size: usize,
    shape: Shape,
}

/// Keys and times of generated events, when asked for.
#[derive(Clone, Copy)]
struct Shape {
    keys: Option<u64>,
    event_time: Option<u64>,
}

impl GenerateSource {
    pub(crate) fn new(config: &config::Source) -> GenerateSource {
        let SourceKind::Generate {
            count,
            size,
            keys,
            event_time,
        } = config.kind
        else {
            unreachable!("the registry makes a generator of a generator's configuration")
        };
        GenerateSource {
            config: config.clone(),
            count,
            size,
            shape: Shape { keys, event_time },
        }
    }
}

impl super::seam::Source for GenerateSource {
    fn ends(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("{} generated events of {} bytes", self.count, self.size)
    }

    fn start(self: Box<Self>, parts: SourceParts) -> Result<RunningSource, ConnectorError> {
        let task = tokio::task::spawn_blocking(move || {
            generate(&self.config, self.count, self.size, self.shape, &parts)
        });
        Ok(RunningSource { task, finish: None })
    }
}

/// W1's values: event `i` is `size` bytes, byte `j` being `b'a' + (i + j) % 26`.
fn generate(
    source: &config::Source,
    count: u64,
    size: usize,
    shape: Shape,
    parts: &SourceParts,
) -> bool {
    let mut key = String::new();
    // Every value is a window of one repeating alphabet, so making one is a single copy.
    let pattern: Vec<u8> = (0..size + 26).map(|j| b'a' + (j % 26) as u8).collect();
    // Its position is in values: their bytes, all known ahead.
    let total = count.saturating_mul(size as u64);
    parts.metrics.size.store(total, Ordering::Relaxed);
    let mut i = 0u64;
    while i < count {
        if parts.ctx.stop.is_cancelled() {
            return true;
        }
        let n = (count - i).min(source.batch_size as u64);
        let mut events = pool::take();
        events.data.reserve(n as usize * size);
        events
            .events
            .reserve(n as usize * weir_sandbox::events::EVENT_STRIDE);
        for k in i..i + n {
            let start = (k % 26) as usize;
            let value = &pattern[start..start + size];
            if shape.keys.is_none() && shape.event_time.is_none() {
                events.push_value(value);
                continue;
            }
            if let Some(keys) = shape.keys {
                use std::fmt::Write;
                key.clear();
                let _ = write!(key, "k{}", k.wrapping_mul(7919) % keys);
            }
            let time = shape.event_time.map(|t| t.saturating_add(k));
            let key = shape.keys.map(|_| key.as_bytes());
            events.push_parts(key, value, std::iter::empty(), time);
        }
        parts.outputs.send_blocking(parts.emit(events));
        i += n;
        parts
            .metrics
            .position
            .store(i.saturating_mul(size as u64), Ordering::Relaxed);
    }
    false
}
