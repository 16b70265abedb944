//! Tests of the pipeline-file checks.

use std::path::Path;
use std::time::Duration;

use crate::config::*;

fn parse(text: &str) -> Result<Pipeline, ConfigError> {
    Pipeline::parse(Path::new("/nonexistent/p.toml"), text)
}

#[test]
fn durations_and_sizes_read_their_units() {
    assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
    assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("10 parsecs").is_err());
    assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert!(parse_size("lots").is_err());
}

#[test]
fn a_cycle_is_named_with_its_line() {
    let text = "[sources.s]\ntype = \"stdin\"\n\n[stages.a]\ninputs = [\"b\"]\nplugin = \"/bin/sh\"\n\n[stages.b]\ninputs = [\"a\"]\nplugin = \"/bin/sh\"\n\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n";
    let err = parse(text).unwrap_err();
    assert_eq!(err.line, Some(5), "{err}");
    assert!(err.message.contains("cycle"), "{err}");
}

#[test]
fn the_admin_table_needs_a_long_enough_token_and_the_canary_a_rate() {
    let base = "[sources.s]\ntype = \"stdin\"\n[sinks.o]\ninputs = [\"s\"]\ntype = \"null\"\n";
    let admin = |table: &str| parse(&format!("{base}[admin]\n{table}"));
    let err = admin("listen = \"127.0.0.1:0\"\n").unwrap_err();
    assert!(err.message.contains("needs a bearer token"), "{err}");
    let err = admin("token = \"short\"\n").unwrap_err();
    assert!(err.message.contains("at least 16"), "{err}");
    let err = admin("token_env = \"WEIR_NO_SUCH_VARIABLE_FOR_TESTS\"\n").unwrap_err();
    assert!(err.message.contains("is not set"), "{err}");
    let ok = admin("token = \"0123456789abcdef\"\n").unwrap();
    let listen = ok.admin.map(|a| a.listen.to_string());
    assert_eq!(listen.as_deref(), Some(DEFAULT_ADMIN_LISTEN));

    let stage = |extra: &str| {
        parse(&format!(
            "[sources.s]\ntype = \"stdin\"\n[stages.a]\ninputs = [\"s\"]\nplugin = \"/bin/sh\"\n{extra}\n[sinks.o]\ninputs = [\"a\"]\ntype = \"null\"\n"
        ))
    };
    let err = stage("canary = { max_failure_rate = 1.5 }").unwrap_err();
    assert!(err.message.contains("between 0 and 1"), "{err}");
    let ok = stage("watch = true\ncanary = { events = 10 }").unwrap();
    assert!(ok.stages[0].watch);
    assert_eq!(ok.stages[0].canary.events, 10);
    assert_eq!(ok.stages[0].canary.max_failure_rate, 0.5);
}

#[test]
fn an_unknown_field_names_its_line() {
    let text = "[sources.s]\ntype = \"stdin\"\ncolour = \"red\"\n[sinks.o]\ninputs = [\"s\"]\ntype = \"null\"\n";
    let err = parse(text).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.message.contains("colour"), "{err}");
}
