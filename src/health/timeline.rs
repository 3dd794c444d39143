//! An account's health over time, from its transitions: the incidents (spans during which it
//! was unhealthy or needed a person) and its availability over a window (the share of the
//! time its health was known that it was healthy or a warning). Pure: the store reads the
//! transitions, the API and the status page show the results.

use crate::domain::{Health, UnixTime};

/// One change of an account's health.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Transition {
    /// When the check that caused it ran.
    pub at: UnixTime,
    /// The health before.
    pub from_health: Health,
    /// The health after.
    pub to_health: Health,
    /// Whether a person must act (reconnect) after it.
    pub needs_person: bool,
    /// What caused it: the assessment's first recommendation, or its error.
    pub reason: String,
}

impl Transition {
    /// Whether the state it leads to is an incident's.
    fn bad(&self) -> bool {
        self.to_health == Health::Unhealthy || self.needs_person
    }
}

/// A span during which the account was unhealthy or needed a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// When it began.
    pub start: UnixTime,
    /// When it ended; `None` while it lasts.
    pub end: Option<UnixTime>,
    /// What began it.
    pub cause: String,
}

/// The incidents among `transitions` (oldest first). A change to `unknown` neither begins
/// nor ends one: it says nothing of the account.
pub fn incidents(transitions: &[Transition]) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    for t in transitions {
        let open = out.last().is_some_and(|i| i.end.is_none());
        if t.to_health == Health::Unknown {
            continue;
        }
        match (open, t.bad()) {
            (false, true) => out.push(Incident {
                start: t.at,
                end: None,
                cause: t.reason.clone(),
            }),
            (true, false) => {
                if let Some(i) = out.last_mut() {
                    i.end = Some(t.at);
                }
            }
            _ => {}
        }
    }
    out
}

/// The availability of an account over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    /// The window, in days.
    pub days: i64,
    /// Percent of the known time that was healthy or a warning; `None` when no time in the
    /// window is known (never an invented 100 %).
    pub percent: Option<f64>,
    /// When the account is younger than the window: the figure covers only the time since
    /// it was connected.
    pub since: Option<UnixTime>,
}

/// The availability over the `days` before `now` of an account connected at `connected_at`
/// whose health was `before` when the window began (the `to_health` of its last transition
/// before; `unknown` when none) and that changed as `transitions` say (oldest first; those
/// outside the window are skipped). Time in `unknown` counts neither way.
pub fn availability(
    days: i64,
    now: UnixTime,
    connected_at: UnixTime,
    before: Health,
    transitions: &[Transition],
) -> Availability {
    let window_start = now - days * 86_400;
    let start = window_start.max(connected_at);
    let since = (connected_at > window_start).then_some(connected_at);
    let (mut state, mut at) = (before, start);
    let (mut available, mut known) = (0i64, 0i64);
    let mut add = |state: Health, from: UnixTime, to: UnixTime| {
        let d = (to - from).max(0);
        if state != Health::Unknown {
            known += d;
            if matches!(state, Health::Healthy | Health::Warning) {
                available += d;
            }
        }
    };
    for t in transitions.iter().filter(|t| t.at > start && t.at <= now) {
        add(state, at, t.at);
        state = t.to_health;
        at = t.at;
    }
    add(state, at, now);
    Availability {
        days,
        percent: (known > 0).then(|| available as f64 * 100.0 / known as f64),
        since,
    }
}

/// One UTC day's cell on a status bar: the worst state the account was in that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Day {
    /// Before the account was connected.
    Before,
    /// Connected, but no answer from its platform all day (`unknown`).
    NoData,
    /// Healthy all the time its health was known.
    Healthy,
    /// A warning at some point, never worse.
    Warning,
    /// Unhealthy, or needing a person, at some point: an incident.
    Incident,
}

impl Day {
    /// The cell's state in a word.
    pub fn word(self) -> &'static str {
        match self {
            Day::Before => "not connected yet",
            Day::NoData => "no answer",
            Day::Healthy => "healthy",
            Day::Warning => "warning",
            Day::Incident => "incident",
        }
    }
}

/// What a health (and whether a person must act) counts as on a bar.
pub fn day_of(health: Health, needs_person: bool) -> Day {
    match (health, needs_person) {
        (Health::Unhealthy, _) | (_, true) => Day::Incident,
        (Health::Warning, _) => Day::Warning,
        (Health::Healthy, _) => Day::Healthy,
        (Health::Unknown, _) => Day::NoData,
    }
}

/// The cells of the `days` UTC days that end with today (oldest first) for an account
/// connected at `connected_at` that was in `start` when the window began, changed as
/// `transitions` say (oldest first) and is in `current` now. Each is the worst state of its
/// day; `unknown` shows only on a day with nothing else.
pub fn daily(
    days: usize,
    now: UnixTime,
    connected_at: UnixTime,
    start: Day,
    transitions: &[Transition],
    current: Day,
) -> Vec<Day> {
    const DAY: i64 = 86_400;
    let first = now.div_euclid(DAY) * DAY - (days as i64 - 1) * DAY;
    let (mut state, mut next) = (start, 0);
    let mut out = Vec::with_capacity(days);
    for d in 0..days {
        let (s, e) = (first + d as i64 * DAY, (first + (d as i64 + 1) * DAY).min(now + 1));
        while next < transitions.len() && transitions[next].at <= s {
            state = day_of(transitions[next].to_health, transitions[next].needs_person);
            next += 1;
        }
        if e <= connected_at {
            out.push(Day::Before);
            continue;
        }
        let mut worst = state;
        while next < transitions.len() && transitions[next].at < e {
            state = day_of(transitions[next].to_health, transitions[next].needs_person);
            worst = worst.max(state);
            next += 1;
        }
        if d + 1 == days {
            worst = worst.max(current);
        }
        out.push(worst);
    }
    out
}

/// The spans of one state, from `from` to `now`, for a band: `(start, end, state)`.
pub fn spans(from: UnixTime, now: UnixTime, start: Day, transitions: &[Transition]) -> Vec<(UnixTime, UnixTime, Day)> {
    let (mut state, mut at) = (start, from);
    let mut out = Vec::new();
    for t in transitions.iter().filter(|t| t.at > from && t.at <= now) {
        let next = day_of(t.to_health, t.needs_person);
        if next != state {
            out.push((at, t.at, state));
            (state, at) = (next, t.at);
        }
    }
    out.push((at, now, state));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn t(at: i64, from: Health, to: Health) -> Transition {
        Transition {
            at,
            from_health: from,
            to_health: to,
            needs_person: to == Health::Unhealthy,
            reason: format!("to {to}"),
        }
    }

    #[test]
    fn availability_counts_known_time_and_says_since_when_for_a_young_account() {
        use Health::*;
        let now = 100 * DAY;
        // Healthy for the whole 7 days before now, with a day unhealthy in the middle.
        let ts = [
            t(now - 5 * DAY, Healthy, Unhealthy),
            t(now - 4 * DAY, Unhealthy, Warning),
        ];
        let a = availability(7, now, 0, Healthy, &ts);
        assert_eq!((a.percent, a.since), (Some(600.0 / 7.0), None));
        // Connected 2 days ago: unknown for an hour, then healthy; half a day unhealthy.
        let c = now - 2 * DAY;
        let ts = [
            t(c + 3_600, Unknown, Healthy),
            t(now - DAY, Healthy, Unhealthy),
            t(now - DAY / 2, Unhealthy, Healthy),
        ];
        let a = availability(30, now, c, Unknown, &ts);
        let known = (2 * DAY - 3_600) as f64;
        assert_eq!(a.since, Some(c));
        assert!((a.percent.unwrap() - (known - (DAY / 2) as f64) * 100.0 / known).abs() < 1e-9);
        // Never answered: no figure at all.
        assert_eq!(availability(7, now, c, Unknown, &[]).percent, None);
        // Transitions before the window only set the state it starts in.
        let a = availability(7, now, 0, Unhealthy, &[t(now - 30 * DAY, Healthy, Unhealthy)]);
        assert_eq!(a.percent, Some(0.0));
    }

    #[test]
    fn incidents_span_unhealthy_or_needing_a_person_and_unknown_changes_nothing() {
        use Health::*;
        let ts = [
            t(10, Unknown, Healthy),
            t(20, Healthy, Unhealthy),
            t(25, Unhealthy, Unknown),
            t(30, Unknown, Unhealthy),
            t(40, Unhealthy, Healthy),
            t(50, Healthy, Warning),
            t(60, Warning, Unhealthy),
        ];
        let i = incidents(&ts);
        assert_eq!(i.len(), 2, "{i:?}");
        assert_eq!(
            (i[0].start, i[0].end, i[0].cause.as_str()),
            (20, Some(40), "to unhealthy")
        );
        assert_eq!((i[1].start, i[1].end), (60, None));
    }

    #[test]
    fn daily_cells_show_each_days_worst_and_nothing_before_the_connection() {
        use Health::*;
        // Now: noon of day 100. Connected at noon of day 97.
        let now = 100 * DAY + DAY / 2;
        let c = 97 * DAY + DAY / 2;
        let ts = [
            t(c + 60, Unknown, Healthy),
            t(98 * DAY + 100, Healthy, Warning),
            t(98 * DAY + 200, Warning, Healthy),
            t(99 * DAY + 100, Healthy, Unhealthy),
            t(100 * DAY - 10, Unhealthy, Healthy),
        ];
        let d = daily(5, now, c, Day::NoData, &ts, Day::Healthy);
        assert_eq!(
            d,
            [Day::Before, Day::Healthy, Day::Warning, Day::Incident, Day::Healthy],
            "{d:?}"
        );
        assert_eq!(daily(90, now, c, Day::NoData, &ts, Day::Healthy).len(), 90);
        // The current state counts today even without a change.
        let d = daily(2, now, 0, Day::Healthy, &[], Day::Warning);
        assert_eq!(d, [Day::Healthy, Day::Warning]);
        // A day of no answer but a known state beside it shows the known state.
        let ts = [t(99 * DAY + 50, Healthy, Unknown)];
        assert_eq!(
            daily(2, now, 0, Day::Healthy, &ts, Day::NoData),
            [Day::Healthy, Day::NoData]
        );
        // Spans merge changes that keep the same cell state.
        let ts = [
            t(10, Unknown, Healthy),
            t(20, Healthy, Healthy),
            t(30, Healthy, Unhealthy),
        ];
        assert_eq!(
            spans(0, 40, Day::NoData, &ts),
            [(0, 10, Day::NoData), (10, 30, Day::Healthy), (30, 40, Day::Incident)]
        );
    }
}
