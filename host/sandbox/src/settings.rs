//! Declared settings: what a 0.2 plugin says it accepts, and the check of a stage's settings
//! against it.
//!
//! A pipeline file's `settings` reach a plugin as text (`max = 10` arrives as `"10"`), so a
//! declared type is a check on that text: an integer parses as `i64`, a float as `f64`, a
//! boolean is `true` or `false`. A key the plugin does not declare is refused, with the
//! closest declared name when there is one; a required key that is missing is refused.

use crate::contract::{Setting, SettingType};

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

    #[test]
    fn a_required_setting_must_be_given() {
        let declared = [setting("path", SettingType::Text, true)];
        let err = check(&declared, &[]).unwrap_err();
        assert_eq!(err.key, "path");
        check(&declared, &given(&[("path", "/x")])).unwrap();
    }
}
