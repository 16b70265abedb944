//! Finds addresses with too many sshd authentication failures in a minute: the `brute-force`
//! example's stage.
//!
//! It reads what `sshd-parse` and `auth-filter` make (`{"ts":"Dec 10 06:55:46",...,"msg":...}`),
//! keys each failure by the client address in its message (`from ADDR`, `rhost=ADDR` or
//! `[ADDR]`) and
//! places it in time by its syslog timestamp (in the `year` setting, UTC), counts failures per
//! address in tumbling windows of `window_s` seconds aligned to the epoch, and when a window
//! closes emits `{"ip":"ADDR","window_start":MS,"failures":N}` if N reached `threshold`. The
//! counts live in the host's state (`weir_plugin::window`).

use weir_plugin::time::Timer;
use weir_plugin::window::{Aggregate, Window, Windowed, Windows};
use weir_plugin::{
    Batch, Declare, Emitter, Event, EventView, Failure, Outputs, Settings, Transform,
};

struct Failures {
    threshold: u64,
}

impl Aggregate for Failures {
    type Acc = u64;

    fn init(&self) -> u64 {
        0
    }

    fn add(&self, acc: &mut u64, _: &EventView<'_>) {
        *acc += 1;
    }

    fn merge(&self, into: &mut u64, other: u64) {
        *into += other;
    }

    /// Below the threshold a window finishes as nothing, which `on_timer` leaves out.
    fn finish(&self, key: &[u8], window: Window, acc: u64) -> Vec<u8> {
        if acc < self.threshold {
            return Vec::new();
        }
        format!(
            "{{\"ip\":\"{}\",\"window_start\":{},\"failures\":{acc}}}",
            String::from_utf8_lossy(key),
            window.start
        )
        .into_bytes()
    }

    fn encode(&self, acc: &u64) -> Vec<u8> {
        acc.to_le_bytes().to_vec()
    }

    fn decode(&self, bytes: &[u8]) -> u64 {
        bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
    }
}

/// The text of a JSON string field `"name":"..."` of a flat object as sshd-parse writes it.
fn field<'a>(json: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let tag = format!("\"{name}\":\"");
    let at = json.windows(tag.len()).position(|w| w == tag.as_bytes())? + tag.len();
    let len = json[at..].iter().position(|&b| b == b'"')?;
    Some(&json[at..at + len])
}

/// The client address in a failure message: the word after `from ` or `rhost=`, or the one in
/// brackets (`reverse mapping checking getaddrinfo for NAME [ADDR] failed`).
fn address(msg: &[u8]) -> Option<&[u8]> {
    for (tag, stop) in [(&b"from "[..], b' '), (b"rhost=", b' '), (b"[", b']')] {
        if let Some(at) = msg.windows(tag.len()).position(|w| w == tag) {
            let rest = &msg[at + tag.len()..];
            let end = rest.iter().position(|&b| b == stop).unwrap_or(rest.len());
            if end > 0 {
                return Some(&rest[..end]);
            }
        }
    }
    None
}

/// `MON DD HH:MM:SS` in `year`, as milliseconds since the Unix epoch (UTC).
fn syslog_time(ts: &[u8], year: i64) -> Option<u64> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let text = std::str::from_utf8(ts).ok()?;
    let mut parts = text.split_whitespace();
    let name = parts.next()?.as_bytes();
    let month = MONTHS.iter().position(|m| *m == name)? as i64 + 1;
    let day: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + m) * 60 + s)
        .ok()
        .map(|secs| secs * 1000)
}

pub struct BruteForce {
    windowed: Windowed<Failures>,
}

impl Transform for BruteForce {
    const SETTINGS: &'static [Declare] = &[
        Declare::integer("threshold")
            .default("5")
            .help("failures from one address in one window that make a finding"),
        Declare::integer("window_s")
            .default("60")
            .help("the window's length, in seconds"),
        Declare::integer("year")
            .default("2024")
            .help("the year of the log's timestamps (syslog lines carry none)"),
    ];

    fn init(settings: &Settings) -> Result<Self, String> {
        let int = |name: &str| -> Result<i64, String> {
            settings
                .require(name)?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        let threshold = u64::try_from(int("threshold")?).map_err(|_| "threshold < 0")?;
        let window = u64::try_from(int("window_s")?)
            .map_err(|_| "window_s < 0")?
            .max(1);
        let year = int("year")?;
        let windowed = Windowed::new(
            Windows::Tumbling {
                size: window * 1000,
            },
            Failures { threshold },
        )
        .with_extract(move |event| {
            let json = event.value();
            let ts = field(json, "ts").ok_or_else(|| Failure::reject("no `ts` field"))?;
            let time = syslog_time(ts, year)
                .ok_or_else(|| Failure::reject("`ts` is not `MON DD HH:MM:SS`"))?;
            let msg = field(json, "msg").ok_or_else(|| Failure::reject("no `msg` field"))?;
            let ip =
                address(msg).ok_or_else(|| Failure::reject("no client address in the message"))?;
            Ok((ip.to_vec(), time))
        });
        Ok(BruteForce { windowed })
    }

    fn process(&mut self, _: &EventView<'_>, _: &mut Emitter<'_>) -> Result<(), Failure> {
        Err(Failure::reject("brute-force works a batch at a time"))
    }

    fn process_batch(&mut self, batch: &Batch, out: &mut Outputs<'_>) {
        self.windowed.process_batch(batch, out);
    }

    fn on_timer(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        let mut found = self.windowed.on_timer(fired);
        found.retain(|e| !e.value.is_empty());
        found
    }
}

weir_plugin::export_stage!(BruteForce);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_and_the_time() {
        assert_eq!(
            address(b"Failed password for root from 112.95.230.3 port 45378 ssh2"),
            Some(&b"112.95.230.3"[..])
        );
        assert_eq!(
            address(b"authentication failure; logname= uid=0 rhost=183.62.140.253  user=root"),
            Some(&b"183.62.140.253"[..])
        );
        assert_eq!(
            address(b"reverse mapping checking getaddrinfo for x.com [173.234.31.186] failed"),
            Some(&b"173.234.31.186"[..])
        );
        // 2024-12-10T06:55:46Z
        assert_eq!(
            syslog_time(b"Dec 10 06:55:46", 2024),
            Some(1_733_813_746_000)
        );
    }
}
