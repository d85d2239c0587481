//! Liveness and readiness, shared between a role and its admin server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A named readiness flag.
type Part = (&'static str, Arc<AtomicBool>);

/// Readiness of a role: it serves `/readyz` 200 only while every named part
/// has declared itself ready and shutdown has not begun.
#[derive(Debug, Clone, Default)]
pub struct Health {
    parts: Arc<std::sync::Mutex<Vec<Part>>>,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// Registers a part, not ready yet; returns its flag.
    pub fn part(&self, name: &'static str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.parts.lock().expect("health lock").push((name, flag.clone()));
        flag
    }

    /// Turns readiness off for good (first step of shutdown).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else the names of the parts that are not.
    pub fn check(&self) -> Result<(), Vec<&'static str>> {
        let mut missing: Vec<&'static str> = self
            .parts
            .lock()
            .expect("health lock")
            .iter()
            .filter(|(_, f)| !f.load(Ordering::SeqCst))
            .map(|(n, _)| *n)
            .collect();
        if self.draining.load(Ordering::SeqCst) {
            missing.push("shutting-down");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_part_is() {
        let h = Health::default();
        let a = h.part("kafka");
        let b = h.part("clickhouse");
        assert_eq!(h.check(), Err(vec!["kafka", "clickhouse"]));
        a.store(true, Ordering::SeqCst);
        b.store(true, Ordering::SeqCst);
        assert_eq!(h.check(), Ok(()));
        h.drain();
        assert_eq!(h.check(), Err(vec!["shutting-down"]));
    }
}
