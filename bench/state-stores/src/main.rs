//! `state-stores`: measures fjall and redb as weir's state store on W5's writes.
//!
//! `state-stores STORE SCENARIO [options]` runs one scenario in this process and prints one
//! JSON line of figures; `state-stores all [options]` runs every scenario for every store, each
//! in a process of its own (peak RSS is per process), `--runs` rounds, and prints Markdown
//! tables of the minimum and median of each figure. STORE is `ceiling` (W5 in a plain
//! `HashMap`, no store), `memory` (the host's cache and delta over a `BTreeMap`), `fjall`,
//! `fjall-relaxed`, `fjall-mt8` (8 MiB memtables), `redb` or `redb-relaxed`; SCENARIO is
//! `w5-interval` (commit every second), `w5-batch` (commit every batch) or `keys10m`.
//! `state-stores table FILE` prints the tables again from the JSON lines `all` wrote to stderr.

mod load;
mod probe;
mod report;
mod store;
mod w5;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use store::Kind;

/// Options shared by one run and `all`.
#[derive(Clone)]
pub struct Options {
    pub events: u64,
    pub keys: u64,
    /// Stops the load of `keys10m` at the first commit past this, so a slow store still reports.
    pub load_budget: Duration,
    pub cache_mib: u64,
    pub runs: usize,
    pub dir: PathBuf,
    pub only: Vec<String>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        events: 2_000_000,
        keys: 10_000_000,
        load_budget: Duration::from_secs(900),
        cache_mib: 32,
        runs: 3,
        dir: std::env::temp_dir(),
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--events" => o.events = num()?,
            "--keys" => o.keys = num()?,
            "--load-budget" => o.load_budget = Duration::from_secs(num()?),
            "--cache-mib" => o.cache_mib = num()?,
            "--runs" => o.runs = num()? as usize,
            "--dir" => o.dir = PathBuf::from(value),
            "--only" => o.only = value.split(',').map(str::to_owned).collect(),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("all") => parse_options(&args[1..]).and_then(|o| report::all(&o)),
        Some("table") if args.len() == 2 => report::table(&args[1]),
        Some(store) if args.len() >= 2 => {
            parse_options(&args[2..]).and_then(|o| run_one(store, &args[1], &o))
        }
        _ => {
            Err("usage: state-stores STORE SCENARIO [options] | state-stores all [options]".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("state-stores: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Figures of one run, printed as one JSON line.
pub type Figures = Vec<(&'static str, String)>;

fn run_one(store: &str, scenario: &str, o: &Options) -> Result<(), String> {
    let mut f: Figures = vec![
        ("store", format!("\"{store}\"")),
        ("scenario", format!("\"{scenario}\"")),
    ];
    if store == "ceiling" {
        run_ceiling(o, &mut f)?;
    } else {
        let kind = Kind::parse(store).ok_or_else(|| format!("unknown store {store}"))?;
        let dir = o.dir.join(format!("state-stores-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let outcome = match scenario {
            "w5-interval" => run_w5(
                kind,
                &dir,
                w5::CommitEvery::Interval(Duration::from_secs(1)),
                o,
                &mut f,
            ),
            "w5-batch" => run_w5(kind, &dir, w5::CommitEvery::Batch, o, &mut f),
            "keys10m" => run_keys(kind, &dir, o, &mut f),
            _ => Err(format!("unknown scenario {scenario}")),
        };
        let _ = std::fs::remove_dir_all(&dir);
        outcome?;
    }
    f.push(("peak_rss", probe::status_bytes("VmHWM").to_string()));
    let body: Vec<String> = f.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{{}}}", body.join(","));
    Ok(())
}

fn run_ceiling(o: &Options, f: &mut Figures) -> Result<(), String> {
    let cpu = probe::cpu_seconds();
    let start = Instant::now();
    let emitted = w5::ceiling(o.events);
    let elapsed = start.elapsed().as_secs_f64();
    emitted.check(o.events)?;
    f.push(("events", o.events.to_string()));
    f.push(("events_per_s", format!("{:.0}", o.events as f64 / elapsed)));
    f.push(("cpu_s", format!("{:.3}", probe::cpu_seconds() - cpu)));
    f.push(("lines", emitted.lines().to_string()));
    f.push(("digest", format!("\"{:016x}\"", emitted.digest())));
    Ok(())
}

fn percentile_ms(latencies: &[Duration], p: f64) -> String {
    let mut v: Vec<Duration> = latencies.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    format!("{:.3}", v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3))
}

fn run_w5(
    kind: Kind,
    dir: &Path,
    every: w5::CommitEvery,
    o: &Options,
    f: &mut Figures,
) -> Result<(), String> {
    let mut store = store::open(kind, dir, o.cache_mib << 20).map_err(|e| e.to_string())?;
    let io = probe::io_written();
    let cpu = probe::cpu_seconds();
    let start = Instant::now();
    let mut host = w5::Host::new(store.as_mut());
    host.run(o.events, every).map_err(|e| e.to_string())?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = probe::cpu_seconds() - cpu;
    let io_end = probe::io_written();
    host.emitted.check(o.events)?;
    f.push(("events", o.events.to_string()));
    f.push(("events_per_s", format!("{:.0}", o.events as f64 / elapsed)));
    f.push(("cpu_s", format!("{cpu:.3}")));
    f.push(("commits", host.commit_latencies.len().to_string()));
    f.push(("commit_p50_ms", percentile_ms(&host.commit_latencies, 0.5)));
    f.push(("commit_p99_ms", percentile_ms(&host.commit_latencies, 0.99)));
    f.push(("store_reads", host.store_reads.to_string()));
    f.push(("lines", host.emitted.lines().to_string()));
    f.push(("digest", format!("\"{:016x}\"", host.emitted.digest())));
    f.push(("wchar", (io_end.0 - io.0).to_string()));
    f.push(("write_bytes", (io_end.1 - io.1).to_string()));
    let (length, allocated) = probe::dir_bytes(dir);
    f.push(("disk_bytes", length.to_string()));
    f.push(("disk_allocated", allocated.to_string()));
    drop(host);
    if kind == Kind::Memory {
        return Ok(());
    }
    drop(store);
    check_reopened(kind, dir, o)
}

/// Reopens the store: the last commit's position must be there, and nothing but it.
fn check_reopened(kind: Kind, dir: &Path, o: &Options) -> Result<(), String> {
    let mut store = store::open(kind, dir, o.cache_mib << 20).map_err(|e| e.to_string())?;
    let mut value = Vec::new();
    let found = store
        .get(store::CHECKPOINT_KEY, &mut value)
        .map_err(|e| e.to_string())?;
    if !found || value[..] != o.events.to_be_bytes() {
        return Err(format!("reopened: checkpoint {value:?}, want {}", o.events));
    }
    let keys = store.count_keys().map_err(|e| e.to_string())?;
    if keys != 1 {
        return Err(format!(
            "reopened: {keys} keys left, want the checkpoint alone"
        ));
    }
    Ok(())
}

fn run_keys(kind: Kind, dir: &Path, o: &Options, f: &mut Figures) -> Result<(), String> {
    let mut store = store::open(kind, dir, o.cache_mib << 20).map_err(|e| e.to_string())?;
    let io = probe::io_written();
    let loaded = load::load(store.as_mut(), o.keys, o.load_budget).map_err(|e| e.to_string())?;
    let io_end = probe::io_written();
    let load_peak = probe::status_bytes("VmHWM");
    f.push(("keys", o.keys.to_string()));
    f.push(("keys_loaded", loaded.keys.to_string()));
    f.push((
        "load_keys_per_s",
        format!("{:.0}", loaded.keys as f64 / loaded.load_time.as_secs_f64()),
    ));
    f.push((
        "commit_p50_ms",
        percentile_ms(&loaded.commit_latencies, 0.5),
    ));
    f.push((
        "commit_p99_ms",
        percentile_ms(&loaded.commit_latencies, 0.99),
    ));
    f.push(("load_peak_rss", load_peak.to_string()));
    f.push(("wchar", (io_end.0 - io.0).to_string()));
    f.push(("write_bytes", (io_end.1 - io.1).to_string()));
    let (length, allocated) = probe::dir_bytes(dir);
    f.push(("disk_bytes", length.to_string()));
    f.push(("disk_allocated", allocated.to_string()));
    probe::reset_peak_rss();
    let (read_time, bad) = load::read(store.as_mut(), loaded.keys).map_err(|e| e.to_string())?;
    f.push((
        "reads_per_s",
        format!("{:.0}", load::READS as f64 / read_time.as_secs_f64()),
    ));
    f.push(("read_peak_rss", probe::status_bytes("VmHWM").to_string()));
    if bad != 0 {
        return Err(format!("{bad} of {} reads missed or differed", load::READS));
    }
    f.push(("rss_end", probe::status_bytes("VmRSS").to_string()));
    Ok(())
}
