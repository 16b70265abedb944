//! The error every check returns, and the context that turns a byte span into its line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::raw::Sp;
use crate::config::units::parse_duration;

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

/// Turns byte spans into errors with line numbers.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub dir: PathBuf,
}

impl Ctx<'_> {
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

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

    pub fn path(&self, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    pub fn duration(&self, raw: &Sp<String>, key: String) -> Result<Duration, ConfigError> {
        parse_duration(raw.get_ref()).map_err(|m| self.err(&raw.span(), key, m))
    }

    pub fn positive(&self, raw: &Sp<usize>, key: String) -> Result<usize, ConfigError> {
        match *raw.get_ref() {
            0 => Err(self.err(&raw.span(), key, "must be at least 1")),
            n => Ok(n),
        }
    }
}
