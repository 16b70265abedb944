//! Workload W5 of `WORKLOADS.md`: keyed event-time windows, the counts in host state.
//!
//! ```text
//! cargo bench --bench w5 -- [--runs N] [--events N] [--keys N] [--large N] [--cache BYTES] [--smoke]
//! ```
//!
//! 2,000,000 generated events (event `i`: key `k{(i * 7919) % 100000}`, a 100-byte value,
//! time `1_700_000_000_000 + i` ms) counted per key in tumbling windows of 60 s by the
//! `window-count` plugin, whose accumulators and timers are the host's keyed state. Modes, in
//! the same run, each round rotating which goes first:
//!
//! - `ceiling`: the plain native pipeline, no weir: the same batches counted in a
//!   `HashMap<(window, key), u64>`, each window's lines made as the time passes its end, no
//!   sandbox, no disk.
//! - `weir memory`: the `weir` binary, state in memory, sink `null`.
//! - `weir data_dir`: the same with `[pipeline] data_dir` and `checkpoint_interval = "1s"`: the
//!   state on disk (redb), committed with the positions.
//! - `weir memory, workers = 2`: state in memory, the stage on two workers routed by key.
//!
//! Before timing, each weir mode runs once into a file whose lines must equal the ceiling's as a
//! set. Reported: events/s (median and range), the ratio to the ceiling, peak RSS, and the bytes
//! in the data folder at the end.
//!
//! Then a state larger than memory (`--large N`, 10,000,000 in the issue's figure; 0 skips it):
//! N generated events with N distinct keys, each written by the `count-keys` fixture as a
//! 100-byte value, with `data_dir` and `state_cache_bytes = --cache` (64 MiB unless given).
//! Reported: the time, events/s, peak RSS and the data folder's bytes; checked: the store holds
//! N keys afterwards (`weir state ls --data-dir`).

#[path = "workloads/binary.rs"]
#[allow(dead_code)]
mod binary;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use binary::Weir;

const START: u64 = 1_700_000_000_000;
const WINDOW: u64 = 60_000;
const BATCH: u64 = 256;

struct Options {
    runs: usize,
    events: u64,
    keys: u64,
    /// Keys of the state larger than memory; 0, none.
    large: u64,
    /// Its `state_cache_bytes`.
    cache: u64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        runs: 3,
        events: 2_000_000,
        keys: 100_000,
        large: 0,
        cache: 64 << 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut next = |what: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{what} needs a value"))?
                .parse()
                .with_context(|| what.to_string())
        };
        match a.as_str() {
            "--runs" => o.runs = next("--runs")? as usize,
            "--events" => o.events = next("--events")?,
            "--keys" => o.keys = next("--keys")?,
            "--large" => o.large = next("--large")?,
            "--cache" => o.cache = next("--cache")?,
            "--smoke" => {
                o.runs = 1;
                o.events = 50_000;
                o.keys = 1_000;
                o.large = 100_000;
                o.cache = 1 << 20;
            }
            // What cargo passes to every bench target.
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// One window's line, as window-count writes it.
fn line(start: u64, key: &str, count: u64) -> String {
    format!("{{\"window_start\":{start},\"key\":\"{key}\",\"count\":{count}}}")
}

/// The ceiling: the same events in batches, counted in a map, each window emitted once the
/// time of the events passes its end; returns the lines.
fn ceiling(o: &Options) -> Vec<String> {
    let mut counts: HashMap<(u64, String), u64> = HashMap::new();
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let mut out = Vec::new();
    let mut value = Vec::with_capacity(100);
    let mut i = 0;
    while i < o.events {
        let n = (o.events - i).min(BATCH);
        let mut batch: Vec<(String, u64, Vec<u8>)> = Vec::with_capacity(n as usize);
        for k in i..i + n {
            value.clear();
            value.extend((0..100).map(|j| b'a' + ((k + j) % 26) as u8));
            batch.push((
                format!("k{}", (k * 7919) % o.keys),
                START + k,
                value.clone(),
            ));
        }
        let mut highest = 0;
        for (key, t, _) in &batch {
            let start = t - t % WINDOW;
            *counts.entry((start, key.clone())).or_default() += 1;
            open.insert(start);
            highest = highest.max(*t);
        }
        close(&mut counts, &mut open, highest, &mut out);
        i += n;
    }
    close(&mut counts, &mut open, u64::MAX, &mut out);
    out
}

/// Emits the windows that end at or before `mark`.
fn close(
    counts: &mut HashMap<(u64, String), u64>,
    open: &mut BTreeSet<u64>,
    mark: u64,
    out: &mut Vec<String>,
) {
    while let Some(&start) = open.first() {
        if start + WINDOW > mark {
            break;
        }
        open.pop_first();
        let keys: Vec<(u64, String)> = counts
            .keys()
            .filter(|(s, _)| *s == start)
            .cloned()
            .collect();
        for k in keys {
            let n = counts.remove(&k).unwrap_or(0);
            out.push(line(k.0, &k.1, n));
        }
    }
}

/// A weir mode: state in the data folder or in memory, and the stage's workers.
#[derive(Clone, Copy)]
struct Mode {
    data_dir: bool,
    workers: usize,
}

/// The weir modes, in the order of the table after the ceiling.
const MODES: [Mode; 3] = [
    Mode {
        data_dir: false,
        workers: 1,
    },
    Mode {
        data_dir: true,
        workers: 1,
    },
    Mode {
        data_dir: false,
        workers: 2,
    },
];

fn pipeline(dir: &Path, o: &Options, mode: Mode, sink: &str) -> Result<std::path::PathBuf> {
    let data_dir = mode.data_dir;
    let plugin = weir_test_plugins::plugin("window-count");
    let mut text = String::from("[pipeline]\n");
    if data_dir {
        text += &format!(
            "data_dir = \"{}\"\ncheckpoint_interval = \"1s\"\n",
            dir.join("data").display()
        );
    }
    text += &format!(
        "[sources.gen]\ntype = \"generate\"\ncount = {}\nkeys = {}\nevent_time = {START}\n\n\
         [stages.count]\ninputs = [\"gen\"]\nplugin = \"{}\"\nsettings = {{ size_ms = \"{WINDOW}\" }}\n\
         state_max_keys = 10_000_000\nstate_max_bytes = \"1GiB\"\nworkers = {}\n\n\
         [sinks.out]\ninputs = [\"count\"]\n{sink}\n",
        o.events,
        o.keys,
        plugin.display(),
        mode.workers
    );
    let file = dir.join(format!(
        "w5-{data_dir}-{}-{}.toml",
        mode.workers,
        sink.len()
    ));
    std::fs::write(&file, text)?;
    Ok(file)
}

fn du(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() -> Result<()> {
    let o = options()?;
    let work = tempfile::tempdir()?;
    let weir = Weir {
        bin: env!("CARGO_BIN_EXE_weir").into(),
        cache: work.path().join("cache"),
    };
    let reference: BTreeSet<String> = ceiling(&o).into_iter().collect();
    let total: u64 = reference
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a line of ours");
            v["count"].as_u64().expect("count")
        })
        .sum();
    ensure!(total == o.events, "the ceiling counted {total} events");

    // Each weir mode's content, checked before any timing.
    for (i, mode) in MODES.into_iter().enumerate() {
        let dir = work.path().join(format!("content-{i}"));
        std::fs::create_dir_all(&dir)?;
        let out = dir.join("out.jsonl");
        let sink = format!("type = \"file\"\npath = \"{}\"", out.display());
        let file = pipeline(&dir, &o, mode, &sink)?;
        weir.warm(&file)?;
        weir.run(&file)?;
        let got: BTreeSet<String> = std::fs::read_to_string(&out)?
            .lines()
            .map(str::to_string)
            .collect();
        ensure!(
            got == reference,
            "weir (data_dir: {}, workers: {}) wrote {} lines, {} differ from the ceiling's",
            mode.data_dir,
            mode.workers,
            got.len(),
            got.symmetric_difference(&reference).count()
        );
    }
    eprintln!(
        "W5: every mode's windows equal the ceiling's ({} lines)",
        reference.len()
    );
    // The reference set is large (a line per key and window): freed before the timed runs, so
    // that the harness's own memory cannot show in a child's peak resident set.
    let windows = reference.len();
    drop(reference);

    let modes = [
        "ceiling",
        "weir memory",
        "weir data_dir",
        "weir memory, workers = 2",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut rss = vec![0i64; modes.len()];
    let mut disk = 0;
    for round in 0..o.runs {
        for m in (0..modes.len()).map(|k| (k + round) % modes.len()) {
            let secs = match m {
                0 => {
                    let started = Instant::now();
                    let lines = ceiling(&o);
                    let took = started.elapsed();
                    ensure!(lines.len() == windows, "the ceiling changed");
                    took
                }
                _ => {
                    let dir = work.path().join(format!("timed-{m}-{round}"));
                    std::fs::create_dir_all(&dir)?;
                    let file = pipeline(&dir, &o, MODES[m - 1], "type = \"null\"")?;
                    let run = weir.run(&file)?;
                    rss[m] = rss[m].max(run.max_rss_kib);
                    if m == 2 {
                        disk = du(&dir.join("data"));
                    }
                    run.seconds("elapsed_s")?
                }
            };
            rates[m].push(o.events as f64 / secs.max(Duration::from_micros(1)).as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ceiling_rate = median(&mut rates[0].clone());
    println!(
        "W5: {} events, {} keys, windows of {} s, {} runs",
        o.events,
        o.keys,
        WINDOW / 1000,
        o.runs
    );
    println!("| mode | M events/s (median, range) | / ceiling | peak RSS |");
    println!("|---|---|---|---|");
    for (m, name) in modes.iter().enumerate() {
        let v = &mut rates[m];
        let med = median(v);
        let rss = if m == 0 {
            "".to_string()
        } else {
            format!("{} MiB", rss[m] / 1024)
        };
        println!(
            "| {name} | {:.3} ({:.3}–{:.3}) | {:.2} | {rss} |",
            med / 1e6,
            v[0] / 1e6,
            v[v.len() - 1] / 1e6,
            med / ceiling_rate
        );
    }
    println!("bytes in data_dir after a run: {disk}");
    if o.large > 0 {
        large_state(&weir, &o, work.path())?;
    }
    Ok(())
}

/// The state larger than memory: one run, timed, then the store's keys counted.
fn large_state(weir: &Weir, o: &Options, work: &Path) -> Result<()> {
    let dir = work.join("large");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let plugin = weir_test_plugins::plugin("fixture-count-keys");
    let text = format!(
        "[pipeline]\ndata_dir = \"{}\"\ncheckpoint_interval = \"1s\"\n\n\
         [sources.gen]\ntype = \"generate\"\ncount = {n}\nkeys = {n}\n\n\
         [stages.count]\ninputs = [\"gen\"]\nplugin = \"{}\"\nsettings = {{ value_bytes = \"100\" }}\n\
         state_max_keys = {max}\nstate_max_bytes = \"1024GiB\"\nstate_cache_bytes = {}\n\n\
         [sinks.out]\ninputs = [\"count\"]\ntype = \"null\"\n",
        data.display(),
        plugin.display(),
        o.cache,
        n = o.large,
        max = o.large.max(1),
    );
    let file = dir.join("large.toml");
    std::fs::write(&file, text)?;
    weir.warm(&file)?;
    let run = weir.run(&file)?;
    let secs = run.seconds("elapsed_s")?;
    let listed = std::process::Command::new(&weir.bin)
        .args(["state", "ls", "count", "--data-dir"])
        .arg(&data)
        .output()?;
    ensure!(listed.status.success(), "weir state ls failed");
    let keys = listed.stdout.iter().filter(|b| **b == b'\n').count() as u64;
    ensure!(
        keys == o.large,
        "the store holds {keys} keys, not {}",
        o.large
    );
    println!(
        "W5, a state larger than memory: {} keys of 100 B, state_cache_bytes = {} MiB: \
         {:.1} s ({:.3} M events/s), peak RSS {} MiB, {} MiB in data_dir; the store holds \
         every key",
        o.large,
        o.cache >> 20,
        secs.as_secs_f64(),
        o.large as f64 / secs.as_secs_f64() / 1e6,
        run.max_rss_kib / 1024,
        du(&data) >> 20
    );
    Ok(())
}
