//! `signalbox calendar …` and `signalbox train …` (issue 4): the calendar view, the conflict
//! check, freezes (with a preview of what they would block), environment bookings, and release
//! trains.

use super::args::{object, some_list, IfMatch};
use super::common::update;
use super::error::{exit, CliError};
use super::http::Api;
use super::output::{col, colf, emit, table, Col, Fmt};
use serde_json::{json, Value};

const OCCURRENCE_COLS: &[Col] = &[
    col("start (local)", "local_start"),
    col("end (local)", "local_end"),
    col("zone", "zone"),
    col("kind", "kind"),
    col("title", "title"),
    col("scope", "scope.level"),
    col("entry", "entry_id"),
];
const CONFLICT_COLS: &[Col] = &[col("severity", "severity"), col("kind", "kind"), col("reason", "reason")];
const BLOCKED_COLS: &[Col] =
    &[col("item", "item_kind"), col("id", "item_id"), colf("start", "item_start", Fmt::Time), col("how", "how"), col("effect", "effect")];
const TRAIN_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("zone", "cadence.zone"),
    col("rrule", "cadence.rrule"),
    col("cut-off", "cadence.cutoff_before"),
];
const DEPARTURE_COLS: &[Col] = &[
    col("id", "id"),
    col("departure", "local_departure"),
    col("cut-off", "local_cutoff"),
    col("phase", "phase"),
    col("release", "release_id"),
    colf("items", "items", Fmt::Count),
];
const ITEM_COLS: &[Col] = &[
    col("id", "id"),
    col("kind", "item_kind"),
    colf("ready", "ready", Fmt::YesNo),
    col("blocker", "blocker"),
    col("carried from", "carried_from"),
];

/// Where an entry applies: at most one of the scope flags; none means the whole organization.
#[derive(clap::Args, Debug)]
pub struct ScopeArgs {
    /// A domain (id or name)
    #[arg(long, conflicts_with_all = ["service", "environment", "tier"])]
    domain: Option<String>,
    /// A service (id or name)
    #[arg(long, conflicts_with_all = ["environment", "tier"])]
    service: Option<String>,
    /// An environment (id or name)
    #[arg(long, conflicts_with = "tier")]
    environment: Option<String>,
    /// An environment tier (dev, test, staging, prod or a custom tier)
    #[arg(long)]
    tier: Option<String>,
}

impl ScopeArgs {
    fn json(&self) -> Value {
        match (&self.domain, &self.service, &self.environment, &self.tier) {
            (Some(d), ..) => json!({"level": "domain", "domain": d}),
            (_, Some(s), ..) => json!({"level": "service", "service": s}),
            (_, _, Some(e), _) => json!({"level": "environment", "environment": e}),
            (_, _, _, Some(t)) => json!({"level": "environment_tier", "tier": t}),
            _ => json!({"level": "organization"}),
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum CalendarCmd {
    /// Occurrences of freezes, windows, bookings and events in a range, in UTC and local time
    List {
        /// RFC 3339 start (default: now)
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end, at most 400 days after --from (default: 31 days after it)
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        /// Only this kind (freeze, release_window, maintenance_window, booking, business_event, vendor_release)
        #[arg(long)]
        kind: Option<String>,
    },
    /// Every conflict of deploying a service to an environment at a time, with its reason
    Check {
        #[arg(long)]
        service: String,
        #[arg(long)]
        environment: String,
        /// RFC 3339 start
        #[arg(long)]
        start: String,
        /// Expected duration in minutes
        #[arg(long, default_value_t = 60)]
        minutes: u32,
        /// The release being deployed (id or key)
        #[arg(long)]
        release: Option<String>,
    },
    /// Create a freeze; --dry-run lists what it would block without saving it
    Freeze {
        #[arg(long)]
        title: String,
        #[arg(long)]
        reason: String,
        /// RFC 3339 start with offset
        #[arg(long)]
        start: String,
        /// RFC 3339 end with offset
        #[arg(long)]
        end: String,
        /// IANA zone the freeze is shown in
        #[arg(long, default_value = "UTC")]
        zone: String,
        /// Who answers for it (default: you)
        #[arg(long)]
        owner: Option<String>,
        /// block_new, stop_at_next_step or let_finish
        #[arg(long, default_value = "block_new")]
        effect: String,
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        dry_run: bool,
    },
    /// Book an environment over a time range (refused if someone else holds it then)
    Book {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        reason: String,
    },
    /// Approve a pending booking (the environment's owner or an admin; not the requester)
    ApproveBooking {
        /// The booking's entry id
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a pending booking, saying why (the environment's owner or an admin; not the requester)
    RejectBooking {
        /// The booking's entry id
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TrainCmd {
    /// List release trains
    List,
    /// A train's cadence, next departures and materialized departures
    Show { train: String },
    /// Put an artifact or change on the next departure whose cut-off has not passed
    Board {
        train: String,
        /// Artifact id or service@version
        #[arg(long, conflicts_with = "change", required_unless_present = "change")]
        artifact: Option<String>,
        /// Change id
        #[arg(long)]
        change: Option<String>,
        /// It may leave as is (otherwise mark it ready before departure)
        #[arg(long)]
        ready: bool,
    },
    /// Change a train; departures already materialized keep their times and items
    Update {
        /// Train id or name
        train: String,
        #[arg(long)]
        name: Option<String>,
        /// Cadence: IANA zone
        #[arg(long)]
        zone: Option<String>,
        /// Cadence: local first departure, e.g. 2026-01-01T10:00:00
        #[arg(long)]
        dtstart: Option<String>,
        /// Cadence: RFC 5545 rule, e.g. FREQ=WEEKLY;BYDAY=TH
        #[arg(long)]
        rrule: Option<String>,
        /// Cadence: cut-off before each departure, an RFC 5545 duration (PT40H)
        #[arg(long)]
        cutoff: Option<String>,
        /// Replaces the target environments; repeatable
        #[arg(long = "target-environment", value_name = "ENV")]
        target_environments: Vec<String>,
        /// Template of the departures' releases (id or name)
        #[arg(long)]
        template: Option<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Delete a train (refused while a departure that has not left has items on board)
    Delete {
        /// Train id or name
        train: String,
        #[command(flatten)]
        if_match: IfMatch,
    },
}

async fn me(api: &Api) -> Result<String, CliError> {
    let reply = api.get(&["users", "me"]).send().await?;
    reply.body["username"].as_str().map(String::from).ok_or_else(|| CliError::other("the server did not say who you are"))
}

fn conflicts_text(result: &Value) -> String {
    let conflicts = result["conflicts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let verdict = if result["clear"].as_bool() == Some(true) { "clear" } else { "BLOCKED" };
    let head = format!(
        "{} to {} from {} to {}: {verdict}",
        result["target"]["service"].as_str().unwrap_or("?"),
        result["target"]["environment"].as_str().unwrap_or("?"),
        result["start"].as_str().unwrap_or("?"),
        result["end"].as_str().unwrap_or("?")
    );
    if conflicts.is_empty() {
        format!("{head}; no conflict")
    } else {
        format!("{head}\n{}", table(conflicts, CONFLICT_COLS))
    }
}

pub async fn calendar(api: &Api, cmd: CalendarCmd) -> Result<(), CliError> {
    match cmd {
        CalendarCmd::List { from, to, domain, service, environment, tier, kind } => {
            let reply = api
                .get(&["calendar"])
                .query("from", from)
                .query("to", to)
                .query("domain", domain)
                .query("service", service)
                .query("environment", environment)
                .query("tier", tier)
                .query("kind", kind)
                .send()
                .await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let items = reply.body["occurrences"].as_array().map(Vec::as_slice).unwrap_or_default();
            if items.is_empty() {
                return emit("No calendar occurrences in that range.");
            }
            emit(&table(items, OCCURRENCE_COLS))
        }
        CalendarCmd::Check { service, environment, start, minutes, release } => {
            let body = json!({"service": service, "environment": environment, "start": start,
                              "expected_duration_seconds": u64::from(minutes) * 60, "release": release});
            let reply = api.post(&["calendar", "check"], body).send().await?;
            if !reply.print_json(api)? {
                emit(&conflicts_text(&reply.body))?;
            }
            if reply.body["clear"].as_bool() == Some(true) {
                Ok(())
            } else {
                Err(CliError::new(exit::CONFLICT, "the deployment conflicts with the calendar (see above)"))
            }
        }
        CalendarCmd::Freeze { title, reason, start, end, zone, owner, effect, scope, dry_run } => {
            let owner = match owner {
                Some(o) => o,
                None => me(api).await?,
            };
            let body = json!({"kind": "freeze", "title": title, "reason": reason, "owner": owner, "scope": scope.json(), "zone": zone,
                              "timing": {"type": "one_off", "start": start, "end": end}, "freeze_effect": effect});
            let reply = api.post(&["calendar", "entries"], body).query("dry_run", dry_run.then(|| "true".to_string())).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            if dry_run {
                let blocked = reply.body["blocked"].as_array().map(Vec::as_slice).unwrap_or_default();
                if blocked.is_empty() {
                    return emit("Dry run: the freeze would block nothing scheduled. Nothing was saved.");
                }
                return emit(&format!("Dry run: the freeze would block:\n{}\nNothing was saved.", table(blocked, BLOCKED_COLS)));
            }
            emit(&format!("Created freeze {} ({}).", reply.body["id"].as_str().unwrap_or("?"), reply.body["title"].as_str().unwrap_or("")))
        }
        CalendarCmd::Book { environment, start, end, title, reason } => {
            let owner = me(api).await?;
            let body = json!({"kind": "booking", "title": title, "reason": reason, "owner": owner,
                              "scope": {"level": "environment", "environment": environment}, "zone": "UTC",
                              "timing": {"type": "one_off", "start": start, "end": end}});
            let reply = api.post(&["calendar", "entries"], body).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let id = reply.body["id"].as_str().unwrap_or("?");
            if reply.body["booking"]["state"] == "pending" {
                return emit(&format!(
                    "Requested {environment} for {owner}: booking {id} is pending until the environment's owner approves it \
                     (signalbox calendar approve-booking {id}); until then it is only tentative."
                ));
            }
            emit(&format!("Booked {environment} for {owner}: {id} (release it early with POST /api/v1/bookings/{{id}}/release)."))
        }
        CalendarCmd::ApproveBooking { id, reason } => {
            let reply = api.post(&["bookings", &id, "approve"], json!({"reason": reason})).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Approved booking {id}: it now holds {}.", booking_environment(&reply.body)))
        }
        CalendarCmd::RejectBooking { id, reason } => {
            let reply = api.post(&["bookings", &id, "reject"], json!({"reason": reason})).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Rejected booking {id} of {}.", booking_environment(&reply.body)))
        }
    }
}

fn booking_environment(entry: &Value) -> &str {
    entry["scope"]["environment"].as_str().unwrap_or("?")
}

pub async fn train(api: &Api, cmd: TrainCmd) -> Result<(), CliError> {
    match cmd {
        TrainCmd::List => {
            let reply = api.get(&["trains"]).query("limit", Some("500".into())).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let items = reply.body["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            if items.is_empty() {
                return emit("No trains found.");
            }
            emit(&table(items, TRAIN_COLS))
        }
        TrainCmd::Show { train } => {
            let reply = api.get(&["trains", &train]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = &reply.body;
            let upcoming = b["upcoming"].as_array().map(Vec::as_slice).unwrap_or_default();
            let departures = b["departures"].as_array().map(Vec::as_slice).unwrap_or_default();
            let mut out = format!(
                "{} ({}): {} in {}, cut-off {} before\n\nnext departures:\n{}",
                b["train"]["name"].as_str().unwrap_or("?"),
                b["train"]["id"].as_str().unwrap_or("?"),
                b["train"]["cadence"]["rrule"].as_str().unwrap_or("?"),
                b["train"]["cadence"]["zone"].as_str().unwrap_or("?"),
                b["train"]["cadence"]["cutoff_before"].as_str().unwrap_or("none"),
                table(upcoming, &[col("departure", "local_departure"), col("cut-off", "local_cutoff")])
            );
            if !departures.is_empty() {
                out.push_str(&format!("\n\nmaterialized departures:\n{}", table(departures, DEPARTURE_COLS)));
            }
            emit(&out)
        }
        TrainCmd::Update { train, name, zone, dtstart, rrule, cutoff, target_environments, template, if_match } => {
            let mut if_match = if_match.if_match;
            let mut cadence = None;
            if zone.is_some() || dtstart.is_some() || rrule.is_some() || cutoff.is_some() {
                // The server replaces the cadence whole: change what was asked, keep the rest,
                // and write back only if nobody changed the train meanwhile.
                let reply = api.get(&["trains", &train]).send().await?;
                if if_match.is_none() {
                    if_match = reply.etag.clone();
                }
                let mut c = reply.body["train"]["cadence"].clone();
                if let Some(map) = c.as_object_mut() {
                    for (key, value) in [("zone", zone), ("dtstart", dtstart), ("rrule", rrule), ("cutoff_before", cutoff)] {
                        if let Some(v) = value {
                            map.insert(key.into(), json!(v));
                        }
                    }
                }
                cadence = Some(c);
            }
            let body = object(vec![
                ("name", name.map(|n| json!(n))),
                ("cadence", cadence),
                ("target_environments", some_list(&target_environments)),
                ("template", template.map(|t| json!(t))),
            ]);
            update(api, &["trains", &train], body, if_match.as_deref(), "train", "name").await?;
            Ok(())
        }
        TrainCmd::Delete { train, if_match } => {
            let reply = api.delete(&["trains", &train]).if_match(if_match.if_match.as_deref()).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Deleted train {train}; its empty future departures were cancelled."))
        }
        TrainCmd::Board { train, artifact, change, ready } => {
            let reply =
                api.post(&["trains", &train, "board"], json!({"artifact": artifact, "change": change, "ready": ready})).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = &reply.body;
            let items = b["items"].as_array().map(Vec::as_slice).unwrap_or_default();
            emit(&format!(
                "Boarded on the departure at {} (cut-off {}), departure {} with release {}:\n{}",
                b["local_departure"].as_str().unwrap_or("?"),
                b["local_cutoff"].as_str().unwrap_or("?"),
                b["id"].as_str().unwrap_or("?"),
                b["release_id"].as_str().unwrap_or("?"),
                table(items, ITEM_COLS)
            ))
        }
    }
}
