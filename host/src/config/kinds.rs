//! Connector tables, sources and sinks alike, whose `type` chooses the keys they may hold.
//! Each kind lists its own keys once, in its own file, as a [`Kind`]; [`Kinds::read`] reads
//! `type` first, refuses a key no kind knows (suggesting the closest key of any kind), refuses
//! a key of another kind (naming the kinds that have it), and only then hands the table to the
//! reader of the kind chosen. A key a kind does not use is refused rather than ignored: a
//! `path` on a `stdout` sink writes nothing to that path, and a mistyped setup must not run
//! quietly with defaults.

use crate::config::error::{ConfigError, Sp, did_you_mean, list, shown};
use crate::config::reader::Table;

/// One kind of connector: the `type` that chooses it, the keys it takes beyond the common
/// ones, and the reader of those keys, which gives its raw keys as `R`.
pub(crate) struct Kind<R: 'static> {
    pub name: &'static str,
    pub keys: &'static [&'static str],
    pub read: fn(&Table) -> Result<R, ConfigError>,
}

/// The kinds of one section: what its tables are ("source"), the keys every kind takes
/// (`type` among them), and each kind.
pub(crate) struct Kinds<R: 'static> {
    pub what: &'static str,
    pub common: &'static [&'static str],
    pub kinds: &'static [Kind<R>],
}

impl<R> Kinds<R> {
    /// The names of the kinds, in the order a message lists them.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name).collect()
    }

    /// Reads `t`: its `type` as written, and the raw keys of the kind it names. The common
    /// keys are left for the caller to read.
    pub fn read(&self, t: &Table) -> Result<(Sp<String>, R), ConfigError> {
        let written = t.text("type")?;
        let chosen =
            (written.as_ref()).and_then(|w| self.kinds.iter().find(|k| k.name == w.get_ref()));
        self.known(t, chosen)?;
        let names = self.names();
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
        let why = format!("a {} needs `type`: {}", self.what, list(&quoted, "or"));
        let written = t.required(written, "type", &why)?;
        let Some(kind) = chosen else {
            let other = written.get_ref();
            return Err(t.cx().err(
                &written.span(),
                t.key("type"),
                format!(
                    "unknown {} type {}: use {}{}",
                    self.what,
                    shown(other),
                    list(&names, "or"),
                    did_you_mean(other, &names)
                ),
            ));
        };
        self.foreign(t, kind)?;
        Ok((written, (kind.read)(t)?))
    }

    /// Refuses a key that no kind takes, suggesting the closest key of any kind; with no close
    /// one, the message lists the common keys and those of the kind chosen (of every kind when
    /// none is).
    fn known(&self, t: &Table, chosen: Option<&Kind<R>>) -> Result<(), ConfigError> {
        let mut all = self.common.to_vec();
        for key in self.kinds.iter().flat_map(|k| k.keys) {
            if !all.contains(key) {
                all.push(key);
            }
        }
        let what = self.what;
        let takes = match chosen {
            Some(kind) if kind.keys.is_empty() => {
                format!("a {what} takes {}", list(self.common, "and"))
            }
            Some(kind) => format!(
                "a {what} takes {}; a `{}` {what} also {}",
                list(self.common, "and"),
                kind.name,
                list(kind.keys, "and")
            ),
            None => format!("a {what} takes {}", list(&all, "and")),
        };
        t.only_of(&all, &takes)
    }

    /// Refuses a key of another kind than `kind`, naming the kinds that have it.
    fn foreign(&self, t: &Table, kind: &Kind<R>) -> Result<(), ConfigError> {
        let what = self.what;
        for (key, _) in t.entries() {
            let k = key.get_ref().as_str();
            if self.common.contains(&k) || kind.keys.contains(&k) {
                continue;
            }
            let owners: Vec<&str> = (self.kinds.iter())
                .filter(|o| o.keys.contains(&k))
                .map(|o| o.name)
                .collect();
            let fix = match owners.as_slice() {
                [one] => format!("use `type = \"{one}\"`"),
                _ => "change `type`".to_string(),
            };
            return Err(t.cx().err(
                &key.span(),
                t.key(k),
                format!(
                    "a `{}` {what} has no `{k}`: only a {} {what} has it; remove it, or {fix}",
                    kind.name,
                    list(&owners, "or")
                ),
            ));
        }
        Ok(())
    }
}
