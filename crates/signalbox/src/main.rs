//! The `signalbox` binary: everything lives in `signalbox-cli`.

fn main() -> std::process::ExitCode {
    signalbox_cli::run()
}
