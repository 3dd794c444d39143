//! The `socialsyncer` binary: parses the command line and hands over to the library.
// Unsafe only in `allocator_options` (one FFI call, before anything runs).
#![deny(unsafe_code)]

use std::process::ExitCode;

// mimalloc: the sweep allocates per request (HTTP, JSON); glibc malloc showed ~8% of a
// sweep's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's arenas committed lazily, set in code for every way of starting (the unit, by
/// hand, a container): memory freed after a burst (10,000 registrations) goes back to the
/// system instead of staying resident. The default is set (not forced) before the first
/// allocation, from a constructor in `.init_array` (run before Rust's runtime allocates), so
/// `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still wins.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod allocator_options {
    /// `mi_option_arena_eager_commit` in mimalloc's `mi_option_t` (v2 and v3).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

    extern "C" fn set_defaults() {
        // SAFETY: sets one option's default in mimalloc's static option table; no allocation.
        unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0) }
    }

    #[used]
    #[unsafe(link_section = ".init_array")]
    static SET_DEFAULTS: extern "C" fn() = set_defaults;
}

fn main() -> ExitCode {
    socialsyncer::cli::main()
}
