//! The error every check returns, and [`Ctx`], which turns the byte span of a value into the
//! line an error names; [`bind_message`] says why a `listen` address (of `[admin]`, `[metrics]`
//! or a source) could not be bound. A leaf: it imports nothing else of `config`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A value and the byte span it was written at.
pub(crate) type Sp<T> = toml::Spanned<T>;

/// A configuration error, with the place it was found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The pipeline file.
    pub file: PathBuf,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// The dotted key the error is about, such as `stages.parse.inputs`.
    pub key: Option<String>,
    /// What is wrong, and where possible what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The file being checked: its name, its text (to turn spans into lines) and its folder (to
/// anchor relative paths).
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub dir: PathBuf,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Ctx<'a> {
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ctx { file, text, dir }
    }

    /// The 1-based line a byte offset is on.
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at the line of `span`, about `key`.
    pub fn err(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error about the file as a whole, such as a missing section.
    pub fn err_file(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// A path as written in the file, anchored at the file's folder when relative.
    pub fn path(&self, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// A number as written in the file (`1_000`, `0x10`, `nan`), for a message.
    pub fn number(&self, span: &Range<usize>) -> String {
        let written = self.text.get(span.clone()).unwrap_or("?");
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
        if written.chars().all(plain) {
            written.chars().take(SHOWN_CHARS).collect()
        } else {
            shown(written)
        }
    }
}

/// Longest piece of the user's text quoted in a message.
const SHOWN_CHARS: usize = 60;

/// Text from the file, fit to quote in a message: in backticks, cut after a few dozen
/// characters; written with escapes (`"a\u{0}b"`) when it holds a control character, so that
/// an error line can never carry a terminal escape or a forged second line.
pub(crate) fn shown(text: &str) -> String {
    let cut = cut(text);
    if cut.chars().any(|c| c.is_control() || c == '`') {
        format!("{cut:?}")
    } else {
        format!("`{cut}`")
    }
}

/// A path or other text as it is, or written with escapes when it holds a control character.
pub(crate) fn plain(text: &str) -> String {
    if text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        text.to_string()
    }
}

/// `text` cut after [`SHOWN_CHARS`] characters, marked with `…` when cut.
pub(crate) fn cut(text: &str) -> String {
    let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// `path.key`, with `key` quoted as TOML would need it (`stages."a b"`) when it is not a bare
/// key, so that a key path in an error is always one printable line.
pub(crate) fn join(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{:?}", cut(key))
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// The candidate closest to `given`, if one is close enough to be a likely typo.
pub(crate) fn closest<'n>(given: &str, candidates: &[&'n str]) -> Option<&'n str> {
    weir_sandbox::settings::closest(given, candidates)
}

/// "; did you mean `x`?" when a candidate is close to `given`, else "".
pub(crate) fn did_you_mean(given: &str, candidates: &[&str]) -> String {
    match closest(given, candidates) {
        Some(name) => format!("; did you mean `{name}`?"),
        None => String::new(),
    }
}

/// `a`, `b` or `c` (with `conj` "or"), or `a`, `b` and `c`.
pub(crate) fn list(names: &[&str], conj: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conj} {last}", rest.join(", ")),
    }
}

/// Why an address could not be bound, and what to do, for a person.
pub(crate) fn bind_message(addr: std::net::SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "`{addr}` is in use: another program (or another weir) listens there; choose \
             another port, or port 0 for any free one"
        ),
        ErrorKind::AddrNotAvailable => {
            format!("`{addr}` is not an address of this machine: {e}")
        }
        ErrorKind::PermissionDenied => format!(
            "cannot listen on `{addr}`: permission denied (ports below 1024 need privileges)"
        ),
        _ => format!("cannot listen on `{addr}`: {e}"),
    }
}
