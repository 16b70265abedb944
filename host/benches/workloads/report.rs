//! The harness's results: samples per mode, medians, and the tables `BENCHMARKS.md` shows.

use std::time::Duration;

use crate::spec::Workload;

/// The Go pipeline's label.
pub const GO: &str = "go pipeline";

/// One timed run.
pub struct Sample {
    pub events: u64,
    pub elapsed: Duration,
    /// CPU time (user and system) the run used: the `weir run` process, or this process's
    /// threads over an in-process run.
    pub cpu: Duration,
    /// For `weir run` and the Go pipeline: the report's `total_s` (start of the command to the
    /// end), the process's wall time, and its peak resident memory in KiB.
    pub process: Option<(Duration, Duration, i64)>,
}

impl Sample {
    pub fn new(events: u64, elapsed: Duration, cpu: Duration) -> Sample {
        Sample {
            events,
            elapsed,
            cpu,
            process: None,
        }
    }

    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Events per second of CPU time: what a run costs, whatever else the machine does.
    pub fn per_cpu(&self) -> f64 {
        self.events as f64 / self.cpu.as_secs_f64()
    }
}

/// Every sample of every mode of one workload.
pub struct Results {
    pub workload: Workload,
    pub labels: Vec<String>,
    pub samples: Vec<Vec<Sample>>,
}

impl Results {
    pub fn new(workload: Workload, labels: Vec<String>) -> Results {
        let samples = labels.iter().map(|_| Vec::new()).collect();
        Results {
            workload,
            labels,
            samples,
        }
    }

    pub fn push(&mut self, mode: usize, sample: Sample) {
        self.samples[mode].push(sample);
    }

    fn index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    /// Median events/s of a mode.
    fn median(&self, label: &str) -> Option<f64> {
        self.median_of(label, Sample::rate)
    }

    fn median_of(&self, label: &str, metric: fn(&Sample) -> f64) -> Option<f64> {
        let i = self.index(label)?;
        let values: Vec<f64> = self.samples[i].iter().map(metric).collect();
        Some(Spread::of(&values).median)
    }

    /// The better of the ceiling's two shapes in events per CPU-second.
    fn ceiling_per_cpu(&self) -> f64 {
        let threads = self.median_of("ceiling threads", Sample::per_cpu);
        let chained = self.median_of("ceiling chained", Sample::per_cpu);
        threads.unwrap_or(0.0).max(chained.unwrap_or(0.0))
    }

    /// The ratio of two modes' medians.
    fn ratio(&self, over: &str, under: &str) -> Option<f64> {
        Some(self.median(over)? / self.median(under)?)
    }

    /// The faster of the two shapes of the ceiling.
    fn ceiling(&self) -> f64 {
        let threads = self.median("ceiling threads").unwrap_or(0.0);
        threads.max(self.median("ceiling chained").unwrap_or(0.0))
    }

    /// Peak resident memory of `weir`'s timed runs: median and largest, in MiB.
    pub fn weir_rss(&self) -> Option<(f64, f64)> {
        let i = self.index("weir")?;
        let rss: Vec<f64> = self.samples[i]
            .iter()
            .filter_map(|s| s.process.map(|(_, _, kib)| kib as f64 / 1024.0))
            .collect();
        let spread = Spread::of(&rss);
        Some((spread.median, spread.max))
    }
}

/// Median, min and max.
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        if v.is_empty() {
            v.push(f64::NAN);
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

pub fn thousands(x: f64) -> String {
    let digits = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The run's header: what was run, where, on which commit.
pub fn machine(names: &[&str], runs: usize, smoke: bool) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    println!(
        "weir workloads {}: {} round(s){}; commit {}{dirty}",
        names.join(" "),
        runs,
        if smoke {
            ", smoke sizes (checks only)"
        } else {
            ""
        },
        git(&["rev-parse", "--short=12", "HEAD"]),
    );
    println!(
        "machine: {} cores ({cpu}); load average at the start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
}

/// Every table of the run.
pub fn print(all: &[Results], start_up: Option<&(Duration, Vec<Duration>)>, smoke: bool) {
    for results in all {
        modes_table(results);
    }
    println!("\n### Ratios (medians over medians)\n");
    println!(
        "| workload | weir ÷ ceiling | target | per CPU-second: weir ÷ ceiling | weir ÷ native-in-weir (sandbox) | native-in-weir ÷ ceiling chained (host) | weir unchained ÷ weir | weir workers=2 ÷ weir | weir 0.1 ÷ weir | go time ÷ weir time | target | go CPU ÷ weir CPU | target |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|");
    let f = |x: Option<f64>| x.map_or("".to_string(), |x| format!("{x:.2}"));
    for r in all {
        let ratio = r.median("weir").unwrap_or(0.0) / r.ceiling();
        let target = r.workload.target();
        let verdict = match (smoke, ratio >= target) {
            (true, _) => "not judged at smoke sizes",
            (false, true) => "met",
            (false, false) => "missed",
        };
        let per_cpu = r.median_of("weir", Sample::per_cpu).unwrap_or(0.0) / r.ceiling_per_cpu();
        // Both run the same events: weir's rate over Go's is Go's time over weir's.
        let go_time = r.ratio("weir", GO);
        let go_cpu = r
            .median_of("weir", Sample::per_cpu)
            .zip(r.median_of(GO, Sample::per_cpu))
            .map(|(weir, go)| weir / go);
        let judge = |x: Option<f64>, target: Option<f64>| match (x, target) {
            (None, _) => "no go pipeline".to_string(),
            (Some(_), None) => "none set".to_string(),
            (Some(_), Some(t)) if smoke => format!("≥ {t} not judged at smoke sizes"),
            (Some(x), Some(t)) => format!("≥ {t} {}", if x >= t { "met" } else { "missed" }),
        };
        println!(
            "| {} | {ratio:.2} | ≥ {target} {verdict} | {per_cpu:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload.name(),
            f(r.ratio("weir", "native-in-weir chained")),
            f(r.ratio("native-in-weir chained", "ceiling chained")),
            f(r.ratio("weir unchained", "weir")),
            f(r.ratio("weir workers=2", "weir")),
            f(r.ratio("weir 0.1", "weir")),
            f(go_time),
            judge(go_time, r.workload.go_target()),
            f(go_cpu),
            judge(go_cpu, r.workload.go_cpu_target()),
        );
    }
    println!(
        "\n`weir ÷ ceiling` is weir with default settings over the faster shape of the ceiling; `per CPU-second` compares events per second of CPU time (user and system) the same way. `go time ÷ weir time` is the Go pipeline's time over weir's (default settings) for the same events, both from the start of reading to the end of the last write; `go CPU ÷ weir CPU` the same with their processes' CPU time."
    );
    let w3 = all.iter().find(|r| r.workload == Workload::W3);
    if let Some((median, max)) = w3.and_then(Results::weir_rss) {
        println!(
            "\nW3 peak resident memory of `weir run` (timed runs, default settings): median {median:.1} MiB, largest {max:.1} MiB (target ≤ 64 MiB: {})",
            if max <= 64.0 { "met" } else { "missed" }
        );
    }
    if let Some((cold, warm)) = start_up {
        let secs: Vec<f64> = warm.iter().map(|d| ms(*d)).collect();
        let s = Spread::of(&secs);
        println!(
            "W3 first event out of `weir run` to a pipe: warm compile cache median {:.1} ms ({:.1}–{:.1}, {} starts; target ≤ 50 ms: {}); empty cache {:.0} ms",
            s.median,
            s.min,
            s.max,
            warm.len(),
            if s.max <= 50.0 { "met" } else { "missed" },
            ms(*cold)
        );
    }
}

/// One workload's modes: events/s, the ratio to each shape of the ceiling and to the Go
/// pipeline (a mode's rate over Go's: Go's time over the mode's), and for `weir run` and the
/// Go pipeline the whole command's time and memory.
fn modes_table(r: &Results) {
    let events = r.samples.iter().flatten().next().map_or(0, |s| s.events);
    println!(
        "\n### {} ({} events)\n",
        r.workload.name(),
        thousands(events as f64)
    );
    println!(
        "| mode | events/s, median (min–max) | ÷ ceiling threads | ÷ ceiling chained | ÷ go pipeline | events per CPU-second, median | `weir run` total_s / process wall, median | peak RSS, largest |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, samples) in r.labels.iter().zip(&r.samples) {
        let rates: Vec<f64> = samples.iter().map(Sample::rate).collect();
        let s = Spread::of(&rates);
        let over = |base: &str| {
            r.median(base)
                .map_or(String::new(), |b| format!("{:.2}", s.median / b))
        };
        let process: Vec<_> = samples.iter().filter_map(|s| s.process).collect();
        let (time, rss) = if process.is_empty() {
            (String::new(), String::new())
        } else {
            let total = Spread::of(&process.iter().map(|p| ms(p.0)).collect::<Vec<_>>());
            let wall = Spread::of(&process.iter().map(|p| ms(p.1)).collect::<Vec<_>>());
            let rss = Spread::of(
                &process
                    .iter()
                    .map(|p| p.2 as f64 / 1024.0)
                    .collect::<Vec<_>>(),
            );
            (
                format!("{:.0} / {:.0} ms", total.median, wall.median),
                format!("{:.1} MiB", rss.max),
            )
        };
        let cpu: Vec<f64> = samples.iter().map(Sample::per_cpu).collect();
        println!(
            "| {label} | {} ({}–{}) | {} | {} | {} | {} | {time} | {rss} |",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max),
            over("ceiling threads"),
            over("ceiling chained"),
            over(GO),
            thousands(Spread::of(&cpu).median),
        );
    }
}
