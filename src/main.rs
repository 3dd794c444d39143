//! The `socialsyncer` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    socialsyncer::cli::main()
}
