//! Grouping a batch's events by project, in order of first sight.

use std::collections::HashMap;

/// Below this many groups a linear search over them is used: for the tens
/// of projects a compute node reports at once it beats hashing the id
/// (hashing was 9 % slower for 16 projects per batch, BENCHMARKS.md). A
/// collector's batch covers thousands of projects, where a linear search is
/// quadratic (it was 43 % of ingest's CPU at 2,000 projects per batch).
const LINEAR: usize = 32;

/// Finds the group of an id among groups kept in a `Vec` (each group knows
/// its id), with a hash index once there are more than a few.
/// The index is keyed by `K`: an owned `String`, or a `&str` where the
/// ids outlive the grouping (ingest's reader borrows them from the
/// request's bytes, so its index allocates nothing per project).
#[derive(Debug, Default)]
pub struct Groups<K = String> {
    /// `FastHash`: SipHash and the index's regrowth were 14 % of ingest's
    /// CPU in the collectors' shape (BENCHMARKS.md, 2026-12-03).
    index: HashMap<K, usize, crate::FastHash>,
    /// How many items will be grouped at most: the index's size when built.
    expected: usize,
}

impl<K: std::borrow::Borrow<str> + std::hash::Hash + Eq> Groups<K> {
    /// Groups for at most `items` items (the index is built at that size).
    pub fn for_items(items: usize) -> Self {
        Groups { index: HashMap::default(), expected: items }
    }

    /// The position of `id`'s group in `groups`, if it has one.
    pub fn find<T>(&self, groups: &[T], id_of: impl Fn(&T) -> &str, id: &str) -> Option<usize> {
        if groups.len() <= LINEAR {
            groups.iter().position(|g| id_of(g) == id)
        } else {
            self.index.get(id).copied()
        }
    }

    /// Records that a group was pushed at the end of `groups`; `key_of`
    /// gives a group's id as the index keeps it.
    pub fn pushed<T>(&mut self, groups: &[T], key_of: impl Fn(&T) -> K) {
        match groups.len() {
            n if n <= LINEAR => {}
            n if n == LINEAR + 1 => {
                let mut index = HashMap::with_capacity_and_hasher(self.expected.max(n), Default::default());
                index.extend(groups.iter().enumerate().map(|(i, g)| (key_of(g), i)));
                self.index = index;
            }
            n => {
                self.index.insert(key_of(&groups[n - 1]), n - 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_group_below_and_above_the_linear_limit() {
        let mut groups: Vec<String> = Vec::new();
        let mut g = Groups::for_items(2 * LINEAR);
        for i in 0..(3 * LINEAR) {
            let id = format!("p{i}");
            assert_eq!(g.find(&groups, |s| s.as_str(), &id), None, "{id} before it was pushed");
            groups.push(id);
            g.pushed(&groups, |s| s.clone());
            for (j, known) in groups.iter().enumerate() {
                assert_eq!(g.find(&groups, |s| s.as_str(), known), Some(j), "{known} with {} groups", groups.len());
            }
        }
    }
}
