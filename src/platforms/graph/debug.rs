//! Reading a `debug_token` answer: validity, expiry, permissions, whose token it is and which
//! Pages each permission was granted for.

use serde_json::Value;

use super::{GraphError, as_i64, as_id, invalid_reason, other_app, other_app_detail};
use crate::domain::{Platform, UnixTime};
use crate::platforms::{
    CheckOutcome, Expiry, InvalidReason, Transient, TransientKind, ValidToken, clamp_timestamp, scope_list,
};

/// Reads a `debug_token` answer. `app_id`: the configured app; a token of another app is
/// [`CheckOutcome::OtherApp`].
pub fn parse_debug_token(p: Platform, v: &Value, now: UnixTime, app_id: Option<&str>) -> CheckOutcome {
    let malformed = |what: &str| {
        CheckOutcome::Transient(Transient::new(
            TransientKind::Malformed,
            format!("{} debug_token answer {what}", p.display_name()),
        ))
    };
    let Some(data) = v.get("data").filter(|d| d.is_object()) else {
        return malformed("has no data object");
    };
    let Some(is_valid) = data.get("is_valid").and_then(Value::as_bool) else {
        return malformed("has no is_valid");
    };
    let expires_at = data.get("expires_at").and_then(as_i64).map(clamp_timestamp);
    let token_app = data.get("app_id").and_then(as_id);
    if let (Some(theirs), Some(ours)) = (&token_app, app_id)
        && theirs != ours
    {
        return CheckOutcome::OtherApp(format!(
            "the token was issued to Meta app {theirs}, not to the configured app {ours}"
        ));
    }
    if !is_valid {
        if let Some(e) = data.get("error").and_then(GraphError::from_value) {
            if other_app(&e) {
                return CheckOutcome::OtherApp(other_app_detail(p));
            }
            let reason = match e.code {
                190 | 102 => invalid_reason(e.subcode),
                _ => InvalidReason::Invalid,
            };
            let reason = if reason == InvalidReason::Invalid && expires_at.is_some_and(|t| t > 0 && t <= now) {
                InvalidReason::Expired
            } else {
                reason
            };
            return CheckOutcome::Invalid {
                reason,
                detail: e.describe(p),
            };
        }
        let reason = if expires_at.is_some_and(|t| t > 0 && t <= now) {
            InvalidReason::Expired
        } else {
            InvalidReason::Invalid
        };
        return CheckOutcome::Invalid {
            reason,
            detail: format!("{} reports the token as not valid", p.display_name()),
        };
    }
    let permissions = data.get("scopes").and_then(scope_list).unwrap_or_default();
    let user_id = data.get("user_id").and_then(as_id);
    // A Page token names the Page in profile_id and the person who granted it in user_id;
    // a user token names that person in user_id.
    let owner_id = match data.get("type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("PAGE") => data.get("profile_id").and_then(as_id),
        Some(t) if t.eq_ignore_ascii_case("USER") => user_id.clone(),
        _ => None,
    };
    CheckOutcome::Valid(ValidToken {
        expires: expires_at.map(|t| if t == 0 { Expiry::Never } else { Expiry::At(t) }),
        data_access_expires_at: data
            .get("data_access_expires_at")
            .and_then(as_i64)
            .map(clamp_timestamp)
            .filter(|t| *t > 0),
        permissions: Some(permissions),
        user_id,
        owner_id,
        username: None,
        instagram_login: None,
        scope_targets: data
            .get("granular_scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| {
                let scope = g.get("scope")?.as_str()?.to_owned();
                let ids = g.get("target_ids")?.as_array()?.iter().filter_map(as_id).collect();
                Some((scope, ids))
            })
            .collect(),
        other_ids: Vec::new(),
    })
}
