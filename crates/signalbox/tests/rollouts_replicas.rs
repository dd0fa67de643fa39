//! Issue 6, "Tests that must exist": two `signalbox serve` replicas on one PostgreSQL database.
//! The replica driving a webhook canary is SIGKILLed while the receiver is answering one of its
//! requests; the other replica takes the rollout over and finishes it, and nothing is done
//! twice (one key per logical action, one applied key per (action, step)).
//!
//! Which replica sends a request is told by its signature: each replica holds a different
//! webhook secret in the variable the path references (`env:NAME` is resolved on the sending
//! server), and the receiver accepts both.
//!
//! Runs when `SIGNALBOX_TEST_POSTGRES_URL` is set (CI always sets it); otherwise it says so and
//! passes, as the rest of the PostgreSQL suite does.

mod common;

use std::time::Duration;

use common::*;

const SECRET_A: &str = "whsec_c2lnbmFsYm94LXRlc3QtcmVwbGljYS1hLXNlY3JldCE=";
const SECRET_B: &str = "whsec_c2lnbmFsYm94LXRlc3QtcmVwbGljYS1iLXNlY3JldCE=";
const SECRET_ENV: &str = "SIGNALBOX_E2E_HOOK_SECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_replica_driving_a_rollout_lets_the_other_finish_it_without_doing_anything_twice() {
    let Some(base) = std::env::var("SIGNALBOX_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("SIGNALBOX_TEST_POSTGRES_URL is not set: the two-replica PostgreSQL test ran nothing");
        return;
    };
    let database = signalbox_store_postgres::testing::ScratchDatabase::create(&base).await.expect("a fresh PostgreSQL database");
    let url = database.url().to_string();

    let receiver = Receiver::start(&[("a", SECRET_A), ("b", SECRET_B)], Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = |name: &str, secret: &str| ServerOptions {
        name: name.into(),
        backend: Backend::Postgres(url.clone()),
        config: None,
        env: vec![(SECRET_ENV.into(), secret.into())],
        log_dir: dir.path().to_path_buf(),
    };
    // A first (it bootstraps the database), then B.
    let a = Server::start(&options("a", SECRET_A)).await;
    let b = Server::start(&options("b", SECRET_B)).await;
    let mut replicas = vec![a, b];

    let api = replicas[0].api();
    let seeded = seed_release(&api, "checkout-api", "staging").await;
    let id = promote_with(&api, &seeded, webhook_canary_stage(&receiver.url, SECRET_ENV)).await;

    // Kill whichever replica is sending set_weight 50 (plan step 3), while it is being answered.
    let logs = |replicas: &[Server]| replicas.iter().map(|s| format!("--- {}:\n{}", s.name, s.log_tail())).collect::<Vec<_>>().join("\n");
    let in_flight = receiver
        .wait_in_flight(Duration::from_secs(90), Duration::from_millis(700), |d| d.action == "set_weight" && d.step == 3)
        .await
        .unwrap_or_else(|| panic!("set_weight 50 never reached the receiver:\n{}\n{}", receiver.describe(), logs(&replicas)));
    let driver = in_flight.signer.clone().expect("a verified delivery");
    let index = replicas.iter().position(|s| s.name == driver).expect("a known replica");
    replicas[index].kill();
    let before_kill = receiver.deliveries().len();
    let killed = replicas.remove(index);
    let killed_log = killed.log_tail();
    drop(killed);
    let survivor = &replicas[0];

    let api = survivor.api();
    let done = wait_for_deployment(&api, &id, Duration::from_secs(90), finished).await.unwrap_or_else(|e| {
        panic!(
            "{e}\nreceiver:\n{}\nkilled replica {driver}:\n{killed_log}\nsurvivor {}:\n{}",
            receiver.describe(),
            survivor.name,
            survivor.log_tail()
        )
    });
    let context = format!(
        "killed replica {driver} while it sent {}\ndeployment:\n{}\nreceiver:\n{}",
        in_flight.key,
        serde_json::to_string_pretty(&done).unwrap_or_default(),
        receiver.describe()
    );
    assert_eq!(phase(&done), "succeeded", "{context}");
    assert_eq!(done["rollout"]["weight"], 100, "{context}");

    let deliveries = receiver.deliveries();
    assert_each_action_under_one_key(&deliveries, &CANARY_ACTIONS, &context);
    // After the kill only the survivor sends, starting with the interrupted action, same key.
    let after: Vec<&Delivery> = deliveries.iter().skip(before_kill).collect();
    assert!(!after.is_empty(), "the survivor sent nothing\n{context}");
    for d in &after {
        assert_eq!(d.signer.as_deref(), Some(survivor.name.as_str()), "#{} came from a dead replica\n{context}", d.seq);
    }
    assert_eq!(after[0].key, in_flight.key, "the survivor first resends the interrupted action under its key\n{context}");
    for ((action, step), keys) in applied_per_action(&deliveries) {
        assert_eq!(keys, 1, "{action} at step {step} was applied under {keys} keys\n{context}");
    }
    for d in deliveries.iter().take(before_kill).filter(|d| d.key != in_flight.key) {
        let times = deliveries.iter().filter(|x| x.key == d.key).count();
        assert_eq!(times, 1, "{} had completed before the kill, yet was sent {times} times\n{context}", d.key);
    }
    assert_history_once(&done);

    drop(replicas);
    audit_verify(&["--database-url", &url]);
    drop(database);
}
