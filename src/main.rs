//! The `socialsyncer` binary: parses the command line and hands over to the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

// mimalloc: the sweep allocates per request (HTTP, JSON); glibc malloc showed ~8% of a
// sweep's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    socialsyncer::cli::main()
}
