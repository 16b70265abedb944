//! Reading the TOML tree one table at a time. `toml` parses the text into a tree that keeps
//! the span of every key and value; a [`Table`] then hands out its values by type, and refuses
//! an unknown key (suggesting the closest known one) or a value of the wrong type, in words a
//! user knows ("expected a whole number, found the text \"twice\""), always with the full key
//! path and the line.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::config::error::{ConfigError, Ctx, Sp, cut, did_you_mean, join, list};

/// A value of the tree, with its span.
pub(crate) type Node<'i> = Sp<DeValue<'i>>;

/// Parses the text into a tree; a syntax error names its line and, when it can be told, the
/// key of that line.
pub(crate) fn parse<'i>(cx: &Ctx<'i>) -> Result<Sp<DeTable<'i>>, ConfigError> {
    DeTable::parse(cx.text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|s| key_at(cx.text, s.start));
        let mut message = e.message().trim().to_string();
        if message.chars().any(char::is_control) {
            message = format!("{message:?}");
        }
        ConfigError {
            file: cx.file.to_path_buf(),
            line: Some(span.map_or(1, |s| cx.line_of(&s))),
            key,
            message: format!("not valid TOML: {message}"),
        }
    })
}

/// The key written on the line holding byte `at`, under the table header above it: a best
/// guess for syntax errors, given only when the line reads `key = ...` or `[table]`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let start = text.as_bytes()[..at.min(text.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next().unwrap_or("").trim();
    let header = text.get(..start)?.lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[').then(|| header_path(l))
    });
    let plain = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if line.starts_with('[') {
        if !line.contains(']') {
            return None;
        }
        let path = header_path(line);
        return plain(&path).then_some(path);
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    if !plain(key) {
        return None;
    }
    Some(match header {
        Some(h) if plain(&h) => format!("{h}.{key}"),
        Some(_) => return None,
        None => key.to_string(),
    })
}

/// `stages.a` from `[stages.a]` or `[[stages.a]]`.
fn header_path(line: &str) -> String {
    let inner = line.trim_start_matches('[');
    let inner = inner.split(']').next().unwrap_or("");
    inner
        .split('.')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(".")
}

/// Where a node (source, stage or sink) was written: its name's key and its table.
pub(crate) struct Place {
    pub name: Sp<String>,
    pub table: Range<usize>,
}

/// One table of the file: where it is, its key path, and the keys it takes.
pub(crate) struct Table<'a, 'i> {
    cx: &'a Ctx<'a>,
    path: String,
    entries: &'a DeTable<'i>,
    span: Range<usize>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The whole file, as the table that takes `keys`.
    pub fn root(
        cx: &'a Ctx<'a>,
        tree: &'a Sp<DeTable<'i>>,
        keys: &[&str],
    ) -> Result<Self, ConfigError> {
        let table = Table {
            cx,
            path: String::new(),
            entries: tree.get_ref(),
            span: 0..0,
        };
        table.only(keys, "a pipeline file")?;
        Ok(table)
    }

    /// `node` as the table at `path`, which is `what` (such as "a stage") and takes `keys`;
    /// `shape` says what to write instead when `node` is not a table.
    pub fn open(
        cx: &'a Ctx<'a>,
        path: String,
        node: &'a Node<'i>,
        (what, shape): (&str, &str),
        keys: &[&str],
    ) -> Result<Self, ConfigError> {
        let table = Table::open_any(cx, path, node, shape)?;
        table.only(keys, what)?;
        Ok(table)
    }

    /// `node` as the table at `path`, whatever keys it holds: for a table whose keys depend on
    /// one of its values (a connector's `type`), which its reader then checks with
    /// [`Table::only_of`].
    pub fn open_any(
        cx: &'a Ctx<'a>,
        path: String,
        node: &'a Node<'i>,
        shape: &str,
    ) -> Result<Self, ConfigError> {
        let DeValue::Table(entries) = node.get_ref() else {
            return Err(cx.err(
                &node.span(),
                path,
                format!("expected {shape}, found {}", describe(cx, node)),
            ));
        };
        Ok(Table {
            cx,
            path,
            entries,
            span: node.span(),
        })
    }

    /// Refuses any key but `keys`, suggesting the closest when one is close.
    fn only(&self, keys: &[&str], what: &str) -> Result<(), ConfigError> {
        self.only_of(keys, &format!("{what} takes {}", list(keys, "and")))
    }

    /// Refuses any key but `known`, suggesting the closest of them when one is close, else
    /// giving `takes`, what the table takes (such as "a grant takes `dirs`…").
    pub fn only_of(&self, known: &[&str], takes: &str) -> Result<(), ConfigError> {
        for (key, _) in self.entries.iter() {
            let key_text = key.get_ref().as_ref();
            if known.contains(&key_text) {
                continue;
            }
            let hint = match did_you_mean(key_text, known) {
                hint if !hint.is_empty() => hint,
                _ => format!("; {takes}"),
            };
            return Err(self.cx.err(
                &key.span(),
                join(&self.path, key_text),
                format!("unknown key{hint}"),
            ));
        }
        Ok(())
    }

    /// The file being read.
    pub fn cx(&self) -> &'a Ctx<'a> {
        self.cx
    }

    /// The key path of this table.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The span of this table, where "missing key" errors point.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The key path of `key` in this table.
    pub fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Every key of this table with its value, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (Sp<String>, &'a Node<'i>)> + 'a {
        self.entries
            .iter()
            .map(|(k, v)| (Sp::new(k.span(), k.get_ref().to_string()), v))
    }

    fn get(&self, key: &str) -> Option<&'a Node<'i>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// A "wrong type" error for `node` at `key`.
    pub fn mismatch(&self, key: &str, node: &Node, expected: &str) -> ConfigError {
        self.cx.err(
            &node.span(),
            self.key(key),
            format!("expected {expected}, found {}", describe(self.cx, node)),
        )
    }

    /// `value`, or a "missing" error at this table naming `key` and saying `why` it is needed.
    pub fn required<T>(&self, value: Option<T>, key: &str, why: &str) -> Result<T, ConfigError> {
        value.ok_or_else(|| {
            self.cx
                .err(&self.span, self.key(key), format!("missing: {why}"))
        })
    }

    /// A text value.
    pub fn text(&self, key: &str) -> Result<Option<Sp<String>>, ConfigError> {
        self.string(key, "text in quotes")
    }

    /// A duration, written as text such as `"5ms"`.
    pub fn duration(&self, key: &str) -> Result<Option<Sp<String>>, ConfigError> {
        self.string(key, "a duration such as \"5ms\" or \"2s\"")
    }

    fn string(&self, key: &str, expected: &str) -> Result<Option<Sp<String>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match node.get_ref() {
            DeValue::String(s) => Ok(Some(Sp::new(node.span(), s.to_string()))),
            _ => Err(self.mismatch(key, node, expected)),
        }
    }

    /// A size: text such as `"64MiB"`, or a whole number of bytes (given back as its digits).
    pub fn size(&self, key: &str) -> Result<Option<Sp<String>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match node.get_ref() {
            DeValue::String(s) => Ok(Some(Sp::new(node.span(), s.to_string()))),
            DeValue::Integer(_) => {
                let n = whole_of(node).unwrap_or_default();
                Ok(Some(Sp::new(node.span(), n.to_string())))
            }
            _ => Err(self.mismatch(key, node, "a size such as \"64MiB\", or a number of bytes")),
        }
    }

    /// A whole number, saturated at the ends of `i128` so that a range check can refuse it.
    pub fn whole(&self, key: &str) -> Result<Option<Sp<i128>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match whole_of(node) {
            Some(n) => Ok(Some(Sp::new(node.span(), n))),
            None => Err(self.mismatch(key, node, "a whole number")),
        }
    }

    /// A whole number, or the text `word` (given back as `None`), such as `workers = "auto"`.
    pub fn whole_or(&self, key: &str, word: &str) -> Result<Option<Sp<Option<i128>>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match (node.get_ref(), whole_of(node)) {
            (_, Some(n)) => Ok(Some(Sp::new(node.span(), Some(n)))),
            (DeValue::String(s), _) if s.as_ref() == word => Ok(Some(Sp::new(node.span(), None))),
            _ => Err(self.mismatch(key, node, &format!("a whole number or \"{word}\""))),
        }
    }

    /// A number such as `0.5` (a whole number is taken too).
    pub fn fraction(&self, key: &str) -> Result<Option<Sp<f64>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let f = match node.get_ref() {
            DeValue::Float(f) => f.as_str().parse().unwrap_or(f64::NAN),
            DeValue::Integer(_) => whole_of(node).unwrap_or_default() as f64,
            _ => return Err(self.mismatch(key, node, "a number such as 0.5")),
        };
        Ok(Some(Sp::new(node.span(), f)))
    }

    /// `true` or `false`.
    pub fn flag(&self, key: &str) -> Result<Option<Sp<bool>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match node.get_ref() {
            DeValue::Boolean(b) => Ok(Some(Sp::new(node.span(), *b))),
            _ => Err(self.mismatch(key, node, "`true` or `false`")),
        }
    }

    /// A list of text values; `example` shows one, such as `["parse"]`.
    pub fn texts(
        &self,
        key: &str,
        example: &str,
    ) -> Result<Option<Sp<Vec<Sp<String>>>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let expected = format!("a list of text such as {example}");
        let DeValue::Array(items) = node.get_ref() else {
            return Err(self.mismatch(key, node, &expected));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Sp::new(item.span(), s.to_string())),
                _ => {
                    return Err(self.mismatch(
                        key,
                        item,
                        &format!("text in quotes, as in {example}"),
                    ));
                }
            }
        }
        Ok(Some(Sp::new(node.span(), out)))
    }

    /// A list of whole numbers, each saturated as [`Table::whole`]; `example` shows one, such
    /// as `[0, 1]`.
    pub fn wholes(
        &self,
        key: &str,
        example: &str,
    ) -> Result<Option<Sp<Vec<Sp<i128>>>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let DeValue::Array(items) = node.get_ref() else {
            return Err(self.mismatch(
                key,
                node,
                &format!("a list of whole numbers such as {example}"),
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match whole_of(item) {
                Some(n) => out.push(Sp::new(item.span(), n)),
                None => {
                    return Err(self.mismatch(
                        key,
                        item,
                        &format!("a whole number, as in {example}"),
                    ));
                }
            }
        }
        Ok(Some(Sp::new(node.span(), out)))
    }

    /// A table under `key` whose keys are names (`[stages.NAME]`, `settings`), not a fixed set.
    pub fn section(&self, key: &str, shape: &str) -> Result<Option<Table<'a, 'i>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let DeValue::Table(entries) = node.get_ref() else {
            return Err(self.mismatch(key, node, shape));
        };
        Ok(Some(Table {
            cx: self.cx,
            path: self.key(key),
            entries,
            span: node.span(),
        }))
    }

    /// A table under `key`; see [`Table::open`].
    pub fn table(
        &self,
        key: &str,
        (what, shape): (&str, &str),
        keys: &[&str],
    ) -> Result<Option<Table<'a, 'i>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(node) => Table::open(self.cx, self.key(key), node, (what, shape), keys).map(Some),
        }
    }

    /// A list of tables under `key`, such as `dirs = [{ host = "a", guest = "/a" }]`; each is
    /// opened at `key[i]`.
    pub fn tables(
        &self,
        key: &str,
        (what, shape): (&str, &str),
        keys: &[&str],
    ) -> Result<Vec<Table<'a, 'i>>, ConfigError> {
        let Some(node) = self.get(key) else {
            return Ok(Vec::new());
        };
        let DeValue::Array(items) = node.get_ref() else {
            return Err(self.mismatch(key, node, &format!("a list of tables such as [{shape}]")));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key(key));
            out.push(Table::open(self.cx, path, item, (what, shape), keys)?);
        }
        Ok(out)
    }

    /// A value that may be text, a number, a boolean or a date-time, as the text a plugin
    /// receives (`max = 10` gives `"10"`).
    pub fn scalar(&self, key: &str, node: &Node) -> Result<Sp<String>, ConfigError> {
        let text = match node.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(_) => whole_of(node).unwrap_or_default().to_string(),
            DeValue::Float(f) => f.as_str().parse::<f64>().unwrap_or(f64::NAN).to_string(),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            DeValue::Array(_) | DeValue::Table(_) => {
                return Err(self.mismatch(key, node, "text, a number or a boolean"));
            }
        };
        Ok(Sp::new(node.span(), text))
    }
}

/// A TOML integer as `i128`, saturated when it is larger still; `None` for other values.
fn whole_of(node: &Node) -> Option<i128> {
    let DeValue::Integer(i) = node.get_ref() else {
        return None;
    };
    let digits = i.as_str();
    Some(
        i128::from_str_radix(digits, i.radix()).unwrap_or(if digits.starts_with('-') {
            i128::MIN
        } else {
            i128::MAX
        }),
    )
}

/// What a value is, in a user's words: `the text "twice"`, `the number 5`, `a table`.
fn describe(cx: &Ctx, node: &Node) -> String {
    let written = || cx.text.get(node.span()).unwrap_or("?").to_string();
    match node.get_ref() {
        DeValue::String(s) => format!("the text {:?}", cut(s)),
        DeValue::Integer(_) | DeValue::Float(_) => format!("the number {}", written()),
        DeValue::Boolean(b) => format!("`{b}`"),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(a) if a.is_empty() => "an empty list".to_string(),
        DeValue::Array(_) => "a list".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}
