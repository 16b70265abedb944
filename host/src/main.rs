//! The `weir` binary: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    weir::cli::main(weir::cli::Cli::parse())
}
