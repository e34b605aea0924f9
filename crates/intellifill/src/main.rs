//! The `intellifill` binary. Everything lives in the library; `main` only hands the command line over.

/// mimalloc instead of glibc malloc: under load glibc's allocator took about a quarter of the server's CPU
/// (measured with `perf` during `loadtest run`, see docs/PERFORMANCE.md), and it gives memory back to the
/// system after a burst of connections.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    intellifill::run()
}
