//! The `signalbox` binary: everything lives in `signalbox-cli`.

/// mimalloc rather than the system allocator: a server request allocates and frees many small
/// buffers across worker threads, and glibc's malloc spent about a seventh of the server's CPU
/// on it (docs/BENCHMARKS.md, "Tenth session").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    signalbox_cli::run()
}
