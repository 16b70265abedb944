//! Counts events per key in event-time windows: workload W5's stage.
//!
//! Each event goes to the windows of its timestamp (by its key; no key is the empty key), as
//! `weir_plugin::window` places them; when the watermark passes a window's end, the stage
//! emits `{"window_start":MS,"key":"KEY","count":N}` for each key seen in it. The counts live
//! in the host's state, so they survive restarts with a data folder and never double count.
//! Settings: `window` (`tumbling`, `hopping` or `session`), `size_ms`, `slide_ms` (hopping)
//! and `gap_ms` (session).

use weir_plugin::time::Timer;
use weir_plugin::window::{Aggregate, Window, Windowed, Windows};
use weir_plugin::{
    Batch, Declare, Emitter, Event, EventView, Failure, Outputs, Settings, Transform,
};

/// A count, as 8 little-endian bytes in the host's state.
pub struct Count;

impl Aggregate for Count {
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

    fn finish(&self, key: &[u8], window: Window, acc: u64) -> Vec<u8> {
        let mut out = format!("{{\"window_start\":{},\"key\":\"", window.start).into_bytes();
        json_text(&mut out, key);
        out.extend_from_slice(format!("\",\"count\":{acc}}}").as_bytes());
        out
    }

    fn encode(&self, acc: &u64) -> Vec<u8> {
        acc.to_le_bytes().to_vec()
    }

    fn decode(&self, bytes: &[u8]) -> u64 {
        bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
    }
}

/// Appends `text` as the inside of a JSON string (bytes that are not UTF-8 are replaced).
pub fn json_text(out: &mut Vec<u8>, text: &[u8]) {
    for c in String::from_utf8_lossy(text).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

pub struct WindowCount {
    windowed: Windowed<Count>,
}

impl Transform for WindowCount {
    const SETTINGS: &'static [Declare] = &[
        Declare::text("window")
            .default("tumbling")
            .help("tumbling, hopping or session"),
        Declare::integer("size_ms")
            .default("60000")
            .help("the window's length (tumbling, hopping), in milliseconds"),
        Declare::integer("slide_ms")
            .default("0")
            .help("how far apart hopping windows start (0: the size)"),
        Declare::integer("gap_ms")
            .default("60000")
            .help("the quiet time that ends a session, in milliseconds"),
    ];

    fn init(settings: &Settings) -> Result<Self, String> {
        let ms = |name: &str| -> Result<u64, String> {
            let v: i64 = settings
                .require(name)?
                .parse()
                .map_err(|e| format!("{name}: {e}"))?;
            u64::try_from(v).map_err(|_| format!("{name} must not be negative"))
        };
        let size = ms("size_ms")?.max(1);
        let windows = match settings.require("window")? {
            "tumbling" => Windows::Tumbling { size },
            "hopping" => {
                let slide = ms("slide_ms")?;
                Windows::Hopping {
                    size,
                    slide: if slide == 0 { size } else { slide },
                }
            }
            "session" => Windows::Session {
                gap: ms("gap_ms")?.max(1),
            },
            other => {
                return Err(format!(
                    "unknown window {other:?}: use tumbling, hopping or session"
                ));
            }
        };
        Ok(WindowCount {
            windowed: Windowed::new(windows, Count),
        })
    }

    fn process(&mut self, _: &EventView<'_>, _: &mut Emitter<'_>) -> Result<(), Failure> {
        Err(Failure::reject("window-count works a batch at a time"))
    }

    fn process_batch(&mut self, batch: &Batch, out: &mut Outputs<'_>) {
        self.windowed.process_batch(batch, out);
    }

    fn on_timer(&mut self, fired: Vec<Timer>) -> Vec<Event> {
        self.windowed.on_timer(fired)
    }
}

weir_plugin::export_stage!(WindowCount);
