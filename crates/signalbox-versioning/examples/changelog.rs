//! `signalbox changelog` without the rest of the CLI, for harnesses that only need the library's
//! output and should not wait for the whole workspace to build (`bench/versioning/compare.sh`):
//!
//!     cargo run --release -p signalbox-versioning --example changelog -- REPO [markdown|json]
//!
//! Default configuration (git-cliff's defaults, pre-release tags folded into the final).

use signalbox_versioning::{generate, render, ChangelogConfig, Selection};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(repo), format) = (args.first(), args.get(1).map_or("markdown", String::as_str)) else {
        eprintln!("usage: changelog REPO [markdown|json]");
        return ExitCode::from(2);
    };
    let config = ChangelogConfig::default();
    match generate(repo.as_ref(), &config, &Selection::default()) {
        Ok(log) if format == "json" => println!("{}", render::json(&log)),
        Ok(log) => print!("{}", render::markdown(&log, &config, true)),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
