//! `signalbox flags …` (issue 7). (Being built.)

use super::error::{exit, CliError};
use super::http::Api;

#[derive(clap::Subcommand, Debug)]
pub enum FlagsCmd {
    /// List flag sets
    List,
}

pub async fn flags(_api: &Api, _cmd: FlagsCmd) -> Result<(), CliError> {
    Err(CliError::new(exit::FAILURE, "the flag commands are not available in this build yet"))
}
