//! The actuator's bookkeeping, without I/O: calls queued per project (one
//! project's calls in order, one at a time; different projects at once),
//! and per partition the offset up to which every call is done (what may
//! be committed).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// A queued call: where its record is, and the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued<T> {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) call: T,
}

/// The offset of a handed call: before every record's, and never one.
const HANDED: i64 = -1;

#[derive(Debug)]
pub(crate) struct Queue<T> {
    by_project: HashMap<String, VecDeque<Queued<T>>>,
    running: HashSet<String>,
    /// Per partition: offsets read and whether each is done.
    offsets: HashMap<i32, BTreeMap<i64, bool>>,
}

impl<T: Clone> Default for Queue<T> {
    fn default() -> Self {
        Queue { by_project: HashMap::new(), running: HashSet::new(), offsets: HashMap::new() }
    }
}

impl<T: Clone> Queue<T> {
    /// Forgets everything (a new assignment: calls are read again from the
    /// committed offsets; calls still running finish, their `done` ignored).
    pub(crate) fn clear(&mut self) {
        *self = Queue::default();
    }

    pub(crate) fn push(&mut self, project: &str, q: Queued<T>) {
        self.offsets.entry(q.partition).or_default().insert(q.offset, false);
        self.by_project.entry(project.to_owned()).or_default().push_back(q);
    }

    /// A call without a record (handed over in process): in order with its
    /// project's calls, first among the ready ones, no offset to commit.
    pub(crate) fn push_handed(&mut self, project: &str, partition: i32, call: T) {
        self.by_project.entry(project.to_owned()).or_default().push_back(Queued { partition, offset: HANDED, call });
    }

    /// Calls to start now: the head of each project's queue that has none
    /// running, up to `limit` running in all.
    pub(crate) fn start(&mut self, limit: usize) -> Vec<(String, Queued<T>)> {
        let mut out = Vec::new();
        let mut ready: Vec<&String> = self
            .by_project
            .iter()
            .filter(|(p, q)| !q.is_empty() && !self.running.contains(*p))
            .map(|(p, _)| p)
            .collect();
        ready.sort_by_key(|p| self.by_project[*p].front().map(|q| (q.partition, q.offset)));
        let free = limit.saturating_sub(self.running.len());
        let chosen: Vec<String> = ready.into_iter().take(free).cloned().collect();
        for p in chosen {
            let q = self.by_project.get_mut(&p).and_then(VecDeque::pop_front).expect("non-empty");
            self.running.insert(p.clone());
            out.push((p, q));
        }
        out
    }

    /// A call ended; returns the offsets to commit (partition, next offset
    /// to read) that moved.
    pub(crate) fn done(&mut self, project: &str, partition: i32, offset: i64) -> Option<(i32, i64)> {
        self.running.remove(project);
        if self.by_project.get(project).is_some_and(VecDeque::is_empty) {
            self.by_project.remove(project);
        }
        let offsets = self.offsets.get_mut(&partition)?;
        *offsets.get_mut(&offset)? = true;
        let mut commit = None;
        while let Some((&o, &true)) = offsets.first_key_value() {
            offsets.pop_first();
            commit = Some((partition, o + 1));
        }
        commit
    }

    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(partition: i32, offset: i64) -> Queued<&'static str> {
        Queued { partition, offset, call: "c" }
    }

    #[test]
    fn one_project_in_order_others_alongside() {
        let mut queue = Queue::default();
        queue.push("a", q(0, 10));
        queue.push("a", q(0, 11));
        queue.push("b", q(0, 12));
        let started = queue.start(10);
        let names: Vec<(&str, i64)> = started.iter().map(|(p, q)| (p.as_str(), q.offset)).collect();
        assert_eq!(names, [("a", 10), ("b", 12)], "a's second call waits for its first");
        assert!(queue.start(10).is_empty());
        assert_eq!(queue.done("b", 0, 12), None, "offset 10 is not done yet");
        assert_eq!(queue.done("a", 0, 10), Some((0, 11)));
        let next = queue.start(10);
        assert_eq!((next[0].0.as_str(), next[0].1.offset), ("a", 11));
        assert_eq!(queue.done("a", 0, 11), Some((0, 13)), "everything up to 12 is done");
    }

    #[test]
    fn a_blocked_project_does_not_hold_the_limit_for_others() {
        let mut queue = Queue::default();
        for (i, p) in ["x", "x", "x", "y", "z"].iter().enumerate() {
            queue.push(p, q(1, i as i64));
        }
        assert_eq!(queue.start(2).len(), 2);
        assert_eq!(queue.running(), 2);
        assert!(queue.start(2).is_empty(), "the limit");
        queue.done("x", 1, 0);
        let next: Vec<String> = queue.start(2).into_iter().map(|(p, _)| p).collect();
        assert_eq!(next.len(), 1);
    }

    #[test]
    fn a_handed_call_runs_in_its_projects_order_and_commits_nothing() {
        let mut queue = Queue::default();
        queue.push("a", q(0, 4));
        queue.push_handed("a", 0, "h");
        queue.push_handed("b", 0, "h");
        let started: Vec<(String, i64)> = queue.start(10).into_iter().map(|(p, q)| (p, q.offset)).collect();
        assert_eq!(started, [("b".to_owned(), HANDED), ("a".to_owned(), 4)], "a's handed call waits for its record's");
        assert_eq!(queue.done("b", 0, HANDED), None);
        assert_eq!(queue.done("a", 0, 4), Some((0, 5)));
        assert_eq!(queue.start(10)[0].1.offset, HANDED);
        assert_eq!(queue.done("a", 0, HANDED), None);
        assert_eq!(queue.running(), 0);
    }

    #[test]
    fn clearing_ignores_late_results() {
        let mut queue = Queue::default();
        queue.push("a", q(0, 5));
        queue.start(1);
        queue.clear();
        assert_eq!(queue.done("a", 0, 5), None);
        assert_eq!(queue.running(), 0);
    }
}
