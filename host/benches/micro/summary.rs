//! The per-event table printed after the criterion runs, from criterion's estimates.

use std::path::Path;

/// Criterion's median time of one iteration of a benchmark, in nanoseconds.
fn median_ns(dir: &Path, group: &str, bench: &str) -> Option<f64> {
    let path = dir.join(group).join(bench).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn us(ns: Option<f64>) -> String {
    ns.map_or("".into(), |ns| format!("{:.1} µs", ns / 1e3))
}

/// The sandbox's overhead per event for each plugin, and the engine settings' cost per call.
pub fn print(dir: &Path, batch: usize, calls: &[(&str, &str)]) {
    println!("\n### Sandbox overhead per event per stage (criterion medians)\n");
    println!(
        "| plugin | batch | weir per call | native per call | weir per event | native per event | overhead per event |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<(usize, &str)> = calls.iter().map(|&(p, _)| (batch, p)).collect();
    rows.extend([(16, "passthrough"), (1024, "passthrough")]);
    for (n, plugin) in rows {
        let group = format!("call-{n}");
        let weir = median_ns(dir, &group, &format!("{plugin}-weir"));
        let native = median_ns(dir, &group, &format!("{plugin}-native"));
        let (Some(w), Some(nat)) = (weir, native) else {
            continue;
        };
        let per = |ns: f64| format!("{:.0} ns", ns / n as f64);
        println!(
            "| {plugin} | {n} | {} | {} | {} | {} | **{}** |",
            us(weir),
            us(native),
            per(w),
            per(nat),
            per(w - nat)
        );
    }
    let settings = [
        "native",
        "neither",
        "fuel",
        "deadline",
        "fuel+deadline",
        "opt-none",
        "opt-speed-and-size",
        "regalloc-single-pass",
        "weir",
    ];
    println!("\n### One call of {batch} events by engine setting (criterion medians)\n");
    println!("| plugin | {} |", settings.join(" | "));
    println!("|---|{}", "---:|".repeat(settings.len()));
    for plugin in ["passthrough", "uppercase", "sshd-parse"] {
        let cells: Vec<String> = settings
            .iter()
            .map(|s| us(median_ns(dir, "engine", &format!("{plugin}-{s}"))))
            .collect();
        println!("| {plugin} | {} |", cells.join(" | "));
    }
    println!("\n### Instances and loads (criterion medians)\n");
    println!("| what | time |");
    println!("|---|---:|");
    for (group, bench) in [
        ("instance", "new-passthrough"),
        ("instance", "new-sshd-parse"),
        ("instance", "replace-after-trap"),
        ("instance", "trap-and-replace"),
        ("load", "compile-passthrough"),
        ("load", "cached-passthrough"),
        ("load", "compile-sshd-parse"),
        ("load", "cached-sshd-parse"),
    ] {
        println!("| {group}/{bench} | {} |", us(median_ns(dir, group, bench)));
    }
}
