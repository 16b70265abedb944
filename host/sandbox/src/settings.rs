//! Declared settings: what a 0.2 plugin says it accepts, the rules its declarations must
//! follow, and the check of a stage's settings against them.
//!
//! The declarations are checked once, when the plugin is loaded ([`check_declared`]): at
//! most [`MAX_DECLARED_SETTINGS`] of them; each name matches [`NAME_RULE`] (so it is never
//! empty, holds no space, and never starts with `weir.`, the host's own prefix, which an
//! error says in so many words); no name is declared twice (else which declaration holds
//! would be a matter of order); and a required setting has no default (a default is what a
//! stage uses when the setting is left out, which a required one never is). A plugin whose
//! declarations break a rule is refused, the error naming the setting, as guest text, and
//! the rule.
//!
//! A pipeline file's `settings` reach a plugin as text (`max = 10` arrives as `"10"`), so a
//! declared type is a check on that text: an integer parses as `i64`, a float as `f64`, a
//! boolean is `true` or `false`. A key the plugin does not declare is refused, with the
//! closest declared name when there is one; a required key that is missing is refused.

use std::collections::HashSet;

use crate::contract::{Setting, SettingType};
use crate::text::guest_text;

/// Settings a plugin may declare. Blocks a plugin from making the host hold (and
/// `weir plugin inspect` print) an unbounded description.
pub const MAX_DECLARED_SETTINGS: usize = 256;

/// What a setting name must match, as errors and the documentation quote it: a lower-case
/// ASCII letter, then at most 63 lower-case letters, digits, `_` or `-`.
pub const NAME_RULE: &str = "[a-z][a-z0-9_-]{0,63}";

/// The prefix of the names that belong to the host (as header names do).
const HOST_PREFIX: &str = "weir.";

/// A declaration the host refuses: the setting, as guest text, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclarationError {
    #[error("{count} settings declared; a plugin may declare at most {MAX_DECLARED_SETTINGS}")]
    TooMany { count: usize },
    #[error("setting \"{name}\": a setting name must match {NAME_RULE}")]
    Name { name: String },
    #[error(
        "setting \"{name}\": a setting name must not start with `weir.`, which belongs to the host (a setting name must match {NAME_RULE})"
    )]
    HostPrefix { name: String },
    #[error("setting \"{name}\": declared twice; a setting name must be unique")]
    Twice { name: String },
    #[error(
        "setting \"{name}\": a required setting must not have a default (the pipeline file always gives it)"
    )]
    RequiredWithDefault { name: String },
}

/// Checks a plugin's declarations against the rules of the module docs, in order; the first
/// declaration that breaks one is the error.
pub fn check_declared(declared: &[Setting]) -> Result<(), DeclarationError> {
    if declared.len() > MAX_DECLARED_SETTINGS {
        return Err(DeclarationError::TooMany {
            count: declared.len(),
        });
    }
    let mut seen = HashSet::with_capacity(declared.len());
    for setting in declared {
        let name = || guest_text(setting.name.as_bytes());
        if setting.name.starts_with(HOST_PREFIX) {
            return Err(DeclarationError::HostPrefix { name: name() });
        }
        if !valid_name(&setting.name) {
            return Err(DeclarationError::Name { name: name() });
        }
        if !seen.insert(setting.name.as_str()) {
            return Err(DeclarationError::Twice { name: name() });
        }
        if setting.required && setting.default.is_some() {
            return Err(DeclarationError::RequiredWithDefault { name: name() });
        }
    }
    Ok(())
}

/// Whether `name` matches [`NAME_RULE`].
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((first, rest)) = bytes.split_first() else {
        return false;
    };
    first.is_ascii_lowercase()
        && rest.len() <= 63
        && rest
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The name of a setting type, as `weir plugin inspect` prints it.
pub fn type_name(ty: SettingType) -> &'static str {
    match ty {
        SettingType::Text => "text",
        SettingType::Integer => "integer",
        SettingType::Float => "float",
        SettingType::Boolean => "boolean",
    }
}

/// A setting that does not match the plugin's declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingError {
    /// The setting's key; `None` for a missing required setting reported as a whole.
    pub key: String,
    pub message: String,
}

/// Checks `given` against `declared`: every key declared, every value of its type, every
/// required key given.
pub fn check(declared: &[Setting], given: &[(String, String)]) -> Result<(), SettingError> {
    for (key, value) in given {
        let Some(setting) = declared.iter().find(|s| &s.name == key) else {
            let names: Vec<&str> = declared.iter().map(|s| s.name.as_str()).collect();
            let hint = match closest(key, &names) {
                Some(name) => format!("; did you mean `{name}`?"),
                None if names.is_empty() => "; it declares none".to_string(),
                None => format!("; it declares {}", quoted(&names)),
            };
            return Err(SettingError {
                key: key.clone(),
                message: format!("the plugin does not declare a setting `{key}`{hint}"),
            });
        };
        if let Err(expected) = fits(setting.type_, value) {
            return Err(SettingError {
                key: key.clone(),
                message: format!(
                    "{value:?} is not {expected} (the plugin declares `{key}` as {})",
                    type_name(setting.type_)
                ),
            });
        }
    }
    if let Some(missing) = declared
        .iter()
        .find(|s| s.required && !given.iter().any(|(k, _)| k == &s.name))
    {
        return Err(SettingError {
            key: missing.name.clone(),
            message: format!(
                "the plugin requires setting `{}` ({})",
                missing.name, missing.help
            ),
        });
    }
    Ok(())
}

fn fits(ty: SettingType, value: &str) -> Result<(), &'static str> {
    let ok = match ty {
        SettingType::Text => true,
        SettingType::Integer => value.parse::<i64>().is_ok(),
        SettingType::Float => value.parse::<f64>().is_ok(),
        SettingType::Boolean => matches!(value, "true" | "false"),
    };
    if ok {
        return Ok(());
    }
    Err(match ty {
        SettingType::Text => "text",
        SettingType::Integer => "an integer",
        SettingType::Float => "a number",
        SettingType::Boolean => "true or false",
    })
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The declared name closest to `key`, if one is close enough to be a likely typo.
pub fn closest<'a>(key: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (edit_distance(key, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min()
        .map(|(_, n)| n)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, ty: SettingType, required: bool) -> Setting {
        Setting {
            name: name.into(),
            type_: ty,
            required,
            default: None,
            help: format!("the {name}"),
        }
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_keys_are_refused_with_a_suggestion() {
        let declared = [setting("max", SettingType::Integer, false)];
        let err = check(&declared, &given(&[("mx", "3")])).unwrap_err();
        assert_eq!(err.key, "mx");
        assert!(
            err.message.contains("did you mean `max`"),
            "{}",
            err.message
        );
        let err = check(&[], &given(&[("anything", "x")])).unwrap_err();
        assert!(err.message.contains("declares none"), "{}", err.message);
    }

    #[test]
    fn values_must_fit_their_declared_type() {
        let declared = [
            setting("max", SettingType::Integer, false),
            setting("ratio", SettingType::Float, false),
            setting("strict", SettingType::Boolean, false),
            setting("name", SettingType::Text, false),
        ];
        check(
            &declared,
            &given(&[
                ("max", "10"),
                ("ratio", "0.5"),
                ("strict", "true"),
                ("name", "x"),
            ]),
        )
        .unwrap();
        let err = check(&declared, &given(&[("max", "ten")])).unwrap_err();
        assert!(err.message.contains("not an integer"), "{}", err.message);
        assert!(check(&declared, &given(&[("strict", "yes")])).is_err());
        assert!(check(&declared, &given(&[("ratio", "x")])).is_err());
    }

    fn refused(declared: &[Setting]) -> String {
        check_declared(declared)
            .expect_err("the declarations are refused")
            .to_string()
    }

    #[test]
    fn good_declarations_pass() {
        let mut with_default = setting("max-len_2", SettingType::Integer, false);
        with_default.default = Some("3".into());
        let longest = "a".repeat(64);
        check_declared(&[
            setting("path", SettingType::Text, true),
            with_default,
            setting(&longest, SettingType::Text, false),
            setting("x", SettingType::Boolean, false),
        ])
        .unwrap();
        check_declared(&[]).unwrap();
    }

    #[test]
    fn a_name_must_match_the_rule() {
        let rule = "a setting name must match [a-z][a-z0-9_-]{0,63}";
        for bad in [
            "",
            "Bad Name",
            "with space",
            "Upper",
            "1st",
            "_x",
            "-x",
            "a.b",
            "é",
        ] {
            let message = refused(&[setting(bad, SettingType::Text, false)]);
            assert_eq!(message, format!("setting \"{bad}\": {rule}"));
        }
        let long = "a".repeat(65);
        assert!(refused(&[setting(&long, SettingType::Text, false)]).ends_with(rule));
    }

    #[test]
    fn a_name_in_the_hosts_prefix_is_refused_saying_so() {
        let message = refused(&[setting("weir.secret", SettingType::Text, false)]);
        assert!(
            message
                .starts_with("setting \"weir.secret\": a setting name must not start with `weir.`"),
            "{message}"
        );
        assert!(message.contains("[a-z][a-z0-9_-]{0,63}"), "{message}");
    }

    #[test]
    fn a_name_declared_twice_is_refused() {
        let message = refused(&[
            setting("level", SettingType::Text, false),
            setting("other", SettingType::Text, false),
            setting("level", SettingType::Integer, true),
        ]);
        assert_eq!(
            message,
            "setting \"level\": declared twice; a setting name must be unique"
        );
    }

    #[test]
    fn a_required_setting_with_a_default_is_refused() {
        let mut both = setting("path", SettingType::Text, true);
        both.default = Some("/tmp".into());
        let message = refused(&[both]);
        assert!(
            message.starts_with("setting \"path\": a required setting must not have a default"),
            "{message}"
        );
    }

    #[test]
    fn too_many_declarations_are_refused() {
        let many: Vec<Setting> = (0..=MAX_DECLARED_SETTINGS)
            .map(|i| setting(&format!("s{i}"), SettingType::Text, false))
            .collect();
        assert_eq!(
            refused(&many),
            "257 settings declared; a plugin may declare at most 256"
        );
        check_declared(&many[..MAX_DECLARED_SETTINGS]).unwrap();
    }

    #[test]
    fn the_refused_name_is_quoted_as_guest_text() {
        let message = refused(&[setting(
            "x\x1b[31m\nworld: forged",
            SettingType::Text,
            false,
        )]);
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(
            message.contains("x\\u{1b}[31m\\nworld: forged"),
            "{message}"
        );
        let huge = "Y".repeat(10 << 10);
        let message = refused(&[setting(&huge, SettingType::Text, false)]);
        assert!(
            message.len() < 2 * crate::text::MAX_GUEST_TEXT,
            "{}",
            message.len()
        );
    }

    #[test]
    fn the_first_declaration_that_breaks_a_rule_is_named() {
        let mut both = setting("strict", SettingType::Boolean, true);
        both.default = Some("true".into());
        let message = refused(&[
            setting("fine", SettingType::Text, false),
            both,
            setting("Bad Name", SettingType::Text, false),
        ]);
        assert!(message.starts_with("setting \"strict\""), "{message}");
    }

    #[test]
    fn a_required_setting_must_be_given() {
        let declared = [setting("path", SettingType::Text, true)];
        let err = check(&declared, &[]).unwrap_err();
        assert_eq!(err.key, "path");
        check(&declared, &given(&[("path", "/x")])).unwrap();
    }
}
