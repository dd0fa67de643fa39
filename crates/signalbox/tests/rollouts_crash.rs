//! Issue 6, "Tests that must exist": the webhook driver against a local receiver that verifies
//! signatures and counts idempotency keys; the real `signalbox serve` is SIGKILLed while a
//! driver action is in flight (the receiver is still answering it) and restarted on the same
//! SQLite data directory. The rollout must finish, every logical action must have reached the
//! receiver under exactly one key (a resend after the restart reuses it), nothing is applied
//! twice, and the audit chain still verifies.

mod common;

use std::time::Duration;

use common::*;

const SECRET: &str = "whsec_c2lnbmFsYm94LXRlc3QtcmVwbGljYS1hLXNlY3JldCE=";
const SECRET_ENV: &str = "SIGNALBOX_E2E_HOOK_SECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_action_then_a_restart_sends_nothing_twice() {
    // Answers take 1.5 s (the driver's timeout is 3 s): long enough to kill the server mid-request.
    let receiver = Receiver::start(&[("server", SECRET)], Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let opts = ServerOptions {
        name: "server".into(),
        backend: Backend::Sqlite(data.clone()),
        config: None,
        env: vec![(SECRET_ENV.into(), SECRET.into())],
        log_dir: dir.path().to_path_buf(),
    };
    let mut server = Server::start(&opts).await;
    let api = server.api();
    let seeded = seed_release(&api, "checkout-api", "staging").await;
    let id = promote_with(&api, &seeded, webhook_canary_stage(&receiver.url, SECRET_ENV)).await;

    // Kill while set_weight 50 (plan step 3) is being answered.
    let in_flight = receiver
        .wait_in_flight(Duration::from_secs(90), Duration::from_millis(700), |d| d.action == "set_weight" && d.step == 3)
        .await
        .unwrap_or_else(|| panic!("set_weight 50 never reached the receiver:\n{}\n{}", receiver.describe(), server.log_tail()));
    server.kill();
    let before_restart = receiver.deliveries().len();
    let first_log = server.log_tail();
    drop(server);

    // Restart on the same data directory; the controller takes the rollout over after the lease.
    let server = Server::start(&opts).await;
    let api = server.api();
    let done = wait_for_deployment(&api, &id, Duration::from_secs(90), finished).await.unwrap_or_else(|e| {
        panic!("{e}\nreceiver:\n{}\nfirst server:\n{first_log}\nrestarted server:\n{}", receiver.describe(), server.log_tail())
    });
    let context = format!("deployment:\n{}\nreceiver:\n{}", serde_json::to_string_pretty(&done).unwrap_or_default(), receiver.describe());
    assert_eq!(phase(&done), "succeeded", "{context}");
    assert_eq!(done["rollout"]["weight"], 100, "{context}");

    let deliveries = receiver.deliveries();
    assert_each_action_under_one_key(&deliveries, &CANARY_ACTIONS, &context);
    // The action cut off by the SIGKILL was resent after the restart, under the same key.
    let resent: Vec<&Delivery> = deliveries.iter().skip(before_restart).filter(|d| d.key == in_flight.key).collect();
    assert!(!resent.is_empty(), "the interrupted {} was never resent after the restart\n{context}", in_flight.key);
    // Nothing was done twice: one applied key per (action, step).
    for ((action, step), keys) in applied_per_action(&deliveries) {
        assert_eq!(keys, 1, "{action} at step {step} was applied under {keys} keys\n{context}");
    }
    // Actions that had completed before the kill were not sent again.
    for d in deliveries.iter().take(before_restart).filter(|d| d.key != in_flight.key) {
        let times = deliveries.iter().filter(|x| x.key == d.key).count();
        assert_eq!(times, 1, "{} had completed before the kill, yet was sent {times} times\n{context}", d.key);
    }
    assert_history_once(&done);

    drop(server);
    audit_verify(&["--data", data.to_str().expect("utf-8 path")]);
}
