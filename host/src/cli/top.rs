//! `weir top`: a live view of a running pipeline, from the admin API's `GET /nodes`.
//!
//! Each look fetches a [`Snapshot`]; rates, latency quantiles and fuel per event come from the
//! difference between the last two (`rows`), so they describe the last interval, not the
//! whole run. `--once` prints one plain-text table after two looks; without it, a ratatui
//! view redraws every interval until `q`, Esc or Ctrl-C. Both lay out the same rows, sized
//! for an 80-column terminal; failures by kind go below the table, one line per node, and so
//! does each stage's event time: its watermark, and how far it is behind the clock (the lag
//! of a live stream; for a replay of old data, its age).

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Paragraph, Row, Table};

use super::{AdminArgs, CommandResult};
use crate::control::client::Client;
use crate::observe::api::{NodeSnapshot, Snapshot, quantile};

/// One node's line of the view.
#[derive(Debug, Clone)]
struct Line {
    name: String,
    kind: String,
    rate_in: f64,
    rate_out: f64,
    queued: u64,
    failed: u64,
    /// `kind n, kind n` of the node's failures so far.
    failures: String,
    p50: Option<f64>,
    p99: Option<f64>,
    fuel_per_event: Option<f64>,
    breaker_open: bool,
    version: String,
    watermark_ms: u64,
}

const HEADER: [&str; 10] = [
    "NODE", "IN/s", "OUT/s", "QUEUE", "FAIL", "P50", "P99", "FUEL/EV", "BRK", "VERSION",
];
/// Column widths: 71 characters and 9 spaces between them, 80 in all.
const WIDTHS: [usize; 10] = [11, 7, 7, 6, 6, 6, 6, 7, 4, 11];

/// The view's lines from the look before (if any) and this one.
fn lines(before: Option<&Snapshot>, now: &Snapshot) -> Vec<Line> {
    let dt = before.map_or(0.0, |b| now.uptime_s - b.uptime_s);
    now.nodes
        .iter()
        .map(|n| {
            let prev = before.and_then(|b| b.nodes.iter().find(|p| p.name == n.name));
            line(n, prev, dt, &now.call_bounds)
        })
        .collect()
}

fn line(n: &NodeSnapshot, prev: Option<&NodeSnapshot>, dt: f64, bounds: &[f64]) -> Line {
    let rate = |now: u64, then: fn(&NodeSnapshot) -> u64| match prev {
        Some(p) if dt > 0.0 => now.saturating_sub(then(p)) as f64 / dt,
        _ => 0.0,
    };
    // Latency and fuel over the interval when it saw calls, else over the whole run.
    let interval: Vec<u64> = match prev {
        Some(p) if p.calls < n.calls => n
            .call_buckets
            .iter()
            .zip(&p.call_buckets)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect(),
        _ => n.call_buckets.clone(),
    };
    let (fuel, events) = match prev {
        Some(p) if p.events_in < n.events_in => (n.fuel - p.fuel, n.events_in - p.events_in),
        _ => (n.fuel, n.events_in),
    };
    let stage = n.kind == "stage";
    Line {
        name: n.name.clone(),
        kind: n.kind.clone(),
        rate_in: rate(n.events_in, |p| p.events_in),
        rate_out: rate(n.events_out, |p| p.events_out),
        queued: n.queued,
        failed: n.failed,
        failures: n
            .failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        p50: quantile(bounds, &interval, 0.5),
        p99: quantile(bounds, &interval, 0.99),
        fuel_per_event: (stage && events > 0).then(|| fuel as f64 / events as f64),
        breaker_open: n.breaker_open,
        watermark_ms: n.watermark_ms,
        version: n
            .version
            .as_ref()
            .map(|v| {
                format!(
                    "v{} {}",
                    v.id,
                    &v.short_digest[..v.short_digest.len().min(8)]
                )
            })
            .unwrap_or_default(),
    }
}

/// A count or rate in at most 7 characters: `812`, `12.3k`, `4.56M`.
fn number(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// A duration in at most 6 characters: `85us`, `1.2ms`, `3.40s`; `-` without calls.
fn latency(secs: Option<f64>) -> String {
    match secs {
        None => "-".to_string(),
        Some(s) if s < 1e-3 => format!("{:.0}us", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

/// The cells of a line, each within its column.
fn cells(l: &Line) -> [String; 10] {
    let name: String = l.name.chars().take(WIDTHS[0]).collect();
    let dash = |s: bool, v: String| if s { v } else { "-".to_string() };
    let stage = l.kind == "stage";
    [
        name,
        dash(l.kind != "source", number(l.rate_in)),
        dash(l.kind != "sink", number(l.rate_out)),
        dash(l.kind != "source", number(l.queued as f64)),
        number(l.failed as f64),
        dash(stage, latency(l.p50)),
        dash(stage, latency(l.p99)),
        l.fuel_per_event.map_or("-".to_string(), number),
        dash(
            stage,
            if l.breaker_open { "open" } else { "shut" }.to_string(),
        ),
        l.version.clone(),
    ]
}

/// The lines below the table: failures by kind, then each stage's event time.
fn notes(lines: &[Line], now_ms: u64) -> Vec<String> {
    let failing = (lines.iter().filter(|l| l.failed > 0))
        .map(|l| format!("failed at {}: {}", l.name, l.failures));
    let timed = (lines.iter())
        .filter(|l| l.kind == "stage" && l.watermark_ms != 0)
        .map(|l| {
            let name: String = l.name.chars().take(WIDTHS[0]).collect();
            format!(
                "event time at {name}: {}",
                watermark(l.watermark_ms, now_ms)
            )
        });
    failing.chain(timed).collect()
}

/// A watermark as UTC time and how far it is behind `now_ms`.
fn watermark(ms: u64, now_ms: u64) -> String {
    if ms == u64::MAX {
        return "the input has ended".to_string();
    }
    let behind = now_ms.saturating_sub(ms) as f64 / 1000.0;
    let lag = if behind < 60.0 {
        format!("{behind:.1}s")
    } else if behind < 3600.0 {
        format!("{:.1}m", behind / 60.0)
    } else if behind < 86_400.0 {
        format!("{:.1}h", behind / 3600.0)
    } else {
        format!("{:.1}d", behind / 86_400.0)
    };
    format!("watermark {}, {lag} behind the clock", utc(ms))
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (the proleptic Gregorian
/// calendar, by days since 1970-03-01 in 400-year eras).
fn utc(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// The first line: state, nodes, events in flight.
fn title(s: &Snapshot) -> String {
    format!(
        "weir top: {}, up {:.0} s, {} nodes, {} events in flight (bound {})",
        s.state,
        s.uptime_s,
        s.nodes.len(),
        s.in_flight,
        s.in_flight_bound
    )
}

/// The plain-text view: a title, the table, then failures by kind.
fn text(before: Option<&Snapshot>, now: &Snapshot) -> String {
    let mut out = title(now) + "\n";
    let row = |cells: &[String]| {
        cells
            .iter()
            .zip(WIDTHS)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    out += &row(&HEADER.map(String::from));
    out.push('\n');
    let lines = lines(before, now);
    for l in &lines {
        out += row(&cells(l)).trim_end();
        out.push('\n');
    }
    for note in notes(&lines, weir_sandbox::wall_ms()) {
        out += &note;
        out.push('\n');
    }
    out
}

pub(super) fn top(once: bool, interval: Duration, admin: &AdminArgs) -> CommandResult {
    let client = super::admin::connect(admin.admin.as_deref(), &admin.auth)?;
    let look = |client: &Client| {
        client
            .get::<Snapshot>("/nodes")
            .map_err(super::admin::client_failed)
    };
    if once {
        let first = look(&client)?;
        std::thread::sleep(interval);
        let second = look(&client)?;
        out!("{}", text(Some(&first), &second).trim_end());
        return Ok(());
    }
    live(&client, interval, look)
}

/// The ratatui view, until `q`, Esc or Ctrl-C, or the pipeline goes away.
fn live(
    client: &Client,
    interval: Duration,
    look: impl Fn(&Client) -> Result<Snapshot, (u8, String)>,
) -> CommandResult {
    let mut before: Option<Snapshot> = None;
    let mut now = look(client)?;
    let mut terminal = ratatui::init();
    let result = loop {
        let drawn = terminal.draw(|frame| draw(frame, before.as_ref(), &now));
        if let Err(e) = drawn {
            break Err((1, format!("cannot draw: {e}")));
        }
        if quit_within(interval) {
            break Ok(());
        }
        match look(client) {
            Ok(next) => before = Some(std::mem::replace(&mut now, next)),
            Err(e) => break Err(e),
        }
    };
    ratatui::restore();
    result
}

/// Waits up to `interval` for a key that quits.
fn quit_within(interval: Duration) -> bool {
    let until = Instant::now() + interval;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if !event::poll(left).unwrap_or(false) {
            return false;
        }
        if let Ok(Event::Key(key)) = event::read() {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                return true;
            }
        }
    }
    false
}

fn draw(frame: &mut ratatui::Frame, before: Option<&Snapshot>, now: &Snapshot) {
    let lines = lines(before, now);
    let failing = notes(&lines, weir_sandbox::wall_ms());
    let [head, table, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(failing.len().min(6) as u16 + 1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title(now)), head);
    let rows = lines.iter().map(|l| {
        let style = if l.breaker_open {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        Row::new(cells(l)).style(style)
    });
    let widths = WIDTHS.map(|w| Constraint::Length(w as u16));
    let header = Row::new(HEADER).style(Style::default().add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header), table);
    let mut foot_text = failing.join("\n");
    foot_text.push_str("\nq: quit");
    frame.render_widget(Paragraph::new(foot_text.trim_start().to_string()), foot);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::api::LiveVersion;

    fn node(name: &str, kind: &str, events: u64, calls: u64) -> NodeSnapshot {
        NodeSnapshot {
            name: name.into(),
            kind: kind.into(),
            events_in: events,
            events_out: events,
            calls,
            fuel: events * 100,
            call_buckets: vec![calls, 0],
            version: (kind == "stage").then(|| LiveVersion {
                id: 1,
                digest: "ab".repeat(32),
                short_digest: "abababababab".into(),
            }),
            ..NodeSnapshot::default()
        }
    }

    fn snapshot(uptime: f64, events: u64) -> Snapshot {
        Snapshot {
            state: "running".into(),
            uptime_s: uptime,
            in_flight: 0,
            in_flight_bound: 1000,
            call_bounds: vec![0.001],
            nodes: vec![
                node("in", "source", events, 0),
                node("parse", "stage", events, events / 10),
                node("out", "sink", events, 0),
            ],
        }
    }

    #[test]
    fn a_stage_s_event_time_shows_as_utc_and_its_lag() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_733_815_680_123), "2024-12-10T07:28:00.123Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        let mut now = snapshot(3.0, 21_000);
        now.nodes[1].watermark_ms = 1_733_815_680_000;
        let shown = notes(&lines(None, &now), 1_733_815_692_500);
        assert_eq!(
            shown,
            ["event time at parse: watermark 2024-12-10T07:28:00.000Z, 12.5s behind the clock"]
        );
        now.nodes[1].watermark_ms = u64::MAX;
        let ended = notes(&lines(None, &now), 0);
        assert_eq!(ended, ["event time at parse: the input has ended"]);
    }

    #[test]
    fn rates_come_from_the_difference_between_two_looks() {
        let text = text(Some(&snapshot(1.0, 1000)), &snapshot(3.0, 21_000));
        let parse = text.lines().find(|l| l.starts_with("parse")).unwrap();
        assert!(parse.contains("10.0k"), "{text}");
        assert!(parse.contains("v1 abababab"), "{text}");
        assert!(parse.contains("100"), "fuel per event: {text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "over 80 columns: {line:?}");
        }
    }
}
