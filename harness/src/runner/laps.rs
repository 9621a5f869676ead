//! A trial's clock: wall time charged to named phases (state, boot or
//! restore, drivers, plan, setup, reattach, mount, steps, layout, kernel
//! log, stop), summed by name in first-seen order. Explore's sequences keep
//! theirs the same way (start, step, observe, judge, stop).

use std::time::{Duration, Instant};

use super::result::Phases;

pub struct Laps {
    last: Instant,
    laps: Phases,
}

impl Default for Laps {
    fn default() -> Laps {
        Laps {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }
}

impl Laps {
    /// Charges the time since the last lap to `name`.
    pub fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        let elapsed = now - self.last;
        self.last = now;
        match self.laps.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += elapsed,
            None => self.laps.push((name.into(), elapsed)),
        }
    }

    /// `timing.txt` of the evidence folder: one line per phase, then the total.
    pub fn render(&self) -> String {
        let total: Duration = self.laps.iter().map(|(_, d)| *d).sum();
        let mut s = String::new();
        for (name, d) in &self.laps {
            s.push_str(&format!("{name:<12} {:>8.3} s\n", d.as_secs_f64()));
        }
        s.push_str(&format!("{:<12} {:>8.3} s\n", "total", total.as_secs_f64()));
        s
    }

    pub fn into_phases(self) -> Phases {
        self.laps
    }
}

/// Adds `more` to `total`, phase by phase (first-seen order kept).
pub fn add(total: &mut Phases, more: &Phases) {
    for (name, d) in more {
        match total.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += *d,
            None => total.push((name.clone(), *d)),
        }
    }
}
