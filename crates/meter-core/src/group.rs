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
#[derive(Debug, Default)]
pub struct Groups {
    index: HashMap<String, usize>,
}

impl Groups {
    /// The position of `id`'s group in `groups`, if it has one.
    pub fn find<T>(&self, groups: &[T], id_of: impl Fn(&T) -> &str, id: &str) -> Option<usize> {
        if groups.len() <= LINEAR {
            groups.iter().position(|g| id_of(g) == id)
        } else {
            self.index.get(id).copied()
        }
    }

    /// Records that a group was pushed at the end of `groups`.
    pub fn pushed<T>(&mut self, groups: &[T], id_of: impl Fn(&T) -> &str) {
        match groups.len() {
            n if n <= LINEAR => {}
            n if n == LINEAR + 1 => {
                self.index = groups.iter().enumerate().map(|(i, g)| (id_of(g).to_owned(), i)).collect();
            }
            n => {
                self.index.insert(id_of(&groups[n - 1]).to_owned(), n - 1);
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
        let mut g = Groups::default();
        for i in 0..(3 * LINEAR) {
            let id = format!("p{i}");
            assert_eq!(g.find(&groups, |s| s.as_str(), &id), None, "{id} before it was pushed");
            groups.push(id);
            g.pushed(&groups, |s| s.as_str());
            for (j, known) in groups.iter().enumerate() {
                assert_eq!(g.find(&groups, |s| s.as_str(), known), Some(j), "{known} with {} groups", groups.len());
            }
        }
    }
}
