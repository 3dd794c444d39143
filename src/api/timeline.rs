//! `GET /v1/accounts/{platform}/{accountId}/timeline`: one account's health changes, its
//! incidents and its availability over 7, 30 and 90 days (see `health::timeline`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiState, Target};
use crate::domain::{Health, UnixTime, rfc3339};
use crate::health::timeline::{self, Transition};

/// The windows availability is given for, in days.
pub const WINDOWS: [i64; 3] = [7, 30, 90];

/// One change of health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionView {
    /// RFC 3339 UTC: when the check that caused it ran.
    pub at: String,
    /// The health before.
    pub from: Health,
    /// The health after.
    pub to: Health,
    /// Whether a person must act (reconnect) after it.
    pub needs_person: bool,
    /// What caused it: the recommendation or error of the check.
    pub reason: String,
}

/// A span during which the account was unhealthy or needed a person.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentView {
    /// RFC 3339 UTC.
    pub start: String,
    /// RFC 3339 UTC; null while it lasts.
    pub end: Option<String>,
    /// What began it.
    pub cause: String,
}

/// The share of a window's known time that the account was healthy or a warning.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityView {
    /// The window, in days.
    pub days: i64,
    /// Percent; null when no time in the window is known (the account never answered).
    pub percent: Option<f64>,
    /// RFC 3339 UTC, when the account is younger than the window: the figure covers only the
    /// time since it was connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// `GET .../timeline` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The health changes of the last 90 days, oldest first.
    pub transitions: Vec<TransitionView>,
    /// The incidents among them, oldest first (one that began earlier and lasts shows from
    /// its first change in the window).
    pub incidents: Vec<IncidentView>,
    /// Availability over 7, 30 and 90 days. Time in `unknown` (no answer) counts neither
    /// way.
    pub availability: Vec<AvailabilityView>,
}

/// The health at `at`: the last transition at or before it, else `before`.
fn state_at(before: Health, transitions: &[Transition], at: UnixTime) -> Health {
    transitions
        .iter()
        .rev()
        .find(|t| t.at <= at)
        .map_or(before, |t| t.to_health)
}

/// Availability over each of [`WINDOWS`] for an account connected at `connected_at`, whose
/// health was `before` when the longest window began and changed as `transitions` say.
pub fn windows(
    now: UnixTime,
    connected_at: UnixTime,
    before: Health,
    transitions: &[Transition],
) -> Vec<timeline::Availability> {
    WINDOWS
        .iter()
        .map(|&days| {
            let start = (now - days * 86_400).max(connected_at);
            let at_start = state_at(before, transitions, start);
            timeline::availability(days, now, connected_at, at_start, transitions)
        })
        .collect()
}

/// One account's timeline: health changes, incidents and availability.
#[utoipa::path(get, path = "/v1/accounts/{platform}/{accountId}/timeline", tag = "accounts",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = Timeline),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn timeline(State(state): State<ApiState>, Target(a, _): Target) -> Result<Json<Timeline>, ApiError> {
    let now = state.clock.now();
    let longest = now - WINDOWS[2] * 86_400;
    let transitions = state.store.transitions(a.id, longest).await?;
    let before = state
        .store
        .health_before(a.id, longest)
        .await?
        .unwrap_or(Health::Unknown);
    let availability = windows(now, a.connected_at, before, &transitions)
        .into_iter()
        .map(|av| AvailabilityView {
            days: av.days,
            percent: av.percent.map(|p| (p * 100.0).round() / 100.0),
            since: av.since.map(rfc3339),
        })
        .collect();
    Ok(Json(Timeline {
        incidents: timeline::incidents(&transitions)
            .into_iter()
            .map(|i| IncidentView {
                start: rfc3339(i.start),
                end: i.end.map(rfc3339),
                cause: i.cause,
            })
            .collect(),
        transitions: transitions
            .into_iter()
            .map(|t| TransitionView {
                at: rfc3339(t.at),
                from: t.from_health,
                to: t.to_health,
                needs_person: t.needs_person,
                reason: t.reason,
            })
            .collect(),
        availability,
    }))
}
