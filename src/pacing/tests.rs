//! Unit tests of the pacing gates, on tokio's paused clock (no real waiting).

use super::*;

#[tokio::test(start_paused = true)]
async fn a_gate_spaces_requests_at_its_rate_without_a_burst() {
    let gate = Gate::new(Some(10.0));
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        gate.pace().await;
    }
    // The first goes at once, the next four 100 ms apart.
    assert_eq!(started.elapsed(), Duration::from_millis(400));
    // After a pause, no burst is saved up: the next goes at once, the one after 100 ms later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resumed = tokio::time::Instant::now();
    gate.pace().await;
    gate.pace().await;
    assert_eq!(resumed.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn an_unpaced_gate_never_waits() {
    let gate = Gate::new(None);
    let started = tokio::time::Instant::now();
    for _ in 0..1000 {
        gate.pace().await;
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[test]
fn a_throttle_holds_the_gate_until_its_time_and_the_latest_wins() {
    let gate = Gate::new(None);
    assert_eq!(gate.blocked(1_000), None);
    gate.block_until(1_060);
    gate.block_until(1_030);
    assert_eq!(
        gate.blocked(1_000),
        Some(1_060),
        "an earlier retry time does not shorten the hold"
    );
    assert_eq!(gate.blocked(1_059), Some(1_060));
    assert_eq!(gate.blocked(1_060), None, "open again at the time the platform gave");
}

#[test]
fn a_reload_changes_the_pace() {
    let mut config = crate::config::Config::from_toml("").unwrap();
    config.platforms.tiktok.rate_limit = Some(5.0);
    let gates = Gates::new(&config);
    assert_eq!(gates.rate(Platform::Tiktok), Some(5.0));
    config.platforms.tiktok.rate_limit = Some(0.0);
    gates.set_rates(&config);
    assert_eq!(gates.rate(Platform::Tiktok), None, "0 turns pacing off");
}

#[tokio::test(start_paused = true)]
async fn a_turn_further_than_the_bound_is_refused_and_a_dropped_one_is_given_back() {
    let gate = Gate::new(Some(1.0));
    let bound = Duration::from_secs(2);
    // Turns at 0, 1 and 2 s; the fourth would be 3 s away.
    let a = gate.reserve(bound).unwrap();
    let b = gate.reserve(bound).unwrap();
    let c = gate.reserve(bound).unwrap();
    assert_eq!(gate.reserve(bound).unwrap_err(), Duration::from_secs(3));
    // A caller that goes away gives its turn back: the last one shortens the queue, one
    // inside it is taken by the next reservation.
    drop(c);
    let c2 = gate.reserve(bound).unwrap();
    drop(b);
    let b2 = gate.reserve(bound).unwrap();
    assert_eq!(gate.reserve(bound).unwrap_err(), Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    a.wait().await;
    b2.wait().await;
    assert_eq!(started.elapsed(), Duration::from_secs(1), "b's turn, taken again");
    c2.wait().await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn on_demand_requests_use_only_their_share_of_the_budget() {
    let mut config = crate::config::Config::from_toml("").unwrap();
    config.platforms.tiktok.rate_limit = Some(8.0);
    config.health.check_now_share = 0.25;
    let gates = Gates::new(&config);
    // 2 a second for check-now; within 2 s: turns at 0, 0.5, 1, 1.5 and 2 s.
    let mut held = Vec::new();
    while let Ok(t) = gates.reserve_on_demand(Platform::Tiktok, Duration::from_secs(2)) {
        held.push(t);
    }
    assert_eq!(held.len(), 5);
    // The sweeps' gate still has its next turn 5 eighths of a second away, not 2 s.
    let sweep = gates.get(Platform::Tiktok).reserve(Duration::ZERO);
    assert!(sweep.is_err_and(|d| d <= Duration::from_millis(625)));
}
