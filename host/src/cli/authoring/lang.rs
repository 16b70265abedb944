//! The five languages a stage can be written in, and how a project folder tells which.

use std::path::Path;

/// A stage's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
    C,
    Go,
}

impl Lang {
    pub const ALL: [Lang; 5] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C, Lang::Go];

    /// The name on the command line and in the SDK's folders.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
            Lang::Go => "go",
        }
    }

    /// The file that marks a project of this language, as its template makes it.
    fn marker(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "app.py",
            Lang::Js => "app.js",
            Lang::C => "app.c",
            Lang::Go => "go.mod",
        }
    }

    /// The language of the project in `dir`, from the files its template leaves there.
    pub fn detect(dir: &Path) -> Result<Lang, String> {
        let found: Vec<Lang> = Lang::ALL
            .into_iter()
            .filter(|l| dir.join(l.marker()).is_file())
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(format!(
                "{} is not a stage project: it has none of {} (make one with `weir plugin new`)",
                dir.display(),
                Lang::ALL
                    .iter()
                    .map(|l| format!("{} ({})", l.marker(), l.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            several => Err(format!(
                "{}: cannot tell the language, it has the files of {}",
                dir.display(),
                several
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    /// The contract version the language's SDK speaks.
    pub fn contract(self) -> &'static str {
        "0.3"
    }
}
