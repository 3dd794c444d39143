//! The `socialsyncer` binary: parses the command line and hands over to the library.
// Unsafe only in `allocator_options` (FFI calls that set the allocators' options, before anything runs).
#![deny(unsafe_code)]

use std::process::ExitCode;

// mimalloc: the sweep allocates per request (HTTP, JSON); glibc malloc showed ~8% of a
// sweep's CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocators' options, set in code for every way of starting (the unit, by hand, a
/// container), as defaults the environment still overrides. mimalloc's arenas are committed
/// lazily: memory freed after a burst (10,000 registrations) goes back to the system instead
/// of staying resident (`MIMALLOC_ARENA_EAGER_COMMIT` wins). The C library's malloc keeps one
/// arena (`MALLOC_ARENA_MAX` wins). Both are set from a constructor in `.init_array`, which
/// runs before Rust's runtime allocates or starts a thread.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod allocator_options {
    /// `mi_option_arena_eager_commit` in mimalloc's `mi_option_t` (v2 and v3).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

    /// glibc's `M_ARENA_MAX` (malloc.h).
    #[cfg(target_env = "gnu")]
    const M_ARENA_MAX: std::ffi::c_int = -8;

    #[cfg(target_env = "gnu")]
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
    }

    extern "C" fn set_defaults() {
        // SAFETY: sets one option's default in mimalloc's static option table; no allocation.
        unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0) }
        // What still allocates with the C library's malloc (SQLite: its page caches and
        // statements, one connection a thread) shares one arena instead of one a thread,
        // unless MALLOC_ARENA_MAX says otherwise: at 100,000 accounts the sweep's peak RSS
        // fell from 282 to 240 MiB with its speed unchanged (bench scale, 2-core VM).
        #[cfg(target_env = "gnu")]
        // SAFETY: getenv reads the environment (no thread runs yet); mallopt sets one of
        // malloc's parameters, before any other thread exists.
        unsafe {
            if getenv(c"MALLOC_ARENA_MAX".as_ptr()).is_null() {
                mallopt(M_ARENA_MAX, 1);
            }
        }
    }

    #[used]
    #[unsafe(link_section = ".init_array")]
    static SET_DEFAULTS: extern "C" fn() = set_defaults;
}

fn main() -> ExitCode {
    socialsyncer::cli::main()
}
