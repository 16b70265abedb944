//! End-to-end tests of the `weir` binary and library with real plugins built from source.

mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use support::{Dir, native_w3, plugin, weir};

/// The quickstart pipeline prints exactly what the same plugin logic gives natively.
#[test]
fn the_quickstart_prints_exactly_the_native_w3_output() -> Result<()> {
    let root = support::workspace_root();
    let out = weir()
        .arg("run")
        .arg(root.join("examples/auth-log/pipeline.toml"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir failed: {stderr}");
    let expected = native_w3(&std::fs::read(
        root.join("examples/auth-log/data/OpenSSH_2k.log"),
    )?);
    assert_eq!(expected.lines().count(), 1225);
    assert!(
        out.stdout == expected.as_bytes(),
        "sandboxed output differs from the native run"
    );
    assert!(
        stderr.contains("2000 in, 1225 out, 0 dead-lettered"),
        "summary: {stderr}"
    );
    Ok(())
}

/// W3 with several workers per stage and small batches keeps input order and every byte.
#[test]
fn w3_with_parallel_workers_keeps_order_and_matches_the_native_run() -> Result<()> {
    let dir = Dir::new()?;
    let log = support::workspace_root().join("examples/auth-log/data/OpenSSH_2k.log");
    let pipeline = dir.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
batch_size = 7

[sources.log]
type = "file"
path = "{log}"
repeat = 3

[stages.parse]
inputs = ["log"]
plugin = "{parse}"
workers = 3

[stages.filter]
inputs = ["parse"]
plugin = "{filter}"
workers = 2

[stages.redact]
inputs = ["filter"]
plugin = "{redact}"
workers = 2

[sinks.out]
inputs = ["redact"]
type = "file"
path = "out.jsonl"
"#,
            log = log.display(),
            parse = plugin("sshd-parse").display(),
            filter = plugin("auth-filter").display(),
            redact = plugin("redact-ip").display(),
        ),
    )?;
    let out = weir().arg("run").arg(&pipeline).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let once = native_w3(&std::fs::read(&log)?);
    let written = std::fs::read_to_string(dir.path("out.jsonl"))?;
    assert_eq!(written, once.repeat(3));
    Ok(())
}

/// A plugin that traps on one event costs that event only: the rest arrive in order and
/// the poison event is dead-lettered with the trap kind and the panic message.
#[test]
fn a_trap_on_one_event_dead_letters_it_and_the_rest_flow_in_order() -> Result<()> {
    let dir = Dir::new()?;
    let lines: Vec<String> = (0..1000)
        .map(|i| {
            if i == 613 {
                "this is poison".to_string()
            } else {
                format!("event {i}")
            }
        })
        .collect();
    dir.write("in.txt", &(lines.join("\n") + "\n"))?;
    let pipeline = dir.write(
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "file"
path = "in.txt"

[stages.risky]
inputs = ["in"]
plugin = "{poison}"

[sinks.out]
inputs = ["risky"]
type = "file"
path = "out.txt"

[dead_letter]
type = "file"
path = "dead.jsonl"
"#,
            poison = plugin("fixture-poison").display()
        ),
    )?;
    let out = weir().arg("run").arg(&pipeline).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let expected: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.contains("poison"))
        .collect();
    let written = std::fs::read_to_string(dir.path("out.txt"))?;
    assert_eq!(written.lines().collect::<Vec<_>>(), expected);

    let dead = std::fs::read_to_string(dir.path("dead.jsonl"))?;
    let letters: Vec<serde_json::Value> = dead
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(letters.len(), 1, "{dead}");
    assert_eq!(letters[0]["kind"], "panic");
    assert_eq!(letters[0]["stage"], "risky");
    assert_eq!(letters[0]["event"]["value"], "this is poison");
    assert!(
        letters[0]["message"]
            .as_str()
            .unwrap()
            .contains("poison event"),
        "{dead}"
    );
    assert_eq!(letters[0]["plugin_digest"].as_str().unwrap().len(), 64);
    assert!(stderr.contains("999 out, 1 dead-lettered"), "{stderr}");
    Ok(())
}

/// `retry` outcomes are retried with backoff; an event whose retries run out is dead-lettered
/// as `retries-exhausted`; meanwhile the other events flow on, in order.
#[test]
fn retries_recover_flaky_events_and_dead_letter_the_hopeless_one() -> Result<()> {
    let dir = Dir::new()?;
    dir.write("in.txt", "a\nflaky-1\nb\nnever\nflaky-2\nc\n")?;
    let pipeline = dir.write(
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "file"
path = "in.txt"

[stages.remote]
inputs = ["in"]
plugin = "{flaky}"
retries = 4
settings = {{ attempts = 3 }}

[sinks.out]
inputs = ["remote"]
type = "file"
path = "out.txt"

[dead_letter]
type = "file"
path = "dead.jsonl"
"#,
            flaky = plugin("fixture-flaky").display()
        ),
    )?;
    let out = weir().arg("run").arg(&pipeline).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Retried events leave the stage when they succeed, so they come after the others.
    assert_eq!(
        std::fs::read_to_string(dir.path("out.txt"))?,
        "a\nb\nc\nflaky-1\nflaky-2\n"
    );
    let dead: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(dir.path("dead.jsonl"))?.trim())?;
    assert_eq!(dead["kind"], "retries-exhausted");
    assert_eq!(dead["attempts"], 5);
    assert_eq!(dead["event"]["value"], "never");
    Ok(())
}

/// With a fast source and a slow consumer, the events in flight stay under the bound the
/// configuration implies, so memory is bounded by configuration, not by luck.
#[test]
fn backpressure_keeps_events_in_flight_under_the_configured_bound() -> Result<()> {
    let dir = Dir::new()?;
    let count = 200_000u64;
    let pipeline = dir.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
batch_size = 64
buffer = 2

[sources.gen]
type = "generate"
count = {count}
size = 100

[stages.pass]
inputs = ["gen"]
plugin = "{pass}"

[sinks.out]
inputs = ["pass"]
type = "stdout"
"#,
            pass = plugin("passthrough").display()
        ),
    )?;
    let bound =
        weir::pipeline::Topology::build(&weir::Pipeline::load(&pipeline)?)?.in_flight_bound();
    assert!(
        bound < count / 100,
        "the bound {bound} must be far below the event count"
    );

    let mut child = weir()
        .arg("run")
        .arg(&pipeline)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().context("stdout")?;
    // Read slowly at first: the pipeline must wait for us rather than pile events up.
    let mut buf = vec![0u8; 16 << 10];
    let mut total = 0usize;
    let slow_until = Instant::now() + Duration::from_secs(2);
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n;
        if Instant::now() < slow_until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(total as u64, count * 101);
    let in_flight = support::summary_field(&stderr, "at most ", " in flight")
        .context("no in-flight figure in the summary")?;
    assert!(
        in_flight <= bound,
        "{in_flight} events were in flight; the bound is {bound}"
    );
    assert!(in_flight > 0);
    Ok(())
}

/// On SIGINT, the source stops reading and everything it accepted is written before exit 0.
#[test]
fn sigint_drains_everything_accepted_before_exiting() -> Result<()> {
    let dir = Dir::new()?;
    let pipeline = dir.write(
        "p.toml",
        &format!(
            r#"
[pipeline]
linger = "1ms"

[sources.in]
type = "stdin"

[stages.upper]
inputs = ["in"]
plugin = "{upper}"

[sinks.out]
inputs = ["upper"]
type = "file"
path = "out.txt"
"#,
            upper = plugin("uppercase").display()
        ),
    )?;
    let mut child = weir()
        .arg("run")
        .arg(&pipeline)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let sent: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    stdin.write_all((sent.join("\n") + "\n").as_bytes())?;
    stdin.flush()?;
    // Wait until the last line has been written, then interrupt with stdin still open.
    let out_path = dir.path("out.txt");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&out_path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 500
    {
        assert!(
            Instant::now() < deadline,
            "the pipeline did not write the lines it read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    support::interrupt(&child)?;
    let out = child.wait_with_output()?;
    drop(stdin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<String> = sent.iter().map(|l| l.to_uppercase()).collect();
    assert_eq!(
        std::fs::read_to_string(&out_path)?
            .lines()
            .collect::<Vec<_>>(),
        expected
    );
    Ok(())
}

/// The library entry point runs a pipeline and reports per-stage counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_run_reports_counts_per_stage() -> Result<()> {
    let dir = Dir::new()?;
    let pipeline = dir.write(
        "p.toml",
        &format!(
            r#"
[sources.gen]
type = "generate"
count = 10000
size = 100

[stages.upper]
inputs = ["gen"]
plugin = "{upper}"

[stages.again]
inputs = ["upper"]
plugin = "{upper}"

[sinks.count]
inputs = ["again"]
type = "null"

[sinks.copy]
inputs = ["upper"]
type = "null"
"#,
            upper = plugin("uppercase").display()
        ),
    )?;
    let pipeline = weir::Pipeline::load(&pipeline)?;
    let report = weir::run(&pipeline, tokio_util::sync::CancellationToken::new()).await?;
    assert_eq!(report.events_in, 10_000);
    assert_eq!(
        report.events_out, 20_000,
        "fan-out gives each sink every event"
    );
    assert_eq!(report.node("again").unwrap().events_out, 10_000);
    assert_eq!(report.node("count").unwrap().bytes_out, 1_000_000);
    Ok(())
}

mod refused {
    //! Bad input gets an error that names the file, the line and the key.

    use super::*;

    fn check(text: &str) -> Result<(i32, String)> {
        let dir = Dir::new()?;
        let text = text.replace("PASS", &plugin("passthrough").display().to_string());
        let file = dir.write("p.toml", &text)?;
        let out = weir().arg("check").arg(&file).output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    const GOOD: &str = "[sources.s]\ntype = \"stdin\"\n\n[stages.a]\ninputs = [\"s\"]\nplugin = \"PASS\"\n\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n";

    #[test]
    fn a_good_file_passes_check_and_states_its_bound() -> Result<()> {
        let dir = Dir::new()?;
        let file = dir.write(
            "p.toml",
            &GOOD.replace("PASS", &plugin("passthrough").display().to_string()),
        )?;
        let out = weir().arg("check").arg(&file).output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 1 sources, 1 stages, 1 sinks"));
        Ok(())
    }

    #[test]
    fn an_unknown_input_is_named_with_its_line() -> Result<()> {
        let (code, err) = check(&GOOD.replace("inputs = [\"s\"]", "inputs = [\"nope\"]"))?;
        assert_eq!(code, 2);
        assert!(
            err.contains("p.toml:5: `stages.a.inputs`: unknown input `nope`"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_cycle_is_named_with_its_line() -> Result<()> {
        let text = format!(
            "{GOOD}\n[stages.b]\ninputs = [\"c\"]\nplugin = \"PASS\"\n\n[stages.c]\ninputs = [\"b\"]\nplugin = \"PASS\"\n"
        );
        let (code, err) = check(&text)?;
        assert_eq!(code, 2);
        assert!(
            err.contains("p.toml:13: `stages.b.inputs`: the stages form a cycle: b -> c -> b"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_missing_plugin_is_named_with_its_line() -> Result<()> {
        let (code, err) = check(&GOOD.replace("PASS", "/no/such/plugin.wasm"))?;
        assert_eq!(code, 2);
        assert!(
            err.contains(
                "p.toml:6: `stages.a.plugin`: plugin file not found: /no/such/plugin.wasm"
            ),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() -> Result<()> {
        let (code, err) =
            check(&GOOD.replace("plugin = \"PASS\"", "plugin = \"PASS\"\nworkers = \"many\""))?;
        assert_eq!(code, 2);
        assert!(
            err.contains(
                "p.toml:7: `stages.a.workers`: expected a whole number, found the text \"many\""
            ),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() -> Result<()> {
        let (code, err) =
            check(&GOOD.replace("type = \"null\"", "type = \"null\"\ncolour = \"red\""))?;
        assert_eq!(code, 2);
        assert!(
            err.contains("p.toml:11: `sinks.o.colour`: unknown key; a sink takes"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_core_module_is_refused_as_not_a_component() -> Result<()> {
        let dir = Dir::new()?;
        let module = dir.write_bytes("core.wasm", b"\0asm\x01\0\0\0")?;
        let (code, err) = check(&GOOD.replace("PASS", &module.display().to_string()))?;
        assert_eq!(code, 2);
        assert!(
            err.contains("core.wasm: a core WebAssembly module, not a component"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_plugin_whose_init_fails_is_refused_naming_the_stage_and_reason() -> Result<()> {
        let text = GOOD.replace("PASS", &plugin("fixture-bad-init").display().to_string()) + "";
        let text = text.replace(
            "plugin = ",
            "settings = { database = \"db.internal\" }\nplugin = ",
        );
        let (code, err) = check(&text)?;
        assert_eq!(code, 2);
        assert!(
            err.contains("stage `a`")
                && err.contains("init returned an error: cannot reach the database at db.internal"),
            "{err}"
        );
        Ok(())
    }
}

/// `weir plugin inspect` shows the world, imports, exports and digest of a real plugin.
#[test]
fn plugin_inspect_shows_imports_exports_and_digest() -> Result<()> {
    let path = plugin("sshd-parse");
    let out = weir().args(["plugin", "inspect"]).arg(&path).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("world:   weir:stage/stage@0.1.0 (loads on this host)"),
        "{text}"
    );
    assert!(text.contains("weir:stage/types@0.1.0  (granted)"), "{text}");
    assert!(
        text.contains("  init\n") && text.contains("  process\n"),
        "{text}"
    );
    let digest = support::sha256_hex(&std::fs::read(&path)?);
    assert!(text.contains(&format!("sha256:  {digest}")), "{text}");
    Ok(())
}
