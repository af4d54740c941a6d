//! Properties of the store's invariants under any order of events, on SQLite on disk: what a
//! destination is held to have only moves forward, however deliveries are recorded.

use super::conformance::{accept_and_process, attempt, delivery, pending_rows};
use super::*;
use crate::config::Strategy as Conflict;
use proptest::prelude::*;

/// Accepts one event per version (all about the entity `k`), then records each delivery as
/// done in `order`; answers the version held after each record.
fn held_after_each(versions: &[u64], order: &[usize]) -> Vec<Option<u64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let backend = Backend::sqlite(&store);
        let ids: Vec<String> = (0..versions.len()).map(|i| format!("e{i}")).collect();
        let events: Vec<(&str, Option<&str>)> =
            ids.iter().map(|id| (id.as_str(), Some("k"))).collect();
        accept_and_process(&backend, &events, |id| {
            let index: usize = id[1..].parse().unwrap();
            vec![delivery(
                id,
                Some("k"),
                Some(versions[index]),
                Conflict::Version,
            )]
        })
        .await;
        let rows = pending_rows(&backend).await;
        let entity = EntityRef {
            kind: OutboxKind::Deliver,
            target: "state-api".into(),
            key: "k".into(),
        };
        let mut held = Vec::new();
        for &i in order {
            // Rows a delivered version superseded are no longer pending; recording them done
            // anyway is what a late answer does.
            backend
                .outbox
                .record_attempt(attempt(&rows[i], Next::Delivered, 200))
                .await
                .unwrap();
            let state = backend.outbox.entity_state(entity.clone()).await.unwrap();
            held.push(state.and_then(|s| s.version));
        }
        store.close().await;
        held
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever versions arrive and in whatever order their deliveries are recorded, the
    /// version held never goes down, and ends at the highest one recorded.
    #[test]
    fn the_version_held_never_moves_backwards(
        (versions, order) in proptest::collection::vec(0u64..20, 1..8).prop_flat_map(|versions| {
            let n = versions.len();
            (Just(versions), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        let held = held_after_each(&versions, &order);
        let mut highest = None;
        for (step, &i) in order.iter().enumerate() {
            highest = highest.max(Some(versions[i]));
            prop_assert_eq!(held[step], highest, "after recording {:?} of {:?}", &order[..=step], versions);
        }
    }
}
