//! Tests of the pipeline-file checks: one case per check, each asserting the line, the key
//! path and a piece of the message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::*;

/// A folder with the files the base pipeline names: a plugin, an input file, a directory.
pub(crate) struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("p.wasm"), b"\0asm").expect("the plugin file");
        std::fs::write(dir.path().join("in.log"), b"a line\n").expect("the input file");
        std::fs::create_dir(dir.path().join("lookup")).expect("the granted folder");
        Fixture { dir }
    }

    pub(crate) fn file(&self) -> PathBuf {
        self.dir.path().join("p.toml")
    }

    pub(crate) fn parse(&self, text: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::parse(&self.file(), text)
    }
}

/// A valid pipeline that sets every key. The line numbers of the cases below refer to it.
pub(crate) const BASE: &str = r#"[pipeline]
batch_size = 256
linger = "5ms"
buffer = 4

[sources.logs]
type = "file"
path = "in.log"
repeat = 1

[sources.gen]
type = "generate"
count = 10
size = 100

[stages.parse]
inputs = ["logs", "gen"]
plugin = "p.wasm"
settings = { format = "json", max = 10 }
workers = 2
fuel = 10_000_000
timeout = "1s"
memory = "64MiB"
retries = 3
on_error = "dead-letter"
max_output_events = 1024
max_output_bytes = "64MiB"
max_value_size = "16MiB"
breaker = { window = 100, threshold = 0.5, cooldown = "5s" }
grant = { dirs = [{ host = "lookup", guest = "/data" }], env = ["TZ"], network = false }
watch = true
canary = { events = 1000, max_failure_rate = 0.5 }

[sinks.out]
inputs = ["parse"]
type = "file"
path = "out.jsonl"
encoding = "json"

[dead_letter]
type = "file"
path = "dead.jsonl"

[admin]
listen = "127.0.0.1:7878"
token = "0123456789abcdef"
header_timeout = "10s"
idle_timeout = "5s"
body_timeout = "1m"
max_connections = 64
"#;

/// A smaller pipeline: stdin, one stage, a null sink.
const SMALL: &str = "[sources.s]\ntype = \"stdin\"\n\n[stages.a]\ninputs = [\"s\"]\nplugin = \"p.wasm\"\n\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n";

#[test]
fn workers_are_auto_unless_a_number_is_given() {
    let fx = Fixture::new();
    let p = fx.parse(SMALL).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.stages[0].workers_auto, "no `workers`: auto");
    let text = SMALL.replace("plugin = ", "workers = \"auto\"\nplugin = ");
    let p = fx.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.stages[0].workers_auto);
    let text = SMALL.replace("plugin = ", "workers = 3\nplugin = ");
    let p = fx.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p.stages[0].workers, p.stages[0].workers_auto), (3, false));
}

#[test]
fn the_base_pipeline_reads_every_key() {
    let fx = Fixture::new();
    let p = fx.parse(BASE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (p.batch_size, p.linger, p.buffer),
        (256, Duration::from_millis(5), 4)
    );
    assert_eq!(p.sources.len(), 2);
    let gen_source = p.sources.iter().find(|s| s.name == "gen").expect("gen");
    assert!(matches!(
        gen_source.kind,
        SourceKind::Generate {
            count: 10,
            size: 100,
            keys: None,
            event_time: None,
        }
    ));
    let s = &p.stages[0];
    assert_eq!(
        s.settings,
        [
            ("format".into(), "json".into()),
            ("max".into(), "10".into())
        ]
    );
    assert_eq!(
        (s.workers, s.workers_auto, s.retries, s.on_error),
        (2, false, 3, OnError::DeadLetter)
    );
    assert_eq!(s.limits, Limits::default());
    assert_eq!(s.breaker, Breaker::default());
    assert_eq!(s.grant.dirs.len(), 1);
    assert_eq!(s.grant.dirs[0].guest, "/data");
    assert_eq!(s.grant.env, ["TZ"]);
    assert!(s.watch && !s.grant.network);
    assert_eq!(s.canary, Canary::default());
    assert!(matches!(p.sinks[0].kind, SinkKind::File { .. }));
    assert_eq!(p.sinks[0].encoding, Encoding::Json);
    assert!(matches!(p.dead_letter, DeadLetterConfig::File { .. }));
    let admin = p.admin.expect("the admin table");
    assert_eq!(admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
    assert_eq!(admin.listen_line, 45);
    assert!(admin.tls.is_none());
    assert_eq!(admin.limits, AdminLimits::default());
}

#[test]
fn a_stage_knows_its_lines_and_names_a_setting_or_its_plugin_in_errors() {
    let fx = Fixture::new();
    let p = fx.parse(BASE).unwrap_or_else(|e| panic!("{e}"));
    let s = &p.stages[0];
    assert_eq!((s.lines.table, s.lines.plugin), (16, 18));
    assert_eq!(s.lines.settings.get("format"), Some(&19));
    assert_eq!(s.lines.file, fx.file());

    let err = s.setting_error("format", "the plugin does not know `json`");
    assert_eq!(err.line, Some(19));
    assert_eq!(err.key.as_deref(), Some("stages.parse.settings.format"));
    assert_eq!(err.file, fx.file());
    assert!(
        err.to_string().ends_with(
            "p.toml:19: `stages.parse.settings.format`: the plugin does not know `json`"
        )
    );
    // A setting the file does not set (a required one) is blamed on the stage's table.
    let err = s.setting_error("path", "the plugin requires setting `path`");
    assert_eq!(err.line, Some(16));
    assert_eq!(err.key.as_deref(), Some("stages.parse.settings.path"));
    let err = s.plugin_error("not a component");
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(18), Some("stages.parse.plugin"))
    );
}

#[test]
fn limits_give_the_sandbox_its_share() {
    // The sandbox's defaults are the stage's: `weir plugin test` and a pipeline agree.
    assert_eq!(Limits::default().sandbox, weir_sandbox::Limits::default());
    let text = BASE
        .replace("fuel = 10_000_000", "fuel = 7")
        .replace("timeout = \"1s\"", "timeout = \"3ms\"")
        .replace("memory = \"64MiB\"", "memory = \"1MiB\"")
        .replace(
            "max_output_bytes = \"64MiB\"",
            "max_output_bytes = \"2MiB\"",
        );
    let p = Fixture::new()
        .parse(&text)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.stages[0].limits.sandbox,
        weir_sandbox::Limits {
            fuel: 7,
            timeout: Duration::from_millis(3),
            memory: 1 << 20,
            output_bytes: 2 << 20,
        }
    );
}

#[test]
fn durations_and_sizes_read_their_units() {
    assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
    assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("0.1s").unwrap(), Duration::from_millis(100));
    assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert!(parse_duration("10 parsecs").is_err());
    assert!(parse_duration("ms").is_err());
    assert!(parse_duration("1.2.3s").is_err());
    assert!(parse_duration("5").is_err());
    assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("2KB").unwrap(), 2000);
    assert!(parse_size("lots").is_err());
    assert!(parse_size("1.5GiB").is_err());
}

#[test]
fn huge_durations_and_sizes_are_errors_not_panics() {
    let err = parse_duration("20000000000000000000s").unwrap_err();
    assert!(err.contains("too long"), "{err}");
    assert!(parse_duration("18446744073709551615s").is_ok());
    assert!(parse_duration("999999999999999999999999999999h").is_err());
    assert!(parse_duration(&format!("{}s", "9".repeat(400))).is_err());
    assert!(parse_duration(&format!("0.{}s", "0".repeat(400))).is_err());
    let err = parse_size("99999999999999999999").unwrap_err();
    assert!(err.contains("too large"), "{err}");
    assert!(parse_size("17179869184GiB").is_err());
}

#[test]
fn ranges_read_as_people_write_them() {
    assert_eq!(units::fmt_duration(Duration::from_millis(1)), "1ms");
    assert_eq!(units::fmt_duration(Duration::from_secs(3600)), "1h");
    assert_eq!(units::fmt_duration(Duration::ZERO), "0s");
    assert_eq!(units::fmt_size(64 << 10), "64KiB");
    assert_eq!(units::fmt_size(4 << 30), "4GiB");
    assert_eq!(units::fmt_size(1), "1B");
    assert_eq!(units::fmt_whole(65_536), "65_536");
    assert_eq!(units::fmt_whole(1024), "1024");
    assert_eq!(units::fmt_whole(1_000_000_000_000u64), "1_000_000_000_000");
}

/// One check: replace the one occurrence of `.0` in the file by `.1`; the error must be at line
/// `.2`, about key `.3`, with `.4` in its message.
pub(crate) type Row = (
    &'static str,
    &'static str,
    usize,
    &'static str,
    &'static str,
);

/// A whole file, the line (none for a file-wide error), the key and a piece of the message.
type Whole = (String, Option<usize>, &'static str, &'static str);

/// Runs every row against `base`, and reports all the rows that fail at once.
pub(crate) fn run(base: &str, rows: &[Row]) {
    let cases: Vec<Whole> = (rows.iter())
        .map(|&(from, to, line, key, fragment)| {
            assert_eq!(base.matches(from).count(), 1, "`{from}` must occur once");
            (base.replacen(from, to, 1), Some(line), key, fragment)
        })
        .collect();
    run_whole(&cases);
}

fn run_whole(cases: &[Whole]) {
    let fx = Fixture::new();
    let mut failures = Vec::new();
    for (text, line, key, fragment) in cases {
        let case = format!("({line:?}, {key}, {fragment})");
        match fx.parse(text) {
            Ok(_) => failures.push(format!("{case}: accepted")),
            Err(e) => {
                let ok = e.line == *line
                    && e.key.as_deref() == Some(*key)
                    && e.message.contains(fragment)
                    && e.file == fx.file();
                if !ok {
                    failures.push(format!("{case}: got {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// TOML syntax errors and unknown keys, at every level.
#[rustfmt::skip]
const SYNTAX_AND_UNKNOWN_KEYS: &[Row] = &[
    ("linger = \"5ms\"", "linger = \"5ms", 3, "pipeline.linger", "not valid TOML"),
    ("buffer = 4\n", "buffer = 4\nbuffer = 5\n", 5, "pipeline.buffer", "duplicate key"),
    ("[stages.parse]", "[stage.parse]", 16, "stage", "did you mean `stages`?"),
    ("buffer = 4", "bufer = 4", 4, "pipeline.bufer", "did you mean `buffer`?"),
    ("repeat = 1", "repeats = 1", 9, "sources.logs.repeats", "did you mean `repeat`?"),
    ("inputs = [\"logs\", \"gen\"]", "input = [\"logs\", \"gen\"]", 17, "stages.parse.input", "did you mean `inputs`?"),
    ("encoding = \"json\"", "encoding = \"json\"\ncolour = \"red\"", 39, "sinks.out.colour", "unknown key; a sink takes `inputs`, `type` and `encoding`; a `file` sink also `path`, `mode` and `sync`"),
    ("window = 100", "windw = 100", 29, "stages.parse.breaker.windw", "did you mean `window`?"),
    ("host = \"lookup\"", "hst = \"lookup\"", 30, "stages.parse.grant.dirs[0].hst", "did you mean `host`?"),
    ("network = false", "netwrk = false", 30, "stages.parse.grant.netwrk", "did you mean `network`?"),
    ("network = false", "files = false", 30, "stages.parse.grant.files", "a grant takes `dirs`, `env` and `network`"),
    ("events = 1000", "event = 1000", 32, "stages.parse.canary.event", "did you mean `events`?"),
    ("type = \"file\"\npath = \"dead", "kind = \"file\"\npath = \"dead", 41, "dead_letter.kind", "unknown key"),
    ("listen = ", "listn = ", 45, "admin.listn", "did you mean `listen`?"),
];

#[test]
fn toml_syntax_and_unknown_keys_name_the_key_and_suggest_one() {
    run(BASE, SYNTAX_AND_UNKNOWN_KEYS);
}

/// A value of the wrong type, for each kind of value.
#[rustfmt::skip]
const WRONG_TYPES: &[Row] = &[
    ("count = 10", "count = \"twice\"", 13, "sources.gen.count", "expected a whole number, found the text \"twice\""),
    ("linger = \"5ms\"", "linger = 5", 3, "pipeline.linger", "expected a duration such as \"5ms\""),
    ("memory = \"64MiB\"", "memory = true", 23, "stages.parse.memory", "expected a size such as \"64MiB\", or a number of bytes, found `true`"),
    ("workers = 2", "workers = 2.5", 20, "stages.parse.workers", "expected a whole number or \"auto\", found the number 2.5"),
    ("workers = 2", "workers = \"all\"", 20, "stages.parse.workers", "expected a whole number or \"auto\", found"),
    ("threshold = 0.5", "threshold = \"half\"", 29, "stages.parse.breaker.threshold", "expected a number such as 0.5"),
    ("watch = true", "watch = \"yes\"", 31, "stages.parse.watch", "expected `true` or `false`"),
    ("inputs = [\"logs\", \"gen\"]", "inputs = \"logs\"", 17, "stages.parse.inputs", "expected a list of text such as [\"auth_log\"]"),
    ("inputs = [\"logs\", \"gen\"]", "inputs = [\"logs\", 5]", 17, "stages.parse.inputs", "expected text in quotes"),
    ("plugin = \"p.wasm\"", "plugin = [\"p.wasm\"]", 18, "stages.parse.plugin", "expected text in quotes, found a list"),
    ("breaker = { window = 100, threshold = 0.5, cooldown = \"5s\" }", "breaker = 5", 29, "stages.parse.breaker", "expected a table such as { window = 100"),
    ("dirs = [{ host = \"lookup\", guest = \"/data\" }]", "dirs = [\"lookup\"]", 30, "stages.parse.grant.dirs[0]", "expected { host = \"lookup\", guest = \"/data\" }, found the text \"lookup\""),
    ("dirs = [{ host = \"lookup\", guest = \"/data\" }]", "dirs = \"lookup\"", 30, "stages.parse.grant.dirs", "expected a list of tables"),
    ("env = [\"TZ\"]", "env = \"TZ\"", 30, "stages.parse.grant.env", "expected a list of text"),
    ("settings = { format = \"json\", max = 10 }", "settings = { format = { a = 1 } }", 19, "stages.parse.settings.format", "expected text, a number or a boolean, found a table"),
    ("settings = { format = \"json\", max = 10 }", "settings = \"json\"", 19, "stages.parse.settings", "expected a table such as { format = \"json\" }"),
    ("[sinks.out]", "[[sinks.out]]", 34, "sinks.out", "expected a table `[sinks.NAME]`, found a list"),
    ("listen = \"127.0.0.1:7878\"", "listen = 7878", 45, "admin.listen", "expected text in quotes, found the number 7878"),
];

#[test]
fn a_value_of_the_wrong_type_says_what_the_key_expects() {
    run(BASE, WRONG_TYPES);
    run_whole(&[
        (
            format!("admin = 5\n{SMALL}"),
            Some(1),
            "admin",
            "expected a table `[admin]`, found the number 5",
        ),
        (
            "sources = [1]\n".to_string(),
            Some(1),
            "sources",
            "expected tables such as `[sources.NAME]`, found a list",
        ),
    ]);
}

/// A required key left out, for each table that has one.
#[rustfmt::skip]
const MISSING_KEYS: &[Row] = &[
    ("plugin = \"p.wasm\"\n", "", 16, "stages.parse.plugin", "missing: a stage needs `plugin`"),
    ("inputs = [\"logs\", \"gen\"]\n", "", 16, "stages.parse.inputs", "missing: a stage needs `inputs`"),
    ("type = \"generate\"\n", "", 11, "sources.gen.type", "missing: a source needs `type`"),
    ("inputs = [\"parse\"]\n", "", 34, "sinks.out.inputs", "missing: a sink needs `inputs`"),
    ("type = \"file\"\npath = \"out", "path = \"out", 34, "sinks.out.type", "missing: a sink needs `type`"),
    ("type = \"file\"\npath = \"dead", "path = \"dead", 40, "dead_letter.type", "missing: `[dead_letter]` needs `type`"),
    ("{ host = \"lookup\", guest", "{ guest", 30, "stages.parse.grant.dirs[0].host", "missing: a directory grant needs `host`"),
    (", guest = \"/data\" }", " }", 30, "stages.parse.grant.dirs[0].guest", "missing: a directory grant needs `guest`"),
];

#[test]
fn a_missing_key_is_named_at_its_table() {
    run(BASE, MISSING_KEYS);
}

/// Every number and duration, out of its range.
#[rustfmt::skip]
const OUT_OF_RANGE: &[Row] = &[
    ("batch_size = 256", "batch_size = 0", 2, "pipeline.batch_size", "from 1 to 65_536, found 0"),
    ("batch_size = 256", "batch_size = 99999999999999999999999", 2, "pipeline.batch_size", "found 99999999999999999999999"),
    ("batch_size = 256", "batch_size = -3", 2, "pipeline.batch_size", "from 1 to 65_536, found -3"),
    ("linger = \"5ms\"", "linger = \"2h\"", 3, "pipeline.linger", "must be from 0s to 1m, found `2h`"),
    ("linger = \"5ms\"", "linger = \"20000000000000000000s\"", 3, "pipeline.linger", "too long a duration"),
    ("buffer = 4", "buffer = 0", 4, "pipeline.buffer", "from 1 to 1024"),
    ("buffer = 4", "buffer = 1_000_000", 4, "pipeline.buffer", "from 1 to 1024, found 1_000_000"),
    ("repeat = 1", "repeat = 0", 9, "sources.logs.repeat", "from 1 to 1_000_000"),
    ("count = 10", "count = -1", 13, "sources.gen.count", "from 0 to 1_000_000_000_000"),
    ("size = 100", "size = \"1GiB\"", 14, "sources.gen.size", "from 0B to 16MiB"),
    ("size = 100", "size = 9223372036854775807", 14, "sources.gen.size", "from 0B to 16MiB"),
    ("[sources.gen]\n", "[sources.gen]\nbatch_size = 100000\n", 12, "sources.gen.batch_size", "from 1 to 65_536"),
    ("[sources.gen]\n", "[sources.gen]\nlinger = \"-1s\"\n", 12, "sources.gen.linger", "not a duration"),
    ("workers = 2", "workers = 1000", 20, "stages.parse.workers", "from 1 to 64"),
    ("fuel = 10_000_000", "fuel = 0", 21, "stages.parse.fuel", "from 1 to 1_000_000_000_000"),
    ("fuel = 10_000_000", "fuel = 0x7fffffffffffffff", 21, "stages.parse.fuel", "found 0x7fffffffffffffff"),
    ("timeout = \"1s\"", "timeout = \"20000000000000000000s\"", 22, "stages.parse.timeout", "too long a duration: it must be from 1ms to 1h"),
    ("timeout = \"1s\"", "timeout = \"0s\"", 22, "stages.parse.timeout", "from 1ms to 1h, found `0s`"),
    ("timeout = \"1s\"", "timeout = \"2h\"", 22, "stages.parse.timeout", "from 1ms to 1h"),
    ("memory = \"64MiB\"", "memory = \"8GiB\"", 23, "stages.parse.memory", "from 64KiB to 4GiB, found `8GiB`"),
    ("memory = \"64MiB\"", "memory = \"lots\"", 23, "stages.parse.memory", "not a size"),
    ("memory = \"64MiB\"", "memory = 1024", 23, "stages.parse.memory", "from 64KiB to 4GiB"),
    ("retries = 3", "retries = 4294967296", 24, "stages.parse.retries", "from 0 to 100"),
    ("max_output_events = 1024", "max_output_events = 0", 26, "stages.parse.max_output_events", "from 1 to 65_536"),
    ("max_output_bytes = \"64MiB\"", "max_output_bytes = \"2GiB\"", 27, "stages.parse.max_output_bytes", "from 1B to 1GiB"),
    ("max_value_size = \"16MiB\"", "max_value_size = \"0\"", 28, "stages.parse.max_value_size", "from 1B to 1GiB"),
    ("window = 100", "window = 0", 29, "stages.parse.breaker.window", "from 1 to 1_000_000"),
    ("window = 100", "window = 9223372036854775807", 29, "stages.parse.breaker.window", "from 1 to 1_000_000"),
    ("threshold = 0.5", "threshold = 0", 29, "stages.parse.breaker.threshold", "above 0 and at most 1"),
    ("threshold = 0.5", "threshold = nan", 29, "stages.parse.breaker.threshold", "found nan"),
    ("cooldown = \"5s\"", "cooldown = \"2h\"", 29, "stages.parse.breaker.cooldown", "from 0s to 1h"),
    ("events = 1000", "events = 10_000_000_000", 32, "stages.parse.canary.events", "from 0 to 10_000_000"),
    ("max_failure_rate = 0.5", "max_failure_rate = 1.5", 32, "stages.parse.canary.max_failure_rate", "from 0 to 1"),
    ("max_failure_rate = 0.5", "max_failure_rate = -inf", 32, "stages.parse.canary.max_failure_rate", "from 0 to 1"),
];

#[test]
fn every_number_and_duration_out_of_range_names_its_range() {
    run(BASE, OUT_OF_RANGE);
}

/// The kinds of sources, sinks and dead-letter sinks, and the keys each kind takes.
#[rustfmt::skip]
const KINDS: &[Row] = &[
    ("type = \"generate\"", "type = \"generat\"", 12, "sources.gen.type", "did you mean `generate`?"),
    ("path = \"in.log\"\n", "", 7, "sources.logs.path", "a `file` source needs `path`"),
    ("path = \"in.log\"", "path = \"no-such.log\"", 8, "sources.logs.path", "no such file"),
    ("count = 10\n", "", 12, "sources.gen.count", "a `generate` source needs `count`"),
    ("count = 10", "count = 10\nrepeat = 2", 14, "sources.gen.repeat", "a `generate` source has no `repeat`"),
    ("type = \"file\"\npath = \"out", "type = \"fil\"\npath = \"out", 36, "sinks.out.type", "did you mean `file`?"),
    ("path = \"out.jsonl\"\n", "", 36, "sinks.out.path", "a `file` sink needs `path`"),
    ("type = \"file\"\npath = \"out", "type = \"stdout\"\npath = \"out", 37, "sinks.out.path", "a `stdout` sink has no `path`"),
    ("encoding = \"json\"", "encoding = \"jsn\"", 38, "sinks.out.encoding", "did you mean `json`?"),
    ("type = \"file\"\npath = \"dead", "type = \"stderr\"\npath = \"dead", 42, "dead_letter.path", "takes no path"),
    ("path = \"dead.jsonl\"\n", "", 41, "dead_letter.path", "needs `path`"),
    ("type = \"file\"\npath = \"dead", "type = \"kafka\"\npath = \"dead", 41, "dead_letter.type", "use `file` or `stderr`"),
];

/// The kinds of sources, sinks and dead-letter sinks, and the keys each kind takes. (in the small pipeline)
#[rustfmt::skip]
const KINDS_SMALL: &[Row] = &[
    ("type = \"stdin\"", "type = \"stdin\"\npath = \"x\"", 3, "sources.s.path", "a `stdin` source has no `path`"),
];

#[test]
fn sources_sinks_and_dead_letters_check_their_kinds() {
    run(BASE, KINDS);
    run(SMALL, KINDS_SMALL);
}

/// A source's or sink's keys are those of its `type`: a key of another kind is refused by
/// name, a key of no kind is unknown (with the closest key of any kind), and so is a type.
#[rustfmt::skip]
const KIND_KEYS: &[Row] = &[
    ("repeat = 1", "repeat = 1\ncount = 5", 10, "sources.logs.count", "a `file` source has no `count`: only a `generate` source has it; remove it, or use `type = \"generate\"`"),
    ("encoding = \"json\"", "encoding = \"json\"\nsubject = \"x\"", 39, "sinks.out.subject", "a `file` sink has no `subject`: only a `nats` sink has it; remove it, or use `type = \"nats\"`"),
    ("encoding = \"json\"", "encoding = \"json\"\nsubjet = \"x\"", 39, "sinks.out.subjet", "unknown key; did you mean `subject`?"),
];

/// The same, in the small pipeline (stdin, a stage, a null sink).
#[rustfmt::skip]
const KIND_KEYS_SMALL: &[Row] = &[
    ("type = \"stdin\"", "type = \"stdin\"\nurl = \"nats://h:4222\"", 3, "sources.s.url", "a `stdin` source has no `url`: only a `nats` source has it; remove it, or use `type = \"nats\"`"),
    ("type = \"null\"", "type = \"null\"\nmode = \"append\"", 11, "sinks.o.mode", "a `null` sink has no `mode`: only a `file` sink has it"),
    ("type = \"stdin\"", "type = \"stdin\"\nlingr = \"1ms\"", 3, "sources.s.lingr", "unknown key; did you mean `linger`?"),
    ("type = \"stdin\"", "type = \"stdin\"\nstrem = \"s\"", 3, "sources.s.strem", "unknown key; did you mean `stream`?"),
    ("type = \"stdin\"", "tpye = \"stdin\"", 2, "sources.s.tpye", "unknown key; did you mean `type`?"),
    ("type = \"stdin\"", "type = \"kafka\"\ncolour = 1", 3, "sources.s.colour", "unknown key; a source takes `type`, `batch_size`, `linger`, `path`, `repeat`, `count`, `size`, `keys`, `event_time`, `url`"),
    ("type = \"stdin\"", "type = \"kafka\"", 2, "sources.s.type", "unknown source type `kafka`: use `stdin`, `file`, `generate`, `nats`, `tcp`, `http` or `dead_letters`"),
    ("type = \"stdin\"\n", "", 1, "sources.s.type", "missing: a source needs `type`: `\"stdin\"`, `\"file\"`, `\"generate\"`, `\"nats\"`, `\"tcp\"`, `\"http\"` or `\"dead_letters\"`"),
    ("type = \"null\"", "type = \"nul\"", 10, "sinks.o.type", "unknown sink type `nul`: use `stdout`, `file`, `null` or `nats`; did you mean `null`?"),
];

/// An `http` source in the small pipeline: its address, path, caps, headers and token.
#[rustfmt::skip]
const HTTP_SOURCE: &[Row] = &[
    ("listen = \"127.0.0.1:0\"\n", "", 2, "sources.s.listen", "an `http` source needs `listen`"),
    ("listen = \"127.0.0.1:0\"", "listen = \"localhost\"", 3, "sources.s.listen", "is not an address"),
    ("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"\ntoken = \"0123456789abcdef\"", 3, "sources.s.listen", "beyond loopback"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\npath = \"events\"", 4, "sources.s.path", "starting with `/`"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\npath = \"/{x}\"", 4, "sources.s.path", "not a usable path"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax_body = \"65MiB\"", 4, "sources.s.max_body", "from 1B to 64MiB"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax_line = 0", 4, "sources.s.max_line", "from 1B to 16MiB"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nheaders = [\"Weir.Version.a\"]", 4, "sources.s.headers", "one of weir's own headers"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nheaders = [\"X-Id\", \"x-id\"]", 4, "sources.s.headers", "listed twice"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nkey_header = \"a b\"", 4, "sources.s.key_header", "not a header name"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\ntoken = \"short\"", 4, "sources.s.token", "at least 16 characters"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"", 4, "sources.s.tls_cert", "needs `tls_key` too"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nidle_timeout = \"2h\"", 4, "sources.s.idle_timeout", "from 100ms to 1h"),
    ("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax_connections = 0", 4, "sources.s.max_connections", "from 1 to 4096"),
];

#[test]
fn an_http_source_names_the_key_written() {
    let base = SMALL.replace(
        "type = \"stdin\"",
        "type = \"http\"\nlisten = \"127.0.0.1:0\"",
    );
    let fx = Fixture::new();
    let p = fx.parse(&base).unwrap_or_else(|e| panic!("{e}"));
    let SourceKind::Http(http) = &p.sources[0].kind else {
        panic!("an http source: {:?}", p.sources[0].kind);
    };
    assert_eq!(
        (http.path.as_str(), http.max_body, http.max_line),
        ("/", 1 << 20, 64 << 10)
    );
    assert_eq!(http.listen_line, 3);
    assert!(http.token.is_none() && http.tls.is_none());
    run(&base, HTTP_SOURCE);
}

#[test]
fn a_connector_takes_the_keys_of_its_type() {
    run(BASE, KIND_KEYS);
    run(SMALL, KIND_KEYS_SMALL);
}

/// A stage's plugin file, setting names, `on_error` policy and grant.
#[rustfmt::skip]
const STAGE: &[Row] = &[
    ("plugin = \"p.wasm\"", "plugin = \"missing.wasm\"", 18, "stages.parse.plugin", "plugin file not found"),
    ("format = \"json\"", "\"bad key\" = \"json\"", 19, "stages.parse.settings.\"bad key\"", "not a usable setting name"),
    ("on_error = \"dead-letter\"", "on_error = \"deadletter\"", 25, "stages.parse.on_error", "did you mean `dead-letter`?"),
    ("host = \"lookup\"", "host = \"nowhere\"", 30, "stages.parse.grant.dirs[0].host", "no such directory"),
    ("guest = \"/data\"", "guest = \"data\"", 30, "stages.parse.grant.dirs[0].guest", "absolute path"),
    ("guest = \"/data\"", "guest = \"/data/../etc\"", 30, "stages.parse.grant.dirs[0].guest", "without `.` or `..`"),
    ("guest = \"/data\" }]", "guest = \"/data\" }, { host = \"lookup\", guest = \"/data\" }]", 30, "stages.parse.grant.dirs[1].guest", "granted twice"),
    ("env = [\"TZ\"]", "env = [\"TZ=UTC\"]", 30, "stages.parse.grant.env", "not an environment variable name"),
];

#[test]
fn a_stage_checks_its_plugin_settings_policy_and_grant() {
    run(BASE, STAGE);
}

/// The admin table: address, token, TLS and limits.
#[rustfmt::skip]
const ADMIN: &[Row] = &[
    ("listen = \"127.0.0.1:7878\"", "listen = \"localhost\"", 45, "admin.listen", "not an address"),
    ("listen = \"127.0.0.1:7878\"", "listen = \"0.0.0.0:7878\"", 45, "admin.listen", "`0.0.0.0:7878` is beyond loopback, where plain HTTP would show the bearer token"),
    ("listen = \"127.0.0.1:7878\"", "listen = \"[::]:7878\"", 45, "admin.listen", "set `tls_cert` and `tls_key` (PEM files)"),
    ("token = \"0123456789abcdef\"", "token_file = \"no-such-token\"", 46, "admin.token_file", "no-such-token: cannot read it"),
    ("token = \"0123456789abcdef\"", "token = \"0123456789abcdef\"\ntls_key = \"k.pem\"", 47, "admin.tls_key", "`tls_key` needs `tls_cert` too"),
    ("token = \"0123456789abcdef\"", "token = \"0123456789abcdef\"\ntls_cert = \"p.wasm\"\ntls_key = \"p.wasm\"", 47, "admin.tls_cert", "no certificate in it"),
    ("token = \"0123456789abcdef\"", "token = \"0123456789abcdef\"\ntls_cert = \"none.pem\"\ntls_key = \"p.wasm\"", 47, "admin.tls_cert", "none.pem: cannot read it"),
    ("header_timeout = \"10s\"", "header_timeout = \"0s\"", 47, "admin.header_timeout", "must be from 100ms to 1h"),
    ("idle_timeout = \"5s\"", "idle_timeout = \"2h\"", 48, "admin.idle_timeout", "must be from 100ms to 1h"),
    ("body_timeout = \"1m\"", "body_timeout = \"soon\"", 49, "admin.body_timeout", "not a duration"),
    ("max_connections = 64", "max_connections = 0", 50, "admin.max_connections", "from 1 to 4096"),
    ("token = \"0123456789abcdef\"", "token = \"short\"", 46, "admin.token", "at least 16 characters"),
    ("token = \"0123456789abcdef\"", "token = \"0123456789 abcdef\"", 46, "admin.token", "visible ASCII"),
    ("token = \"0123456789abcdef\"", "token_env = \"WEIR_NO_SUCH_VARIABLE_FOR_TESTS\"", 46, "admin.token_env", "is not set"),
    ("token = \"0123456789abcdef\"", "token_env = \"WEIR TOKEN\"", 46, "admin.token_env", "not an environment variable name"),
    ("token = \"0123456789abcdef\"", "token = \"0123456789abcdef\"\ntoken_env = \"X\"", 47, "admin.token_env", "give one of `token`, `token_env` and `token_file`, not several"),
    ("token = \"0123456789abcdef\"\n", "", 44, "admin.token", "needs a bearer token"),
];

#[test]
fn the_admin_table_names_the_key_written() {
    run(BASE, ADMIN);
}

#[test]
fn the_token_from_the_environment_is_checked_under_token_env() {
    let fx = Fixture::new();
    let text = BASE.replace("token = \"0123456789abcdef\"", "token_env = \"WEIR_TOKEN\"");
    let file = fx.file();
    let cx = error::Ctx::new(&file, &text);
    let raw = raw::read(&cx).unwrap_or_else(|e| panic!("{e}"));
    let table = raw.admin.as_ref().expect("the admin table");
    let env =
        |token: &'static str| move |name: &str| (name == "WEIR_TOKEN").then(|| token.to_string());
    let err = admin::check_with(&cx, table, &env("short")).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(46), Some("admin.token_env")),
        "{err}"
    );
    assert!(
        err.message
            .contains("the token in that variable must be at least 16"),
        "{err}"
    );
    let admin = admin::check_with(&cx, table, &env(" 0123456789abcdef\n")).unwrap();
    assert_eq!(admin.token, "0123456789abcdef");
}

#[test]
fn a_token_file_is_read_only_when_its_owner_alone_has_access() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let path = fx.file().with_file_name("token");
    std::fs::write(&path, " 0123456789abcdef\n").unwrap();
    let mode = |m: u32| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m));
    mode(0o600).unwrap();
    assert_eq!(read_token_file(&path).unwrap(), "0123456789abcdef");
    let text = BASE.replace("token = \"0123456789abcdef\"", "token_file = \"token\"");
    let p = fx.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.admin.unwrap().token, "0123456789abcdef");
    for (m, shown) in [(0o644, "0644"), (0o620, "0620"), (0o604, "0604")] {
        mode(m).unwrap();
        let e = read_token_file(&path).unwrap_err();
        assert!(matches!(e, TokenFileError::Open(_)), "{e}");
        assert!(e.to_string().contains(&format!("mode {shown}")), "{e}");
    }
    mode(0o600).unwrap();
    std::fs::write(&path, vec![b'x'; 5000]).unwrap();
    assert!(matches!(
        read_token_file(&path),
        Err(TokenFileError::TooLarge)
    ));
    let dir = fx.file().with_file_name("lookup");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(
        read_token_file(&dir),
        Err(TokenFileError::NotAFile)
    ));
}

/// Names, inputs, fan-in, cycles and nodes that feed nothing. (in the small pipeline)
#[rustfmt::skip]
const GRAPH_SMALL: &[Row] = &[
    ("[stages.a]", "[stages.\"a\\u0000b\"]", 4, "stages.\"a\\0b\"", "not a usable name: a name is 1 to 64 letters"),
    ("[stages.a]", "[stages.\"a.b\"]", 4, "stages.\"a.b\"", "not a usable name"),
    ("[sinks.o]", "[sinks.s]", 8, "sinks.s", "already used by a source"),
    ("inputs = [\"s\"]", "inputs = [\"ss\"]", 5, "stages.a.inputs", "unknown input `ss`: no source or stage has that name; did you mean `s`?"),
    ("inputs = [\"s\"]", "inputs = [\"o\"]", 5, "stages.a.inputs", "`o` is a sink"),
    ("inputs = [\"s\"]", "inputs = [\"s\", \"s\"]", 5, "stages.a.inputs", "listed twice"),
    ("inputs = [\"s\"]", "inputs = []", 5, "stages.a.inputs", "needs at least one input"),
    ("inputs = [\"a\"]", "inputs = [\"s\"]", 4, "stages.a", "`a` feeds nothing"),
    ("inputs = [\"s\"]", "inputs = [\"a\"]", 5, "stages.a.inputs", "the stages form a cycle: a -> a"),
];

#[test]
fn the_graph_names_each_node_and_input() {
    run(SMALL, GRAPH_SMALL);
    run_whole(&[
        (
            "[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n".to_string(),
            None,
            "sources",
            "no source",
        ),
        (
            "[sources.s]\ntype = \"stdin\"\n".to_string(),
            None,
            "sinks",
            "no sink",
        ),
        (
            format!("{SMALL}{CYCLE}"),
            Some(12),
            "stages.b.inputs",
            "the stages form a cycle: b -> c -> b",
        ),
        (
            too_many_nodes(),
            Some(3 * ranges::MAX_NODES + 1),
            "sources.s1024",
            "at most 1024",
        ),
    ]);
}

/// Two stages that read each other, to add to [`SMALL`] (from its line 11).
const CYCLE: &str = "[stages.b]\ninputs = [\"c\"]\nplugin = \"p.wasm\"\n[stages.c]\ninputs = [\"b\"]\nplugin = \"p.wasm\"\n";

fn too_many_nodes() -> String {
    let mut text = String::new();
    for i in 0..ranges::MAX_NODES + 1 {
        text.push_str(&format!("[sources.s{i:04}]\ntype = \"stdin\"\n\n"));
    }
    text + "[sinks.o]\ninputs = [\"s0000\"]\ntype = \"null\"\n"
}

#[test]
fn stages_come_upstream_first_and_a_long_chain_is_fine() {
    let fx = Fixture::new();
    let mut text = String::from("[sources.s]\ntype = \"stdin\"\n");
    // Named so that name order is the reverse of flow order.
    let n = 500;
    for i in 0..n {
        let input = if i == n - 1 {
            "s".to_string()
        } else {
            format!("st{:03}", i + 1)
        };
        text.push_str(&format!(
            "[stages.st{i:03}]\ninputs = [\"{input}\"]\nplugin = \"p.wasm\"\n"
        ));
    }
    text.push_str("[sinks.o]\ninputs = [\"st000\"]\ntype = \"null\"\n");
    let p = fx.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order.first(), Some(&"st499"));
    assert_eq!(order.last(), Some(&"st000"));
}

#[test]
fn errors_print_file_line_and_key() {
    let err = Pipeline::parse(
        Path::new("/x/p.toml"),
        "[sources.s]\ntype = \"stdin\"\ncolour = \"red\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/x/p.toml:3: `sources.s.colour`: unknown key; a source takes `type`, `batch_size` and `linger`"
    );
}
