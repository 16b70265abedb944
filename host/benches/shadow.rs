//! What a shadow costs the live path: a stage's throughput with and without a deliberately
//! slow shadow beside it.
//!
//! ```text
//! cargo bench --bench shadow -- [--rounds N] [--window SECONDS] [--smoke]
//! ```
//!
//! One `weir run` process: a `generate` source without end, the `passthrough` stage on one
//! worker, the `null` sink, and the admin API on a loopback port. Each round measures the
//! stage's events per second over a window (read from `GET /stages`, after a settling half
//! second) once without a shadow and once with the `fixture-slow` shadow (about 20 µs of CPU
//! per event, far slower than the live version) on every input batch, the order rotating from
//! round to round; the shadow is started with `PUT /stages/tag/shadow` and stopped after its
//! window. Reported: the median rate of each mode, their ratio, and what the shadow compared
//! and skipped. Checked: the shadow compared some batches and skipped others (it fell behind,
//! as it must), and found no difference (it passes events through like the live version).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use weir::control::client::{Client, Endpoint};

const TOKEN: &str = "bench-token-0123456789";

struct Options {
    rounds: usize,
    window: Duration,
}

fn options() -> Result<Options> {
    let mut o = Options {
        rounds: 5,
        window: Duration::from_secs(3),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut next = |what: &str| -> Result<f64> {
            args.next()
                .with_context(|| format!("{what} needs a value"))?
                .parse()
                .with_context(|| what.to_string())
        };
        match a.as_str() {
            "--rounds" => o.rounds = next("--rounds")? as usize,
            "--window" => o.window = Duration::from_secs_f64(next("--window")?),
            "--smoke" => {
                o.rounds = 1;
                o.window = Duration::from_millis(500);
            }
            // What cargo passes to every bench target.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn pipeline(dir: &Path) -> Result<std::path::PathBuf> {
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [sources.gen]\ntype = \"generate\"\ncount = 1_000_000_000_000\n\n\
         [stages.tag]\ninputs = [\"gen\"]\nplugin = \"{}\"\nworkers = 1\n\n\
         [sinks.out]\ninputs = [\"tag\"]\ntype = \"null\"\n",
        weir_test_plugins::plugin("passthrough").display()
    );
    let file = dir.join("shadow.toml");
    std::fs::write(&file, text)?;
    Ok(file)
}

/// Events the stage has taken so far.
fn taken(client: &Client) -> Result<u64> {
    let stages = client.stages()?;
    let tag = stages
        .iter()
        .find(|s| s.name == "tag")
        .context("no stage `tag`")?;
    Ok(tag.events_total)
}

/// Events per second over `window`, after half a second for a change to settle.
fn rate(client: &Client, window: Duration) -> Result<f64> {
    std::thread::sleep(Duration::from_millis(500));
    let (e0, t0) = (taken(client)?, Instant::now());
    std::thread::sleep(window);
    let (e1, t1) = (taken(client)?, Instant::now());
    Ok((e1 - e0) as f64 / (t1 - t0).as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let o = options()?;
    let dir = tempfile::tempdir()?;
    let file = pipeline(dir.path())?;
    let slow = std::fs::read(weir_test_plugins::plugin("fixture-slow"))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--quiet"])
        .arg(&file)
        .env("WEIR_CACHE_DIR", dir.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().context("no stderr")?);
    let marker = "admin API listening on http://";
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            let _ = child.kill();
            bail!("weir ended before its admin API listened");
        }
        if let Some(at) = line.find(marker) {
            break line[at + marker.len()..].trim().to_string();
        }
    };
    // The rest of stderr is drained, so that a warning cannot block the run on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let measured = (|| -> Result<_> {
        let client = Client::new(
            &Endpoint::parse(&addr).map_err(anyhow::Error::msg)?,
            TOKEN,
            None,
        )?;
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let (mut batches, mut skipped, mut different) = (0, 0, 0);
        for round in 0..o.rounds {
            for shadowed in [round % 2 == 1, round % 2 == 0] {
                if !shadowed {
                    without.push(rate(&client, o.window)?);
                    continue;
                }
                client.put_shadow("tag", &slow, 1.0)?;
                with.push(rate(&client, o.window)?);
                let s = client.stop_shadow("tag")?;
                batches += s.batches;
                skipped += s.skipped;
                different += s.different;
            }
        }
        Ok((without, with, batches, skipped, different))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let (mut without, mut with, batches, skipped, different) = measured?;
    let (a, b) = (median(&mut without), median(&mut with));
    let range = |v: &[f64]| format!("{:.0} to {:.0}", v[0], v[v.len() - 1]);
    println!(
        "shadow cost ({} rounds of {:.1} s, passthrough live, fixture-slow shadow on every batch)",
        o.rounds,
        o.window.as_secs_f64()
    );
    println!(
        "  without a shadow: {:>12.0} events/s (median; {})",
        a,
        range(&without)
    );
    println!(
        "  with a shadow:    {:>12.0} events/s (median; {})",
        b,
        range(&with)
    );
    println!("  ratio:            {:>12.3}", b / a);
    println!(
        "  shadow: {batches} batches compared, {skipped} skipped, {different} events different"
    );
    ensure!(batches > 0, "the shadow compared no batch");
    ensure!(
        skipped > 0,
        "the slow shadow never fell behind: it is not slow enough to measure"
    );
    ensure!(
        different == 0,
        "the slow shadow passes events through: it cannot differ"
    );
    Ok(())
}
