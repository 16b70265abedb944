//! [`Settings`]: the key/value pairs a stage receives from the pipeline file at `init`.
//!
//! The host passes the pipeline file's pairs as text; before the stage's `init` sees them,
//! [`Settings::with_declared`] adds the default of every declared setting left unset and
//! checks the declared rules, so that `init` reads one complete set.

use std::fmt::Display;
use std::str::FromStr;

use crate::Declare;

/// A stage's settings, as (key, value) pairs in the order the host passed them.
///
/// Lookups are linear: settings are few and read once, in [`Stage::init`](crate::Stage::init).
/// When a key appears more than once the last value wins, as with later overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pairs: Vec<(String, String)>,
}

impl Settings {
    /// Wraps the pairs passed to `init`.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Settings { pairs }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("setting `{key}` is required"))
    }

    /// The value of `key` parsed as `T`; `Ok(None)` if unset, an error naming the key and the
    /// value if it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(key)
            .map(|value| {
                value.parse().map_err(|err| {
                    format!(
                        "setting `{key}`: cannot parse {value:?} as {}: {err}",
                        std::any::type_name::<T>()
                    )
                })
            })
            .transpose()
    }

    /// Like [`Settings::parse`], with `default` when the key is unset.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// Applies a stage's declared settings: checks that every required one is given and that
    /// every given value fits its declared type, then appends the default of each declared
    /// setting that is not given. Keys the stage does not declare are left alone (the host
    /// refuses them before a plugin is ever called).
    pub fn with_declared(mut self, declared: &[Declare]) -> Result<Settings, String> {
        for setting in declared {
            let name = setting.name();
            match self.get(name) {
                Some(value) if !setting.setting_type().accepts(value) => {
                    return Err(format!(
                        "setting `{name}`: {value:?} is not of type {}",
                        setting.setting_type().as_str()
                    ));
                }
                Some(_) => {}
                None if setting.is_required() => {
                    return Err(format!("setting `{name}` is required"));
                }
                None => {
                    if let Some(default) = setting.default_value() {
                        self.pairs.push((name.to_string(), default.to_string()));
                    }
                }
            }
        }
        Ok(self)
    }

    /// All pairs, in the order the host passed them (duplicates included), then the declared
    /// defaults that were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no settings at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl From<Vec<(String, String)>> for Settings {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Settings::new(pairs)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Settings::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_returns_the_last_value_of_a_key() {
        let settings = Settings::from_iter([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(settings.get("a"), Some("3"));
        assert_eq!(settings.get("b"), Some("2"));
        assert_eq!(settings.get("c"), None);
        assert_eq!(settings.len(), 3);
    }

    #[test]
    fn parse_names_the_key_and_the_value() {
        let settings = Settings::from_iter([("max", "ten")]);
        let err = settings.parse::<u32>("max").unwrap_err();
        assert!(err.contains("`max`"), "{err}");
        assert!(err.contains("\"ten\""), "{err}");
        assert!(err.contains("u32"), "{err}");
    }

    #[test]
    fn parse_or_uses_the_default_only_when_unset() {
        let settings = Settings::from_iter([("max", "10")]);
        assert_eq!(settings.parse_or("max", 5u32), Ok(10));
        assert_eq!(settings.parse_or("min", 5u32), Ok(5));
        assert_eq!(settings.parse::<u32>("min"), Ok(None));
    }

    #[test]
    fn declared_defaults_fill_in_only_what_is_unset() {
        let declared = [
            Declare::integer("max").default("10"),
            Declare::text("name").default("x"),
            Declare::boolean("strict"),
        ];
        let settings = Settings::from_iter([("max", "3")])
            .with_declared(&declared)
            .unwrap();
        assert_eq!(settings.get("max"), Some("3"));
        assert_eq!(settings.get("name"), Some("x"));
        assert_eq!(settings.get("strict"), None);
        assert_eq!(settings.len(), 2);
    }

    #[test]
    fn declared_rules_are_checked() {
        let declared = [Declare::integer("max"), Declare::text("path").required()];
        let err = Settings::from_iter([("path", "/"), ("max", "ten")])
            .with_declared(&declared)
            .unwrap_err();
        assert_eq!(err, "setting `max`: \"ten\" is not of type integer");
        let err = Settings::default().with_declared(&declared).unwrap_err();
        assert_eq!(err, "setting `path` is required");
    }

    #[test]
    fn require_names_the_missing_key() {
        let settings = Settings::default();
        assert!(settings.is_empty());
        assert_eq!(
            settings.require("path"),
            Err("setting `path` is required".to_string())
        );
    }
}
