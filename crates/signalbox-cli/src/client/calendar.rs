//! `signalbox calendar …` and `signalbox train …` (issue 4). (Being built.)

use super::error::{exit, CliError};
use super::http::Api;

#[derive(clap::Subcommand, Debug)]
pub enum CalendarCmd {
    /// List calendar occurrences
    List,
}

#[derive(clap::Subcommand, Debug)]
pub enum TrainCmd {
    /// List release trains
    List,
}

pub async fn calendar(_api: &Api, _cmd: CalendarCmd) -> Result<(), CliError> {
    Err(CliError::new(exit::FAILURE, "the calendar commands are not available in this build yet"))
}

pub async fn train(_api: &Api, _cmd: TrainCmd) -> Result<(), CliError> {
    Err(CliError::new(exit::FAILURE, "the train commands are not available in this build yet"))
}
