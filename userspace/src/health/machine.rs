//! One element's check state, with no I/O: results and a clock in, health and the next wake-up
//! out (the runner in [`super::runner`] does the probing).
//!
//! - `fall` failures in a row take an up element down; `rise` successes in a row bring a down
//!   one back. A result that agrees with the current state resets the other count.
//! - Checks run every `interval`, and every `fast_interval` while the element is failing: down,
//!   or up with at least one failure since its last success (HAProxy's `fastinter`), so a
//!   failure is confirmed, and a recovery seen, sooner.
//! - An element that comes back ramps its weight from 1 % to 100 % over `slow_start` (when it
//!   is not zero); an element that was never down starts at full weight.

use std::time::{Duration, Instant};

use crate::state::Health;

/// A check's timing and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub rise: u32,
    pub fall: u32,
    pub slow_start: Duration,
}

/// A change of state that a result caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `fall` failures in a row.
    Down,
    /// `rise` successes in a row.
    Up,
}

/// The slow-start ramp moves in steps of this many percent (20 table rebuilds at most).
const RAMP_STEP_PERCENT: u32 = 5;

#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
    next_due: Instant,
    in_flight: bool,
    /// When it last came back up (for the slow-start ramp).
    up_since: Option<Instant>,
}

impl Machine {
    /// A machine whose first check is due at `first` (the runner spreads these over the
    /// interval so that checks of many elements do not all go out at once).
    pub fn new(params: Params, up: bool, first: Instant) -> Machine {
        Machine {
            params,
            up,
            streak: 0,
            next_due: first,
            in_flight: false,
            up_since: None,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Results in a row against the current state (failures while up, successes while down).
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Is a check due (and none running)?
    pub fn due(&self, now: Instant) -> bool {
        !self.in_flight && now >= self.next_due
    }

    /// A check was sent.
    pub fn started(&mut self) {
        self.in_flight = true;
    }

    /// The check sent last came back: `ok` or not.
    pub fn result(&mut self, now: Instant, ok: bool) -> Option<Transition> {
        self.in_flight = false;
        let mut transition = None;
        if ok == self.up {
            self.streak = 0;
        } else {
            self.streak += 1;
            if self.up && self.streak >= self.params.fall {
                self.up = false;
                self.streak = 0;
                self.up_since = None;
                transition = Some(Transition::Down);
            } else if !self.up && self.streak >= self.params.rise {
                self.up = true;
                self.streak = 0;
                self.up_since = (!self.params.slow_start.is_zero()).then_some(now);
                transition = Some(Transition::Up);
            }
        }
        let failing = !self.up || self.streak > 0;
        self.next_due = now
            + if failing {
                self.params.fast_interval
            } else {
                self.params.interval
            };
        transition
    }

    /// The element's health at `now`: down, up, or ramping (in steps of 5 %).
    pub fn health(&self, now: Instant) -> Health {
        if !self.up {
            return Health::Down;
        }
        match self.ramp_percent(now) {
            Some(p) => Health::SlowStart(p),
            None => Health::Up,
        }
    }

    fn ramp_percent(&self, now: Instant) -> Option<u8> {
        let since = self.up_since?;
        let total = self.params.slow_start;
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= total {
            return None;
        }
        let p = (elapsed.as_secs_f64() / total.as_secs_f64() * 100.0) as u32;
        let p = (p / RAMP_STEP_PERCENT * RAMP_STEP_PERCENT).max(1);
        Some(p.min(99) as u8)
    }

    /// When the machine next needs the runner: its next check, or the next ramp step.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        let check = (!self.in_flight).then_some(self.next_due);
        let ramp = self.up_since.and_then(|since| {
            let total = self.params.slow_start;
            if now.saturating_duration_since(since) >= total {
                return None;
            }
            let step = total / (100 / RAMP_STEP_PERCENT);
            let done = now.saturating_duration_since(since).as_nanos() / step.as_nanos().max(1);
            Some(since + step * (done as u32 + 1)).map(|t| t.min(since + total))
        });
        match (check, ramp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn params(slow_start: Duration) -> Params {
        Params {
            interval: 1000 * MS,
            fast_interval: 200 * MS,
            rise: 2,
            fall: 3,
            slow_start,
        }
    }

    /// Runs checks whenever due, with the results of `ok` by check number; returns the times
    /// at which checks went out and the transitions with their times.
    fn drive(
        m: &mut Machine,
        t0: Instant,
        until: Duration,
        ok: impl Fn(usize) -> bool,
    ) -> (Vec<Duration>, Vec<(Duration, Transition)>) {
        let (mut sent, mut trans) = (Vec::new(), Vec::new());
        let mut now = t0;
        while now < t0 + until {
            if m.due(now) {
                m.started();
                let n = sent.len();
                sent.push(now - t0);
                if let Some(t) = m.result(now, ok(n)) {
                    trans.push((now - t0, t));
                }
            }
            now = m.next_wakeup(now).expect("a next check");
        }
        (sent, trans)
    }

    #[test]
    fn fall_failures_take_it_down_and_rise_successes_bring_it_back() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(Duration::ZERO), true, t0);
        // Checks 0..=1 pass, 2..=6 fail, then pass.
        let (sent, trans) = drive(&mut m, t0, 4000 * MS, |n| !(2..=6).contains(&n));
        assert_eq!(
            trans,
            vec![(2400 * MS, Transition::Down), (3200 * MS, Transition::Up)]
        );
        // Every second while healthy, every 200 ms from the first failure until it is up
        // again and passing.
        assert_eq!(
            &sent[..9],
            &[0, 1000, 2000, 2200, 2400, 2600, 2800, 3000, 3200].map(|ms| ms * MS)
        );
        assert_eq!(m.health(t0 + 4000 * MS), Health::Up);
        assert_eq!(sent.len(), 9);
    }

    #[test]
    fn a_single_failure_or_success_resets_the_other_count() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(Duration::ZERO), true, t0);
        // fail, fail, pass, fail, fail, pass: never three in a row.
        let pattern = [false, false, true, false, false, true, true];
        let (_, trans) = drive(&mut m, t0, 6000 * MS, |n| {
            pattern.get(n).copied().unwrap_or(true)
        });
        assert!(trans.is_empty(), "{trans:?}");
        assert!(m.is_up());
        // Down, then pass, fail, pass, pass: up only at the second success in a row.
        let mut m = Machine::new(params(Duration::ZERO), false, t0);
        let pattern = [true, false, true, true];
        let (sent, trans) = drive(&mut m, t0, 1000 * MS, |n| {
            pattern.get(n).copied().unwrap_or(true)
        });
        assert_eq!(trans, vec![(sent[3], Transition::Up)]);
    }

    #[test]
    fn no_check_goes_out_while_one_is_in_flight() {
        let t0 = Instant::now();
        let mut m = Machine::new(params(Duration::ZERO), true, t0);
        assert!(m.due(t0));
        m.started();
        assert!(!m.due(t0 + 5000 * MS));
        assert_eq!(m.next_wakeup(t0 + 5000 * MS), None);
        // A late result schedules the next check from its own time.
        m.result(t0 + 5000 * MS, true);
        assert_eq!(m.next_wakeup(t0 + 5000 * MS), Some(t0 + 6000 * MS));
    }

    #[test]
    fn slow_start_ramps_the_weight_after_a_recovery_only() {
        let t0 = Instant::now();
        let ramp = 10_000 * MS;
        let mut m = Machine::new(params(ramp), true, t0);
        assert_eq!(m.health(t0), Health::Up, "never down: full weight at once");
        for _ in 0..3 {
            m.started();
            m.result(t0, false);
        }
        assert_eq!(m.health(t0), Health::Down);
        m.started();
        m.result(t0, true);
        m.started();
        assert_eq!(m.result(t0, true), Some(Transition::Up));
        assert_eq!(m.health(t0), Health::SlowStart(1));
        assert_eq!(m.health(t0 + 2600 * MS), Health::SlowStart(25));
        assert_eq!(m.health(t0 + 9999 * MS), Health::SlowStart(95));
        assert_eq!(m.health(t0 + ramp), Health::Up);
        // The runner is woken for each 5 % step, then only for checks.
        assert_eq!(m.next_wakeup(t0 + 100 * MS), Some(t0 + 500 * MS));
        m.started();
        m.result(t0 + 9600 * MS, true);
        assert_eq!(m.next_wakeup(t0 + 9600 * MS), Some(t0 + ramp));
        assert_eq!(m.next_wakeup(t0 + ramp), Some(t0 + 10_600 * MS));
        // Down again during the ramp: the ramp is over.
        for _ in 0..3 {
            m.started();
            m.result(t0 + 3000 * MS, false);
        }
        assert_eq!(m.health(t0 + 3000 * MS), Health::Down);
    }
}
