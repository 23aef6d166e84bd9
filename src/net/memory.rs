//! The one memory budget of client connections (`[limits]
//! connection_memory_total`): SMTP and POP3 line buffers and in-memory DATA
//! spools all draw from it, so 20,000 connections cannot each hold a long
//! line or a message. A connection always has a small allowance of its own
//! (the caller's base), so idle sessions and short commands never wait on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Octets currently reserved by all holders.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One holder's share of the budget, returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    held: usize,
}

impl Reservation {
    pub fn new(budget: Arc<MemoryBudget>) -> Reservation {
        Reservation { budget, held: 0 }
    }

    pub fn held(&self) -> usize {
        self.held
    }

    /// Holds exactly `n` octets from now on; false (holding what it held)
    /// when the budget cannot give the difference.
    pub fn resize(&mut self, n: usize) -> bool {
        if n > self.held {
            if !self.budget.try_take(n - self.held) {
                return false;
            }
        } else {
            self.budget.give_back(self.held - n);
        }
        self.held = n;
        true
    }

    pub fn release(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.held));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_limit_and_give_back() {
        let b = MemoryBudget::new(100);
        let mut one = Reservation::new(b.clone());
        let mut two = Reservation::new(b.clone());
        assert!(one.resize(70));
        assert!(!two.resize(40));
        assert_eq!((two.held(), b.used()), (0, 70));
        assert!(one.resize(20));
        assert!(two.resize(80));
        assert!(!one.resize(21));
        assert_eq!(one.held(), 20);
        drop(two);
        assert_eq!(b.used(), 20);
        drop(one);
        assert_eq!(b.used(), 0);
    }
}
