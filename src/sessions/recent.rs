//! The ends the registry recently ordered, so that a login under way when
//! one was ordered does not outlive it: a password revoked, a user
//! disabled or a logout signalled between the credential check and the
//! session's registration still ends that session, at once.
//!
//! A [`Mark`] is taken when an attempt begins; the registration looks at
//! the ends ordered after it. The log keeps the last [`KEPT`] ends (an
//! attempt lasts seconds; hundreds of ends within one are not expected).

use super::{Reason, Selector};
use std::collections::VecDeque;

/// How many recent ends are kept.
pub const KEPT: usize = 256;

/// A point in the sequence of ends: the attempt began after the ends up to
/// this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

/// The recent ends, numbered.
#[derive(Default)]
pub struct Recent {
    last: u64,
    ends: VecDeque<(u64, Selector, Reason)>,
}

impl Recent {
    pub fn mark(&self) -> Mark {
        Mark(self.last)
    }

    /// Records an end that new sessions can match (an end of one session
    /// by id names no future session).
    pub fn record(&mut self, selector: &Selector, reason: Reason) {
        if matches!(selector, Selector::Id(_)) {
            return;
        }
        self.last += 1;
        if self.ends.len() == KEPT {
            self.ends.pop_front();
        }
        self.ends.push_back((self.last, selector.clone(), reason));
    }

    /// The first end ordered after `since` that `matches` names.
    pub fn after(&self, since: Mark, matches: impl Fn(&Selector) -> bool) -> Option<Reason> {
        self.ends
            .iter()
            .filter(|(n, ..)| *n > since.0)
            .find(|(_, s, _)| matches(s))
            .map(|(_, _, reason)| *reason)
    }
}
