//! Writing a stage in each of the five languages, through the real `weir` binary and each
//! language's real toolchain: `weir plugin new` makes a project in a temporary folder (outside
//! this repository), the project's own golden test passes natively, `weir plugin build` makes
//! the component, and `weir plugin test --expect` runs it in the sandbox against the
//! template's golden file. The filter template's declared settings are held to by `weir
//! check` (an unknown key and a mistyped value are refused, naming file, line and key), and
//! each language's uppercase example runs workload W2's shape through `weir run`.
//!
//! Keyed state and timers (weir:stage@0.3.0): a map or filter stage in any language keeps no
//! state and no time (`weir check` says neither: its component calls none of their
//! functions), the count template of Python, JavaScript, C and Go counts every key exactly
//! through `weir run` and emits the final counts when the input ends, and the Python
//! window-count example writes exactly what the Rust `window-count` writes on the same input.
//!
//! The toolchains come from `sdk/toolchains.sh` (in `.toolchains/`, or `WEIR_TOOLCHAINS`).
//! A language whose toolchain is absent is skipped with a message saying so, unless
//! `WEIR_REQUIRE_TOOLCHAINS` is set (CI sets it), when its test fails instead. Rust needs
//! only the workspace's own toolchain and always runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use support::{
    Dir, PATIENCE, PipelineFile, Running, Sink, Source, Stage, Stdin, dead_letters, read_lines,
    weir, workspace_root,
};

/// The toolchains folder the tests build with.
fn toolchains() -> PathBuf {
    std::env::var_os("WEIR_TOOLCHAINS")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace_root().join(".toolchains"), PathBuf::from)
}

/// Where the Rust projects are built: one target folder for every test, so that the SDK's
/// dependencies are compiled once.
fn cargo_target() -> PathBuf {
    workspace_root().join("target").join("authoring")
}

/// Files a language's build needs in the toolchains folder (Debian's clang aside).
fn needs(lang: &str) -> &'static [&'static str] {
    match lang {
        "python" => &["python/bin/componentize-py"],
        "js" => &["js/node_modules/.bin/componentize-js"],
        "c" => &[
            "bin/wasm-tools",
            "adapter/wasi_snapshot_preview1.reactor.wasm",
        ],
        "go" => &[
            "go/bin/go",
            "bin/wasm-tools",
            "adapter/wasi_snapshot_preview1.reactor.wasm",
            "go-pkg/go.mod",
        ],
        _ => &[],
    }
}

/// Whether `lang` can be built here. When it cannot, says so and returns false, or fails
/// when `WEIR_REQUIRE_TOOLCHAINS` is set.
fn toolchain(lang: &str) -> bool {
    let tc = toolchains();
    let mut missing: Vec<String> = needs(lang)
        .iter()
        .map(|f| tc.join(f))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if lang == "c" && !Path::new("/usr/bin/clang-19").exists() {
        missing.push("clang-19".into());
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "the {lang} toolchain is missing ({}): run `sdk/toolchains.sh {lang}`",
        missing.join(", ")
    );
    assert!(
        std::env::var_os("WEIR_REQUIRE_TOOLCHAINS").is_none(),
        "{why} (WEIR_REQUIRE_TOOLCHAINS is set)"
    );
    // Straight to the process's stderr, past the test harness's capture, so that a run that
    // passes still shows what it did not check.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
    false
}

/// A temporary folder with a compile cache of its own.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Result<Work> {
        let work = Work {
            dir: tempfile::tempdir()?,
        };
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(work.path("cache"))?;
        Ok(work)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `weir ARGS` with this folder's compile cache and the tests' toolchains.
    fn weir(&self, args: &[&str]) -> Command {
        let mut cmd = weir();
        cmd.env("WEIR_CACHE_DIR", self.path("cache"))
            .env("WEIR_TOOLCHAINS", toolchains())
            .env("CARGO_TARGET_DIR", cargo_target())
            .args(args);
        cmd
    }

    /// `weir ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.weir(args).output()?;
        ensure!(
            out.status.success(),
            "weir {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `weir ARGS`, which must fail with `code`; its stderr.
    fn fails(&self, code: i32, args: &[&str]) -> Result<String> {
        let out: Output = self.weir(args).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            out.status.code() == Some(code),
            "weir {} exited {} (expected {code}):\n{stderr}",
            args.join(" "),
            out.status
        );
        Ok(stderr)
    }

    /// `weir plugin new NAME --lang LANG --template T --dir NAME`; the project's folder.
    fn new_project(&self, name: &str, lang: &str, template: &str) -> Result<PathBuf> {
        let dir = self.path(name);
        let made = self.ok(&[
            "plugin",
            "new",
            name,
            "--lang",
            lang,
            "--template",
            template,
            "--dir",
            path(&dir),
        ])?;
        ensure!(made.starts_with("made "), "weir plugin new printed: {made}");
        Ok(dir)
    }

    /// `weir plugin build DIR --out OUT`; checks what it printed, returns OUT.
    fn build(&self, project: &Path, out: &str) -> Result<PathBuf> {
        let wasm = self.path(out);
        let printed = self.ok(&["plugin", "build", path(project), "--out", path(&wasm)])?;
        // Every SDK speaks 0.3 (keyed state, timers).
        let version = "0.3.0";
        ensure!(
            printed.contains(&format!("built {}", wasm.display()))
                && printed.contains("sha256:")
                && printed.contains(&format!("world:    weir:stage/stage@{version}")),
            "weir plugin build printed: {printed}"
        );
        let size = std::fs::metadata(&wasm)?.len();
        ensure!(
            printed.contains(&format!("size:     {size} bytes")),
            "weir plugin build printed: {printed}"
        );
        Ok(wasm)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The contract a project is written against: `wit/0.3/stage.wit`.
fn contract() -> Result<Vec<u8>> {
    Ok(std::fs::read(workspace_root().join("wit/0.3/stage.wit"))?)
}

/// The templates of a language: Rust's SDK has no count template (its own `count-keys`
/// fixture and `window-count` plugin keep state).
fn templates(lang: &str) -> &'static [&'static str] {
    if lang == "rust" {
        &["map", "filter"]
    } else {
        &["map", "filter", "count"]
    }
}

/// The project's own golden test, natively: `cargo test` or `./test.sh`.
fn native_test(lang: &str, project: &Path) -> Result<()> {
    let mut cmd = if lang == "rust" {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "--quiet"]);
        cmd
    } else {
        Command::new("./test.sh")
    };
    let out = cmd
        .current_dir(project)
        .env("WEIR_TOOLCHAINS", toolchains())
        .env("CARGO_TARGET_DIR", cargo_target())
        .output()
        .with_context(|| format!("cannot run the {lang} project's test"))?;
    ensure!(
        out.status.success(),
        "the {lang} project's own test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `new` -> native test -> `build` -> `test --expect` for both templates, then the declared
/// settings of the filter through `weir check`, then the uppercase example through `weir run`.
fn language(lang: &str, example: impl FnOnce(&Work) -> Result<PathBuf>) -> Result<()> {
    if !toolchain(lang) {
        return Ok(());
    }
    let work = Work::new()?;
    for &template in templates(lang) {
        let project = work.new_project(&format!("{lang}-{template}"), lang, template)?;
        native_test(lang, &project)?;
        let wasm = work.build(&project, &format!("{lang}-{template}.wasm"))?;
        let input = project.join("golden/input.txt");
        let expected = project.join("golden/expected.jsonl");
        work.ok(&[
            "plugin",
            "test",
            path(&wasm),
            "--input",
            path(&input),
            "--expect",
            path(&expected),
        ])?;
        if template == "filter" {
            declared_settings(&work, lang, &wasm)?;
        }
        if template == "count" {
            counts_exactly(&work, lang, &wasm)?;
        } else {
            keeps_nothing(&work, lang, &wasm)?;
        }
    }
    let uppercase = example(&work)?;
    keeps_nothing(&work, lang, &uppercase)?;
    w2(&work, &uppercase)
}

/// What `weir check` says of a pipeline with `wasm` as its one stage, `count`, fed events with
/// keys and event time.
fn checked(work: &Work, wasm: &Path) -> Result<String> {
    let file = PipelineFile::new()
        .source(
            "gen",
            Source::generate(10).key("keys", 3).key("event_time", 1_000),
        )
        .stage("count", Stage::plugin(wasm).inputs(&["gen"]))
        .sink("out", Sink::null().inputs(&["count"]));
    let written = work.path("check.toml");
    std::fs::write(&written, file.text())?;
    work.ok(&["check", path(&written)])
}

/// A stage that never calls state or time keeps neither: its component imports none of their
/// functions (only `on-timer`'s types), so the host gives it no store and no clock.
fn keeps_nothing(work: &Work, lang: &str, wasm: &Path) -> Result<()> {
    let said = checked(work, wasm)?;
    ensure!(
        !said.contains("state of `count`") && !said.contains("time of `count`"),
        "{lang}: {} keeps state or time:\n{said}",
        wasm.display()
    );
    Ok(())
}

/// The count template through `weir run`: generated events over 7 keys with event time, in
/// batches of 64; every event becomes `KEY,N` with N its key's running count, and when the
/// input ends each key's timer emits `KEY,TOTAL,final`, once. `weir check` says the stage keeps
/// state and time.
fn counts_exactly(work: &Work, lang: &str, wasm: &Path) -> Result<()> {
    const EVENTS: u64 = 5_000;
    const KEYS: u64 = 7;
    let said = checked(work, wasm)?;
    ensure!(
        said.contains("state of `count`: in memory") && said.contains("time of `count`"),
        "{lang}: the count template keeps no state or time:\n{said}"
    );
    let out = work.path(&format!("{lang}-count.txt"));
    let file = PipelineFile::new()
        .batch_size(64)
        .source(
            "gen",
            Source::generate(EVENTS as i64)
                .key("keys", KEYS as i64)
                .key("event_time", 1_700_000_000_000_i64),
        )
        .stage("count", Stage::plugin(wasm).inputs(&["gen"]))
        .sink("out", Sink::file(&out).inputs(&["count"]));
    let written = work.path("count.toml");
    std::fs::write(&written, file.text())?;
    let cmd = work.weir(&["run", "--report", "json", path(&written)]);
    let ran = Running::start(cmd, Stdin::Null)?.finish(PATIENCE)?;
    let node = ran.report().node("count");
    ensure!(
        node.events_in == EVENTS && node.events_out == EVENTS + KEYS && node.failed == 0,
        "{lang}: count: {node:?}"
    );
    let lines = read_lines(&out)?;
    ensure!(
        lines.len() as u64 == EVENTS + KEYS,
        "{lang}: {} lines",
        lines.len()
    );
    // Event i has the key k{(i * 7919) % 7}: the count each line should carry, in order.
    let mut want = std::collections::BTreeMap::<String, u64>::new();
    for (i, line) in lines[..EVENTS as usize].iter().enumerate() {
        let key = format!("k{}", (i as u64 * 7919) % KEYS);
        let n = want.entry(key.clone()).or_default();
        *n += 1;
        ensure!(
            *line == format!("{key},{n}"),
            "{lang}: line {i} is {line:?}, not {key},{n}"
        );
    }
    let mut finals: Vec<&str> = lines[EVENTS as usize..]
        .iter()
        .map(String::as_str)
        .collect();
    finals.sort_unstable();
    let wanted: Vec<String> = want.iter().map(|(k, n)| format!("{k},{n},final")).collect();
    ensure!(
        finals == wanted,
        "{lang}: final counts {finals:?}, not {wanted:?}"
    );
    Ok(())
}

/// `weir check` refuses an unknown setting and a mistyped one of the filter template,
/// naming the file, the line and the key; the declared ones pass.
fn declared_settings(work: &Work, lang: &str, wasm: &Path) -> Result<()> {
    let pipeline = |key: &str, value: toml::Value| {
        PipelineFile::new()
            .source("lines", Source::generate(10))
            .stage(
                "filter",
                Stage::plugin(wasm).inputs(&["lines"]).setting(key, value),
            )
            .sink("out", Sink::null().inputs(&["filter"]))
    };
    let cases = [
        (
            "dropp",
            toml::Value::from("x"),
            "does not declare a setting `dropp`",
        ),
        (
            "ignore-case",
            toml::Value::from("yes"),
            "\"yes\" is not true or false",
        ),
    ];
    for (key, value, says) in cases {
        let file = pipeline(key, value);
        let written = work.path("pipeline.toml");
        std::fs::write(&written, file.text())?;
        let stderr = work.fails(2, &["check", path(&written)])?;
        let line = file.line_of(key);
        let wanted = format!(
            "{}:{line}: `stages.filter.settings.{key}`",
            written.display()
        );
        ensure!(
            stderr.contains(&wanted) && stderr.contains(says),
            "{lang}: weir check did not name {wanted} and say {says:?}:\n{stderr}"
        );
    }
    let file = pipeline("ignore-case", toml::Value::from(true));
    let written = work.path("pipeline.toml");
    std::fs::write(&written, file.text())?;
    work.ok(&["check", path(&written)])?;
    Ok(())
}

/// Workload W2's shape at a small size: generated 100-byte values through three uppercase
/// stages into a file; every value comes out upper-cased, every stage passes every event.
fn w2(work: &Work, uppercase: &Path) -> Result<()> {
    const EVENTS: usize = 3_000;
    let out = work.path("w2.txt");
    let file = PipelineFile::new()
        .source("gen", Source::generate(EVENTS as i64).size(100))
        .stage("s1", Stage::plugin(uppercase).inputs(&["gen"]))
        .stage("s2", Stage::plugin(uppercase).inputs(&["s1"]))
        .stage("s3", Stage::plugin(uppercase).inputs(&["s2"]))
        .sink("out", Sink::file(&out).inputs(&["s3"]));
    let written = work.path("w2.toml");
    std::fs::write(&written, file.text())?;
    let cmd = work.weir(&["run", "--report", "json", path(&written)]);
    let ran = Running::start(cmd, Stdin::Null)?.finish(PATIENCE)?;
    let report = ran.report();
    for stage in ["s1", "s2", "s3"] {
        let node = report.node(stage);
        ensure!(
            node.events_in == EVENTS as u64 && node.events_out == EVENTS as u64 && node.failed == 0,
            "stage {stage}: {node:?}"
        );
    }
    let text = std::fs::read_to_string(&out)?;
    let lines: Vec<&str> = text.lines().collect();
    ensure!(lines.len() == EVENTS, "{} lines written", lines.len());
    for (i, line) in lines.iter().enumerate() {
        let wanted: String = (0..100)
            .map(|j| char::from(b'A' + ((i + j) % 26) as u8))
            .collect();
        ensure!(*line == wanted, "line {i}: {line:?}, expected {wanted:?}");
    }
    Ok(())
}

/// The uppercase example of a language from `sdk/examples/`, built by `weir plugin build`.
fn example(lang: &'static str) -> impl FnOnce(&Work) -> Result<PathBuf> {
    move |work| {
        let project = workspace_root().join(format!("sdk/examples/{lang}-uppercase"));
        work.build(&project, &format!("{lang}-uppercase.wasm"))
    }
}

#[test]
fn rust() -> Result<()> {
    language("rust", |_| Ok(support::plugin("uppercase")))
}

#[test]
fn python() -> Result<()> {
    language("python", example("python"))
}

#[test]
fn javascript() -> Result<()> {
    language("js", example("js"))
}

#[test]
fn c() -> Result<()> {
    language("c", example("c"))
}

#[test]
fn go() -> Result<()> {
    language("go", example("go"))
}

/// The templates carry no copy of the contract: `sdk/new.sh` and `weir plugin new` write the
/// one in `wit/0.3` as the project's `wit/stage.wit`, where each language's build script reads
/// it.
#[test]
fn new_writes_the_current_contract_into_every_project() -> Result<()> {
    let current = contract()?;
    let work = Work::new()?;
    for lang in ["python", "js", "c", "go"] {
        for &template in templates(lang) {
            let name = format!("{lang}-{template}");
            let made = work.path(&format!("sh-{name}"));
            let out = Command::new(workspace_root().join("sdk/new.sh"))
                .args([name.as_str(), lang, template, path(&made)])
                .output()?;
            ensure!(
                out.status.success(),
                "sdk/new.sh {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let written = std::fs::read(made.join("wit/stage.wit"))
                .with_context(|| format!("sdk/new.sh {lang}/{template}: no wit/stage.wit"))?;
            ensure!(
                written == current,
                "sdk/new.sh {lang}/{template}: wit/stage.wit differs from wit/0.3/stage.wit"
            );
            let project = work.new_project(&name, lang, template)?;
            let written = std::fs::read(project.join("wit/stage.wit"))
                .with_context(|| format!("{lang}/{template}: no wit/stage.wit"))?;
            ensure!(
                written == current,
                "weir plugin new {lang}/{template}: wit/stage.wit differs from wit/0.3/stage.wit"
            );
        }
    }
    Ok(())
}

/// The Python window helpers give exactly what the Rust SDK's give: the Python
/// `window-count` example and the Rust `window-count` plugin, side by side in one pipeline on
/// the same events, write the same lines in the same order: tumbling windows over W5's shape
/// (generated keys and times), then hopping and session windows with late events, from
/// `key,time` lines through the `fixture-stamp` stage.
#[test]
fn python_windows_count_as_the_rust_ones_do() -> Result<()> {
    if !toolchain("python") {
        return Ok(());
    }
    let work = Work::new()?;
    let project = workspace_root().join("sdk/examples/python-window-count");
    // The examples carry no copy of the layer: sdk/python/test.sh supplies it.
    let tested = Command::new(workspace_root().join("sdk/python/test.sh"))
        .arg(&project)
        .output()?;
    ensure!(
        tested.status.success(),
        "the window-count example's own test failed:\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let python = work.build(&project, "python-window-count.wasm")?;
    let rust = support::plugin("window-count");
    let dir = Dir::new()?;
    // W5's shape: 20,000 events over 50 keys, one a millisecond, in 1-second windows.
    let file = PipelineFile::new()
        .source(
            "gen",
            Source::generate(20_000)
                .key("keys", 50)
                .key("event_time", 1_700_000_000_000_i64),
        )
        .stage(
            "py",
            Stage::plugin(&python)
                .inputs(&["gen"])
                .setting("size_ms", 1_000_i64),
        )
        .stage(
            "rs",
            Stage::plugin(&rust)
                .inputs(&["gen"])
                .setting("size_ms", 1_000_i64),
        )
        .sink("py-out", Sink::file("py.jsonl").inputs(&["py"]))
        .sink("rs-out", Sink::file("rs.jsonl").inputs(&["rs"]))
        .write(&dir)?;
    let ran = dir.run(&file)?;
    ensure!(ran.code() == 0, "{}", ran.stderr());
    same_lines(&dir, "tumbling", 1_000)?;
    // Hopping and session windows, and late events (5000 after 61000: its windows closed).
    let lines = [
        "a,1000", "b,2000", "a,5000", "b,20000", "b,11000", "a,40000", "k,61000", "a,5000",
        "z,100000", "k,62000",
    ];
    dir.write_lines("in.txt", &lines)?;
    for (window, settings) in [
        (
            "hopping",
            &[("size_ms", 20_000_i64), ("slide_ms", 10_000)][..],
        ),
        ("session", &[("gap_ms", 10_000_i64)][..]),
    ] {
        let stage = |plugin: &Path| {
            let mut s = Stage::plugin(plugin)
                .inputs(&["stamp"])
                .setting("window", window)
                .key("allowed_lateness", "20s");
            for (k, v) in settings {
                s = s.setting(k, *v);
            }
            s
        };
        let file = PipelineFile::new()
            .batch_size(2)
            .source("in", Source::file("in.txt"))
            .stage(
                "stamp",
                Stage::plugin(support::plugin("fixture-stamp")).inputs(&["in"]),
            )
            .stage("py", stage(&python))
            .stage("rs", stage(&rust))
            .sink("py-out", Sink::file("py.jsonl").inputs(&["py"]))
            .sink("rs-out", Sink::file("rs.jsonl").inputs(&["rs"]))
            .dead_letters("dead.jsonl")
            .write(&dir)?;
        std::fs::remove_file(dir.path("py.jsonl"))?;
        std::fs::remove_file(dir.path("rs.jsonl"))?;
        let ran = dir.run(&file)?;
        ensure!(ran.code() == 0, "{window}: {}", ran.stderr());
        same_lines(&dir, window, 4)?;
        // The late events are dead-lettered by both alike, as late, with the same reasons;
        // `a,5000` is one (after `k,61000`, its windows closed).
        let dead = dead_letters(&dir.path("dead.jsonl"))?;
        let of = |stage: &str| -> Vec<(String, String, String)> {
            (dead.iter().filter(|d| d.stage == stage))
                .map(|d| (d.kind.clone(), d.message.clone(), d.value().to_string()))
                .collect()
        };
        let (py, rs) = (of("py"), of("rs"));
        ensure!(
            py == rs
                && py.iter().any(|(_, _, v)| v == "a,5000")
                && py
                    .iter()
                    .all(|(k, m, _)| k == "late" && m.starts_with("late: ")),
            "{window}: dead letters of py {py:?}, of rs {rs:?}"
        );
        std::fs::remove_file(dir.path("dead.jsonl"))?;
    }
    Ok(())
}

/// The Python and Rust outputs are the same lines in the same order, at least `at_least`.
fn same_lines(dir: &Dir, what: &str, at_least: usize) -> Result<()> {
    let py = read_lines(&dir.path("py.jsonl"))?;
    let rs = read_lines(&dir.path("rs.jsonl"))?;
    ensure!(
        rs.len() >= at_least,
        "{what}: the Rust plugin wrote {} lines",
        rs.len()
    );
    ensure!(
        py == rs,
        "{what}: Python wrote {} lines, Rust {}; first difference: {:?}",
        py.len(),
        rs.len(),
        py.iter().zip(&rs).find(|(a, b)| a != b)
    );
    Ok(())
}

#[test]
fn new_refuses_a_bad_name_an_unknown_template_and_a_folder_in_use() -> Result<()> {
    let work = Work::new()?;
    let stderr = work.fails(2, &["plugin", "new", "Bad_Name", "--lang", "python"])?;
    ensure!(
        stderr.contains("`Bad_Name` is not a stage name"),
        "{stderr}"
    );
    let stderr = work.fails(
        2,
        &["plugin", "new", "x", "--lang", "go", "--template", "nope"],
    )?;
    ensure!(
        stderr.contains("no template `nope` for go; its templates: count, filter, map"),
        "{stderr}"
    );
    let used = work.path("used");
    std::fs::create_dir(&used)?;
    std::fs::write(used.join("keep.txt"), "mine")?;
    let stderr = work.fails(
        2,
        &["plugin", "new", "x", "--lang", "c", "--dir", path(&used)],
    )?;
    ensure!(stderr.contains("exists and is not empty"), "{stderr}");
    ensure!(std::fs::read_to_string(used.join("keep.txt"))? == "mine");
    Ok(())
}

#[test]
fn build_names_a_missing_toolchain_and_what_installs_it() -> Result<()> {
    let work = Work::new()?;
    let project = work.new_project("no-tools", "python", "map")?;
    let empty = work.path("no-toolchains");
    std::fs::create_dir(&empty)?;
    let out = work
        .weir(&["plugin", "build", path(&project)])
        .env("WEIR_TOOLCHAINS", &empty)
        .env("PATH", "/usr/bin:/bin")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{}: {stderr}", out.status);
    ensure!(
        stderr.contains("needs componentize-py")
            && stderr.contains("sdk/toolchains.sh python")
            && stderr.contains("pip install componentize-py=="),
        "{stderr}"
    );
    let stderr = work.fails(1, &["plugin", "build", path(&work.path("cache"))])?;
    ensure!(stderr.contains("is not a stage project"), "{stderr}");
    Ok(())
}

/// A Rust crate that builds but exports no stage (a component of another world) is refused by
/// `weir plugin build` and `weir plugin test`, naming what is missing.
#[test]
fn build_refuses_a_component_without_the_stage_exports() -> Result<()> {
    let work = Work::new()?;
    let project = work.new_project("no-exports", "rust", "map")?;
    std::fs::write(
        project.join("src/lib.rs"),
        "//! Exports nothing.\npub fn nothing() {}\n",
    )?;
    std::fs::remove_dir_all(project.join("tests"))?;
    let wasm = work.path("no-exports.wasm");
    let stderr = work.fails(
        2,
        &["plugin", "build", path(&project), "--out", path(&wasm)],
    )?;
    ensure!(
        stderr.contains("weir refuses it")
            && stderr.contains("does not implement the `stage` world"),
        "{stderr}"
    );
    // The component of another world that the build left behind is refused by `plugin test`
    // too, before any event runs.
    let stderr = work.fails(2, &["plugin", "test", path(&wasm), "--text", "a"])?;
    ensure!(
        stderr.contains("does not implement the `stage` world"),
        "{stderr}"
    );
    // So is a component of another world altogether (it exports `greet`), named as such.
    let other = support::plugin("fixture-evil-other-world");
    let stderr = work.fails(2, &["plugin", "test", path(&other), "--text", "a"])?;
    ensure!(
        stderr.contains("does not implement the `stage` world")
            && stderr.contains("its function exports: greet"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn test_shows_a_difference_from_the_golden_file() -> Result<()> {
    let work = Work::new()?;
    let project = work.new_project("differs", "rust", "filter")?;
    let wasm = work.build(&project, "differs.wasm")?;
    let input = project.join("golden/input.txt");
    let expected = project.join("golden/expected.jsonl");
    let stderr = work.fails(
        1,
        &[
            "plugin",
            "test",
            path(&wasm),
            "--input",
            path(&input),
            "--expect",
            path(&expected),
            "--setting",
            "drop=WARN",
        ],
    )?;
    ensure!(
        stderr.contains("line 2:\n  - {\"event\":1,\"outputs\":[]}\n  + {\"event\":1,\"outputs\":[{\"value\":\"DEBUG cache warm\"}]}")
            && stderr.contains("3 of 5 lines differ"),
        "{stderr}"
    );
    // Settings are checked as `weir check` checks them; the outcome of every event, a reject
    // and a key and header included, is on stdout; fuel and time per event on stderr.
    let stderr = work.fails(
        2,
        &[
            "plugin",
            "test",
            path(&wasm),
            "--text",
            "a",
            "--setting",
            "dropp=x",
        ],
    )?;
    ensure!(
        stderr.contains("--setting dropp: the plugin does not declare"),
        "{stderr}"
    );
    let out = work
        .weir(&[
            "plugin",
            "test",
            path(&wasm),
            "--text",
            "",
            "--text",
            "b",
            "--key",
            "k",
            "--header",
            "h=v",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stderr}");
    ensure!(
        stdout
            == "{\"event\":0,\"failure\":\"reject\",\"reason\":\"empty value\"}\n\
                {\"event\":1,\"outputs\":[{\"headers\":[[\"h\",\"v\"]],\"key\":\"k\",\"value\":\"b\"}]}\n",
        "{stdout}"
    );
    ensure!(
        stderr.contains("event 0: ")
            && stderr.contains(" fuel, ")
            && stderr.contains("2 events, 1 failed"),
        "{stderr}"
    );
    Ok(())
}

/// A git dependency on the SDK makes cargo read every manifest of this repository: none may
/// hold a template's placeholder (the templates keep theirs as `Cargo.toml.template`).
#[test]
fn no_manifest_in_the_repository_holds_a_placeholder() -> Result<()> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() && !name.starts_with('.') && name != "target" {
                walk(&path, found)?;
            } else if name == "Cargo.toml" && std::fs::read_to_string(&path)?.contains("{{") {
                found.push(path);
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(&workspace_root(), &mut found)?;
    ensure!(found.is_empty(), "manifests with a placeholder: {found:?}");
    Ok(())
}
