//! `all`: runs every (store, scenario) in a child process of this binary, `--runs` rounds with
//! the runs of a round interleaved, reads each child's JSON line, checks that every W5 run
//! emitted the same lines as the ceiling, and prints the Markdown tables (min / median).

use crate::Options;
use std::collections::BTreeMap;
use std::process::Command;

const W5_STORES: [&str; 6] = [
    "memory",
    "fjall",
    "fjall-relaxed",
    "fjall-mt8",
    "redb",
    "redb-relaxed",
];
const W5_SCENARIOS: [&str; 2] = ["w5-interval", "w5-batch"];
const KEY_STORES: [&str; 3] = ["fjall", "fjall-mt8", "redb"];

type Run = BTreeMap<String, String>;

/// Reads a flat JSON object of numbers and strings without commas in them.
fn parse_line(line: &str) -> Run {
    let body = line.trim().trim_start_matches('{').trim_end_matches('}');
    body.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once(':')?;
            Some((
                k.trim_matches('"').to_owned(),
                v.trim_matches('"').to_owned(),
            ))
        })
        .collect()
}

fn combos(o: &Options) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("ceiling", "w5")];
    for scenario in W5_SCENARIOS {
        all.extend(W5_STORES.iter().map(|s| (*s, scenario)));
    }
    all.extend(KEY_STORES.iter().map(|s| (*s, "keys10m")));
    all.retain(|(store, scenario)| {
        o.only.is_empty()
            || o.only
                .iter()
                .any(|w| w == scenario || w == store || *w == format!("{store}:{scenario}"))
    });
    all
}

fn child(store: &str, scenario: &str, o: &Options) -> Result<Run, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let out = Command::new(exe)
        .args([store, scenario])
        .args([
            "--events",
            &o.events.to_string(),
            "--keys",
            &o.keys.to_string(),
        ])
        .args(["--load-budget", &o.load_budget.as_secs().to_string()])
        .args(["--cache-mib", &o.cache_mib.to_string()])
        .arg("--dir")
        .arg(&o.dir)
        .output()
        .map_err(|e| format!("{store} {scenario}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{store} {scenario} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!("{}", stdout.trim());
    Ok(parse_line(&stdout))
}

/// Runs, by (store, scenario).
type Runs = BTreeMap<(String, String), Vec<Run>>;

pub fn all(o: &Options) -> Result<(), String> {
    let combos = combos(o);
    let mut runs = Runs::new();
    for round in 0..o.runs {
        // Rotate the order so that no combination always runs first or last.
        for i in 0..combos.len() {
            let (store, scenario) = combos[(i + round) % combos.len()];
            let run = child(store, scenario, o)?;
            runs.entry((store.into(), scenario.into()))
                .or_default()
                .push(run);
        }
    }
    print_tables(&runs)
}

/// `table FILE`: the tables again from the JSON lines that `all` wrote to stderr.
pub fn table(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut runs = Runs::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let run = parse_line(line);
        let store = run.get("store").cloned().unwrap_or_default();
        let scenario = run.get("scenario").cloned().unwrap_or_default();
        runs.entry((store, scenario)).or_default().push(run);
    }
    print_tables(&runs)
}

fn print_tables(runs: &Runs) -> Result<(), String> {
    check_digests(runs)?;
    print_w5(runs);
    print_keys(runs);
    Ok(())
}

fn check_digests(runs: &Runs) -> Result<(), String> {
    let key = ("ceiling".to_owned(), "w5".to_owned());
    let Some(ceiling) = runs.get(&key).and_then(|r| r.first()) else {
        return Ok(());
    };
    for ((store, scenario), rs) in runs {
        for r in rs {
            if scenario.starts_with("w5") && r.get("digest") != ceiling.get("digest") {
                return Err(format!(
                    "{store} {scenario}: emitted lines differ from the ceiling's"
                ));
            }
        }
    }
    Ok(())
}

fn values(rs: &[Run], field: &str, scale: f64) -> Vec<f64> {
    let mut v: Vec<f64> = rs
        .iter()
        .filter_map(|r| r.get(field)?.parse::<f64>().ok())
        .map(|x| x / scale)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// "min / median" of a field, divided by `scale`, with `decimals`.
fn cell(rs: &[Run], field: &str, scale: f64, decimals: usize) -> String {
    let v = values(rs, field, scale);
    match v.first() {
        None => "–".into(),
        Some(min) => format!("{min:.decimals$} / {:.decimals$}", median(&v)),
    }
}

/// File lengths, and the blocks allocated in parentheses (medians).
fn disk(rs: &[Run], decimals: usize) -> String {
    if values(rs, "disk_bytes", 1.0).is_empty() {
        return "–".into();
    }
    let length = median(&values(rs, "disk_bytes", MIB));
    let allocated = median(&values(rs, "disk_allocated", MIB));
    format!("{length:.decimals$} ({allocated:.decimals$})")
}

const MIB: f64 = 1024.0 * 1024.0;

fn print_w5(runs: &Runs) {
    let ceiling = runs
        .get(&("ceiling".to_owned(), "w5".to_owned()))
        .map(|r| median(&values(r, "events_per_s", 1.0)));
    println!(
        "| store | commit | M events/s | of ceiling | commits | commit p50 ms | commit p99 ms | store reads | on disk MiB (allocated) | write_bytes MiB | wchar MiB | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for ((store, scenario), rs) in runs {
        if !scenario.starts_with("w5") {
            continue;
        }
        let ratio = match ceiling {
            Some(c) if *store != "ceiling" => {
                format!("{:.2}", median(&values(rs, "events_per_s", 1.0)) / c)
            }
            _ => "1".into(),
        };
        let commit = match scenario.as_str() {
            "w5-interval" => "every 1 s",
            "w5-batch" => "every batch",
            _ => "none",
        };
        println!(
            "| {store} | {commit} | {} | {ratio} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(rs, "events_per_s", 1e6, 2),
            cell(rs, "commits", 1.0, 0),
            cell(rs, "commit_p50_ms", 1.0, 2),
            cell(rs, "commit_p99_ms", 1.0, 2),
            cell(rs, "store_reads", 1.0, 0),
            disk(rs, 1),
            cell(rs, "write_bytes", MIB, 1),
            cell(rs, "wchar", MIB, 1),
            cell(rs, "peak_rss", MIB, 1),
        );
    }
}

fn print_keys(runs: &Runs) {
    println!();
    println!(
        "| store | keys loaded | load k keys/s | commit p50 ms | commit p99 ms | load peak RSS MiB | k reads/s | read peak RSS MiB | on disk MiB (allocated) | write_bytes MiB | wchar MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for ((store, scenario), rs) in runs {
        if scenario != "keys10m" {
            continue;
        }
        println!(
            "| {store} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(rs, "keys_loaded", 1.0, 0),
            cell(rs, "load_keys_per_s", 1e3, 0),
            cell(rs, "commit_p50_ms", 1.0, 1),
            cell(rs, "commit_p99_ms", 1.0, 1),
            cell(rs, "load_peak_rss", MIB, 1),
            cell(rs, "reads_per_s", 1e3, 0),
            cell(rs, "read_peak_rss", MIB, 1),
            disk(rs, 0),
            cell(rs, "write_bytes", MIB, 0),
            cell(rs, "wchar", MIB, 0),
        );
    }
}
