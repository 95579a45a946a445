//! What changed since the workflow's last complete run: the entities (databases, schemas,
//! tables, views) added and removed, reported in the manifest so that a catalog can mark
//! removals — and only removals that cannot be wrong.
//!
//! A run compares against the last *complete* run (a failed or cancelled run records nothing),
//! and reports no removal at all when the comparison cannot be trusted: the filters or the
//! plugin changed since, the run itself dropped entities by a limit (a partial run), or more
//! than `changes.max_removed_share` of the last run's entities would go (the fail-safe). Below
//! an object the plugin marked `unreadable` nothing is removed either.

use std::collections::BTreeMap;

use crate::pipeline::filter::parse_qualified_name;
pub use crate::pipeline::manifest::{Changed, Changes};
use crate::pipeline::Entities;
use crate::state::PublishedSet;

/// Names listed per direction; the rest are counted.
const MAX_LISTED: usize = 10_000;

/// What this run published, as the next run will compare with it.
pub fn snapshot(
    run_id: &str,
    plugin_sha256: &str,
    filter_digest: &str,
    entities: &Entities,
) -> PublishedSet {
    PublishedSet {
        run_id: run_id.to_string(),
        plugin_sha256: plugin_sha256.to_string(),
        filter_digest: filter_digest.to_string(),
        names: entities
            .names
            .iter()
            .map(|(n, k)| (n.clone(), k.as_str().to_string()))
            .collect(),
    }
}

/// Compares `current` with `previous`. `partial` says why this run is not whole (entities it
/// dropped by a limit), `max_share` is the fail-safe. Returns the changes and what the next
/// run is to compare with once this one is published: this run's entities plus those kept
/// under an unreadable object; after a changed plugin or filters the new baseline; and
/// `None` (keep the last one) when the run is partial or the fail-safe held removals back, so
/// that what it could not confirm is still compared with next time.
pub fn compare(
    previous: Option<&PublishedSet>,
    current: &PublishedSet,
    unreadable: &[Vec<String>],
    partial: Option<String>,
    max_share: f64,
) -> (Changes, Option<PublishedSet>) {
    let Some(previous) = previous else {
        let changes = Changes {
            added_count: current.names.len() as u64,
            removals_suppressed: Some(
                "no complete run of this workflow to compare with: this run is the baseline".into(),
            ),
            ..Changes::default()
        };
        return (changes, Some(current.clone()));
    };
    let listed = |names: &mut dyn Iterator<Item = (&String, &String)>| {
        let mut list = Vec::new();
        let mut count = 0u64;
        for (name, kind) in names {
            count += 1;
            if list.len() < MAX_LISTED {
                list.push(Changed {
                    kind: kind.clone(),
                    name: name.clone(),
                });
            }
        }
        (list, count)
    };
    let (added, added_count) = listed(
        &mut current
            .names
            .iter()
            .filter(|(n, _)| !previous.names.contains_key(*n)),
    );
    let mut kept: BTreeMap<&String, &String> = BTreeMap::new();
    let gone: BTreeMap<&String, &String> = previous
        .names
        .iter()
        .filter(|(n, _)| !current.names.contains_key(*n))
        .filter(|(n, k)| {
            let under = parse_qualified_name(n).is_ok_and(|path| {
                unreadable
                    .iter()
                    .any(|u| path.len() > u.len() && path.starts_with(u))
            });
            if under {
                kept.insert(n, k);
            }
            !under
        })
        .collect();
    let kept_under_unreadable = kept.len() as u64;
    let mut next = current.clone();
    next.names
        .extend(kept.iter().map(|(n, k)| ((*n).clone(), (*k).clone())));
    let mut keep_last = false;
    let suppressed = if previous.filter_digest != current.filter_digest {
        Some(format!(
            "the filters changed since run {}: what is missing may only be filtered out",
            previous.run_id
        ))
    } else if previous.plugin_sha256 != current.plugin_sha256 {
        Some(format!(
            "the plugin changed since run {}: what is missing may only be read differently",
            previous.run_id
        ))
    } else if let Some(why) = partial {
        keep_last = true;
        Some(format!("this run is partial: {why}"))
    } else if !previous.names.is_empty()
        && gone.len() as f64 > max_share * previous.names.len() as f64
    {
        keep_last = true;
        Some(format!(
            "{} of the {} entities of run {} would be removed, more than \
             changes.max_removed_share = {max_share}: a source that lost that much is more \
             likely misread than emptied",
            gone.len(),
            previous.names.len(),
            previous.run_id
        ))
    } else {
        None
    };
    let (removed, removed_count) = if suppressed.is_some() {
        (Vec::new(), 0)
    } else {
        listed(&mut gone.into_iter())
    };
    let changes = Changes {
        compared_with: Some(previous.run_id.clone()),
        added,
        added_count,
        removed,
        removed_count,
        removals_suppressed: suppressed,
        kept_under_unreadable,
    };
    (changes, (!keep_last).then_some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(run: &str, names: &[&str]) -> PublishedSet {
        PublishedSet {
            run_id: run.into(),
            plugin_sha256: "p".into(),
            filter_digest: "f".into(),
            names: names
                .iter()
                .map(|n| (n.to_string(), "table".to_string()))
                .collect(),
        }
    }

    #[test]
    fn removals_are_reported_only_when_they_cannot_be_wrong() {
        let names: Vec<String> = (0..10).map(|i| format!("db.s.t{i}")).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let last = set("r1", &all);
        // One of ten gone: removed.
        let (c, next) = compare(Some(&last), &set("r2", &all[1..]), &[], None, 0.2);
        assert_eq!(c.removed_count, 1);
        assert_eq!(next.unwrap().names.len(), 9);
        assert_eq!(c.removed[0].name, "db.s.t0");
        assert_eq!(c.compared_with.as_deref(), Some("r1"));
        // Three of ten gone: more than 20 %, suppressed.
        let (c, next) = compare(Some(&last), &set("r2", &all[3..]), &[], None, 0.2);
        assert_eq!(c.removed_count, 0);
        assert!(c.removals_suppressed.unwrap().contains("max_removed_share"));
        assert!(
            next.is_none(),
            "the last run stays what the next compares with"
        );
        // Under an unreadable schema: kept.
        let (c, next) = compare(
            Some(&last),
            &set("r2", &all[1..]),
            &[vec!["db".into(), "s".into()]],
            None,
            0.2,
        );
        assert_eq!((c.removed_count, c.kept_under_unreadable), (0, 1));
        assert!(c.removals_suppressed.is_none());
        assert!(
            next.unwrap().names.contains_key("db.s.t0"),
            "kept for next time"
        );
        // A partial run, changed filters, a changed plugin: suppressed.
        let (c, next) = compare(
            Some(&last),
            &set("r2", &all[1..]),
            &[],
            Some("x".into()),
            0.2,
        );
        assert!(c.removals_suppressed.unwrap().contains("partial"));
        assert!(next.is_none());
        let mut other = set("r2", &all[1..]);
        other.filter_digest = "g".into();
        let (c, next) = compare(Some(&last), &other, &[], None, 0.2);
        assert!(c.removals_suppressed.unwrap().contains("filters changed"));
        assert_eq!(next.unwrap().filter_digest, "g", "a new baseline");
        other.filter_digest = "f".into();
        other.plugin_sha256 = "q".into();
        assert!(compare(Some(&last), &other, &[], None, 0.2)
            .0
            .removals_suppressed
            .unwrap()
            .contains("plugin changed"));
        // No last run: the baseline.
        let (c, next) = compare(None, &last, &[], None, 0.2);
        assert_eq!((c.added_count, c.removed_count), (10, 0));
        assert_eq!(next, Some(last.clone()));
        assert!(c.compared_with.is_none());
    }
}
