use chrono::Utc;
use signalbox_drivers::{execute, ActionStatus, DriverAction, DriverError, DriverRequest, DriverSpec, SimulatedFleets};

use crate::support::{request, v1, v2};

async fn act(fleets: &SimulatedFleets, action: DriverAction, key: &str) -> Result<Option<String>, DriverError> {
    act_with(fleets, request(action, key)).await
}

async fn act_with(fleets: &SimulatedFleets, req: DriverRequest) -> Result<Option<String>, DriverError> {
    let spec = DriverSpec::Simulated { fleet: "api-prod".into() };
    let outcome = execute(&spec, &req, fleets).await?;
    assert_eq!(outcome.status, ActionStatus::Completed);
    Ok(outcome.deployed_digest)
}

#[tokio::test]
async fn a_canary_moves_through_the_fleet() {
    let fleets = SimulatedFleets::new();
    let fleet = fleets.add_fleet("api-prod", Some(v1()));

    assert_eq!(act(&fleets, DriverAction::Deploy, "1").await.unwrap(), Some(v2().digest));
    let state = fleet.state();
    assert_eq!((state.canary.as_ref(), state.canary_weight), (Some(&v2()), 0));
    assert_eq!(state.stable, Some(v1()));

    act(&fleets, DriverAction::SetWeight { weight: 25 }, "2").await.unwrap();
    assert_eq!(fleet.state().canary_weight, 25);

    assert_eq!(act(&fleets, DriverAction::Finalize, "3").await.unwrap(), Some(v2().digest));
    let state = fleet.state();
    assert_eq!((state.stable, state.canary, state.canary_weight), (Some(v2()), None, 0));

    let log: Vec<_> = fleet.actions().into_iter().map(|a| a.action).collect();
    assert_eq!(log, vec![DriverAction::Deploy, DriverAction::SetWeight { weight: 25 }, DriverAction::Finalize]);
}

#[tokio::test]
async fn rollback_restores_the_stable_digest() {
    let fleets = SimulatedFleets::new();
    let fleet = fleets.add_fleet("api-prod", Some(v1()));
    act(&fleets, DriverAction::Deploy, "1").await.unwrap();
    act(&fleets, DriverAction::SetWeight { weight: 50 }, "2").await.unwrap();

    assert_eq!(act(&fleets, DriverAction::Rollback, "3").await.unwrap(), Some(v1().digest));
    let state = fleet.state();
    assert_eq!((state.stable, state.canary, state.canary_weight), (Some(v1()), None, 0));

    // After a finalize, rollback brings `previous` back.
    act(&fleets, DriverAction::Deploy, "4").await.unwrap();
    act(&fleets, DriverAction::Finalize, "5").await.unwrap();
    assert_eq!(act(&fleets, DriverAction::Rollback, "6").await.unwrap(), Some(v1().digest));
    assert_eq!(fleet.state().stable, Some(v1()));
}

#[tokio::test]
async fn blue_green_switch_sends_all_traffic_to_the_new_side() {
    let fleets = SimulatedFleets::new();
    let fleet = fleets.add_fleet("api-prod", Some(v1()));
    act(&fleets, DriverAction::Deploy, "1").await.unwrap();
    act(&fleets, DriverAction::Switch, "2").await.unwrap();
    assert_eq!(fleet.state().canary_weight, 100);
    let sample = fleet.sample(Utc::now());
    assert_eq!(sample.stable.requests, 0);
    assert_eq!(sample.canary.map(|c| c.requests), Some(1000));
}

#[tokio::test]
async fn a_repeated_idempotency_key_changes_nothing() {
    let fleets = SimulatedFleets::new();
    let fleet = fleets.add_fleet("api-prod", Some(v1()));
    act(&fleets, DriverAction::Deploy, "deploy-key").await.unwrap();
    act(&fleets, DriverAction::SetWeight { weight: 10 }, "weight-key").await.unwrap();
    assert_eq!(act(&fleets, DriverAction::Deploy, "deploy-key").await.unwrap(), Some(v2().digest));
    assert_eq!(fleet.state().canary_weight, 10, "a replayed deploy must not reset the weight");
    assert!(fleet.actions().last().unwrap().replay);
}

#[tokio::test]
async fn actions_on_an_artifact_not_deployed_are_refused() {
    let fleets = SimulatedFleets::new();
    fleets.add_fleet("api-prod", Some(v1()));
    let err = act(&fleets, DriverAction::SetWeight { weight: 10 }, "1").await.unwrap_err();
    assert!(matches!(&err, DriverError::Rejected { status: 409, body } if body.contains("send deploy first")), "{err}");
    let mut other = request(DriverAction::Finalize, "2");
    other.artifact.digest = "sha256:other".into();
    assert!(act_with(&fleets, other).await.is_err());
}

#[tokio::test]
async fn samples_follow_the_injected_health() {
    let fleets = SimulatedFleets::new();
    let fleet = fleets.add_fleet("api-prod", Some(v1()));
    act(&fleets, DriverAction::Deploy, "1").await.unwrap();
    act(&fleets, DriverAction::SetWeight { weight: 30 }, "2").await.unwrap();
    fleets.set_canary_health("api-prod", 0.2, 400.0);
    fleet.set_stable_health(0.01, 80.0);

    let (mut canary_requests, mut canary_errors, mut stable_requests, mut stable_errors) = (0, 0, 0, 0);
    for _ in 0..100 {
        let sample = fleet.sample(Utc::now());
        assert_eq!(sample.canary_weight, 30);
        assert_eq!(sample.requests, 1000);
        let canary = sample.canary.unwrap();
        canary_requests += canary.requests;
        canary_errors += canary.errors;
        stable_requests += sample.stable.requests;
        stable_errors += sample.stable.errors;
        assert!(canary.p99_latency_ms > 350.0 && canary.p99_latency_ms <= 400.0, "{canary:?}");
        assert!(sample.stable.p99_latency_ms > 70.0 && sample.stable.p99_latency_ms <= 80.0, "{sample:?}");
    }
    let share = canary_requests as f64 / 100_000.0;
    assert!((share - 0.3).abs() < 0.01, "canary share {share}");
    let canary_rate = canary_errors as f64 / canary_requests as f64;
    let stable_rate = stable_errors as f64 / stable_requests as f64;
    assert!((canary_rate - 0.2).abs() < 0.01, "canary error rate {canary_rate}");
    assert!((stable_rate - 0.01).abs() < 0.003, "stable error rate {stable_rate}");
}

#[tokio::test]
async fn samples_are_deterministic() {
    let run = || {
        let fleets = SimulatedFleets::new();
        let fleet = fleets.add_fleet("api-prod", Some(v1()));
        fleet.set_stable_health(0.05, 100.0);
        (0..5).map(|_| fleet.sample(chrono::DateTime::UNIX_EPOCH)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[tokio::test]
async fn record_does_nothing_and_is_accepted() {
    let outcome = execute(&DriverSpec::Record {}, &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap();
    assert_eq!((outcome.status, outcome.deployed_digest), (ActionStatus::Accepted, None));
}
