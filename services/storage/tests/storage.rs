//! The `storage` service on every dispatch path, its change log under `watch`, its
//! migrations, and its database file under faults.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::Path;

use alknet_runtime::config::StorageSettings;
use alknet_runtime::futures::StreamExt;
use alknet_runtime::testing::{collect, each_path};
use alknet_runtime::{Caller, Identity, OperationEnv, ResourceGrant, ResponseEnvelope, codes};
use alknet_storage::{SqliteStore, StorageProtocol, StorageService};
use serde_json::{Value, json};

/// The attribute limit of these tests: small, so its boundary is cheap to reach.
const MAX_ATTRIBUTES: usize = 1024;

fn settings() -> StorageSettings {
    StorageSettings {
        in_memory: true,
        max_attributes_bytes: NonZeroUsize::new(MAX_ATTRIBUTES),
        max_writes_per_apply: NonZeroUsize::new(16),
        ..StorageSettings::default()
    }
}

fn env_of(service: StorageService) -> OperationEnv {
    OperationEnv::builder()
        .local(StorageProtocol::local(service))
        .build()
        .unwrap()
}

fn as_caller(env: &OperationEnv, actions: &[&str]) -> OperationEnv {
    env.with_caller(
        Caller::new().identity(
            Identity::new("user:ops")
                .with_resources([ResourceGrant::new("graph", actions.iter().copied())]),
        ),
    )
}

fn output(envelope: &ResponseEnvelope) -> &Value {
    envelope
        .result
        .as_ref()
        .unwrap_or_else(|err| panic!("the call failed: {err:?}"))
}

fn error_code(envelope: &ResponseEnvelope) -> &str {
    &envelope
        .result
        .as_ref()
        .expect_err("the call succeeded")
        .code
}

fn message(envelope: &ResponseEnvelope) -> &str {
    &envelope
        .result
        .as_ref()
        .expect_err("the call succeeded")
        .message
}

/// A page's envelope with its cursor replaced by whether there is one: cursors are
/// authenticated with each database's own key, so they differ from path to path.
fn without_cursor(mut envelope: ResponseEnvelope) -> ResponseEnvelope {
    if let Ok(page) = &mut envelope.result
        && let Some(next) = page.get_mut("next")
    {
        *next = json!(next.is_string());
    }
    envelope
}

/// Attributes of exactly `bytes` bytes as JSON text.
fn attributes_of(bytes: usize) -> Value {
    // `{"pad":""}` is 10 bytes.
    json!({ "pad": "x".repeat(bytes - 10) })
}

#[tokio::test]
async fn graphs_nodes_and_edges_on_every_path() {
    let make = || StorageProtocol::local(StorageService::open(&settings()).unwrap());
    each_path::<StorageProtocol, _, _>(make, |env| async move {
        let mut seen = Vec::new();
        let writer = as_caller(&env, &["read", "write"]);
        let reader = as_caller(&env, &["read"]);
        let call = |env: &OperationEnv, op: &str, input: Value| {
            let env = env.clone();
            let op = op.to_string();
            async move { env.invoke("storage", &op, input).await }
        };

        // Access: a resource grant on `graph`, read or write.
        let anonymous = call(&env, "list_graphs", json!({})).await;
        assert_eq!(error_code(&anonymous), codes::UNAUTHENTICATED);
        let read_only = call(&reader, "create_graph", json!({"graph": "g"})).await;
        assert_eq!(error_code(&read_only), codes::FORBIDDEN);
        seen.extend([anonymous, read_only]);

        let made = call(&writer, "create_graph", json!({"graph": "g", "attributes": {"title": "people"}})).await;
        assert_eq!(output(&made)["revision"], 1);
        let again = call(&writer, "create_graph", json!({"graph": "g"})).await;
        assert_eq!(error_code(&again), "ALREADY_EXISTS");
        let missing = call(&reader, "get_graph", json!({"graph": "nope"})).await;
        assert_eq!(error_code(&missing), "GRAPH_NOT_FOUND");
        seen.extend([made, again, missing]);

        for (id, kind, age) in [("ada", "person", 36), ("alan", "person", 41), ("bob", "person", 36), ("lab", "place", 0)] {
            let node = call(&writer, "create_node", json!({"graph": "g", "id": id, "type": kind, "attributes": {"age": age, "name": id}})).await;
            assert_eq!(output(&node)["id"], id);
            seen.push(node);
        }
        let duplicate = call(&writer, "create_node", json!({"graph": "g", "id": "ada", "type": "person"})).await;
        assert_eq!(error_code(&duplicate), "ALREADY_EXISTS");
        let no_graph = call(&writer, "create_node", json!({"graph": "nope", "id": "x", "type": "t"})).await;
        assert_eq!(error_code(&no_graph), "GRAPH_NOT_FOUND");
        let bad_id = call(&writer, "create_node", json!({"graph": "g", "id": "no spaces", "type": "t"})).await;
        assert_eq!(error_code(&bad_id), codes::INVALID_INPUT);
        assert!(message(&bad_id).contains("is not a node id"), "{}", message(&bad_id));
        let not_object = call(&writer, "create_node", json!({"graph": "g", "id": "x", "type": "t", "attributes": [1, 2]})).await;
        assert_eq!(error_code(&not_object), codes::INVALID_INPUT);
        seen.extend([duplicate, no_graph, bad_id, not_object]);

        // The attribute limit, at its boundary.
        let at_limit = call(&writer, "create_node", json!({"graph": "g", "id": "big", "type": "blob", "attributes": attributes_of(MAX_ATTRIBUTES)})).await;
        assert_eq!(output(&at_limit)["revision"], 1);
        let past_limit = call(&writer, "create_node", json!({"graph": "g", "id": "bigger", "type": "blob", "attributes": attributes_of(MAX_ATTRIBUTES + 1)})).await;
        assert_eq!(error_code(&past_limit), "ATTRIBUTES_TOO_LARGE");
        assert_eq!(
            past_limit.result.as_ref().unwrap_err().details,
            Some(json!({"bytes": MAX_ATTRIBUTES + 1, "limit": MAX_ATTRIBUTES}))
        );
        // A merge that would grow past it.
        let grows = call(&writer, "update_node", json!({"graph": "g", "id": "big", "attributes": {"more": 1}})).await;
        assert_eq!(error_code(&grows), "ATTRIBUTES_TOO_LARGE");
        seen.extend([at_limit, past_limit, grows]);

        // Listing: by type, by attribute, a page at a time.
        let people = call(&reader, "list_nodes", json!({"graph": "g", "type": "person", "limit": 2})).await;
        let first: Vec<&Value> = output(&people)["items"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
        assert_eq!(first, ["ada", "alan"]);
        let cursor = output(&people)["next"].as_str().unwrap().to_string();
        let rest = call(&reader, "list_nodes", json!({"graph": "g", "type": "person", "limit": 2, "cursor": cursor})).await;
        let rest_ids: Vec<&Value> = output(&rest)["items"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
        assert_eq!(rest_ids, ["bob"]);
        assert_eq!(output(&rest)["next"], Value::Null);
        let other_query = call(&reader, "list_nodes", json!({"graph": "g", "type": "place", "limit": 2, "cursor": cursor})).await;
        assert_eq!(error_code(&other_query), "INVALID_CURSOR");
        let mut tampered = cursor.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        let tampered = call(&reader, "list_nodes", json!({"graph": "g", "type": "person", "limit": 2, "cursor": String::from_utf8(tampered).unwrap()})).await;
        assert_eq!(error_code(&tampered), "INVALID_CURSOR");
        let aged = call(&reader, "list_nodes", json!({"graph": "g", "filter": {"age": 36}})).await;
        let aged_ids: Vec<&Value> = output(&aged)["items"].as_array().unwrap().iter().map(|n| &n["id"]).collect();
        assert_eq!(aged_ids, ["ada", "bob"]);
        let named = call(&reader, "list_nodes", json!({"graph": "g", "filter": {"name": "alan", "age": 41}})).await;
        assert_eq!(output(&named)["items"].as_array().unwrap().len(), 1);
        let typed_mismatch = call(&reader, "list_nodes", json!({"graph": "g", "filter": {"age": "36"}})).await;
        assert_eq!(output(&typed_mismatch)["items"], json!([]), "a string is not a number");
        let nested = call(&reader, "list_nodes", json!({"graph": "g", "filter": {"age": {"gt": 3}}})).await;
        assert_eq!(error_code(&nested), codes::INVALID_INPUT);
        let no_such_graph = call(&reader, "list_nodes", json!({"graph": "nope"})).await;
        assert_eq!(error_code(&no_such_graph), "GRAPH_NOT_FOUND");
        let too_many = call(&reader, "list_nodes", json!({"graph": "g", "limit": 1001})).await;
        assert_eq!(error_code(&too_many), codes::INVALID_INPUT);
        seen.extend([people, rest, other_query, tampered, aged, named, typed_mismatch, nested, no_such_graph, too_many].map(without_cursor));

        // Edges, and the neighbours they make.
        for (id, from, to) in [("e1", "ada", "alan"), ("e2", "alan", "ada"), ("e3", "ada", "lab"), ("e4", "ada", "ada")] {
            let kind = if to == "lab" { "works_at" } else { "knows" };
            let edge = call(&writer, "create_edge", json!({"graph": "g", "id": id, "type": kind, "from": from, "to": to})).await;
            assert_eq!(output(&edge)["from"], from);
            seen.push(edge);
        }
        let dangling = call(&writer, "create_edge", json!({"graph": "g", "id": "e9", "type": "knows", "from": "ada", "to": "ghost"})).await;
        assert_eq!(error_code(&dangling), "NODE_NOT_FOUND");
        assert!(message(&dangling).contains("`ghost`"), "{}", message(&dangling));
        let outgoing = call(&reader, "neighbours", json!({"graph": "g", "node": "ada"})).await;
        let ends: Vec<(&Value, &Value)> = output(&outgoing)["items"].as_array().unwrap().iter().map(|n| (&n["edge"]["id"], &n["node"]["id"])).collect();
        assert_eq!(ends, [(&json!("e1"), &json!("alan")), (&json!("e3"), &json!("lab")), (&json!("e4"), &json!("ada"))]);
        let incoming = call(&reader, "neighbours", json!({"graph": "g", "node": "ada", "direction": "incoming", "type": "knows"})).await;
        let ends: Vec<(&Value, &Value)> = output(&incoming)["items"].as_array().unwrap().iter().map(|n| (&n["edge"]["id"], &n["node"]["id"])).collect();
        assert_eq!(ends, [(&json!("e2"), &json!("alan")), (&json!("e4"), &json!("ada"))]);
        let both = call(&reader, "neighbours", json!({"graph": "g", "node": "alan", "direction": "both", "limit": 1})).await;
        assert_eq!(output(&both)["items"][0]["node"]["id"], "ada");
        let cursor = output(&both)["next"].as_str().unwrap().to_string();
        let both_rest = call(&reader, "neighbours", json!({"graph": "g", "node": "alan", "direction": "both", "limit": 1, "cursor": cursor})).await;
        assert_eq!(output(&both_rest)["items"][0]["edge"]["id"], "e2");
        let lonely = call(&reader, "neighbours", json!({"graph": "g", "node": "ghost"})).await;
        assert_eq!(error_code(&lonely), "NODE_NOT_FOUND");
        seen.extend([dangling, outgoing, incoming, both, both_rest, lonely].map(without_cursor));

        // Updates: merge, replace, and a stale revision.
        let merged = call(&writer, "update_node", json!({"graph": "g", "id": "ada", "attributes": {"age": null, "role": "analyst"}})).await;
        assert_eq!(output(&merged)["attributes"], json!({"name": "ada", "role": "analyst"}));
        assert_eq!(output(&merged)["revision"], 2);
        let stale = call(&writer, "update_node", json!({"graph": "g", "id": "ada", "attributes": {}, "if_revision": 1})).await;
        assert_eq!(error_code(&stale), "CONFLICT");
        assert_eq!(stale.result.as_ref().unwrap_err().details, Some(json!({"id": "ada", "expected": 1, "current": 2})));
        let replaced = call(&writer, "update_node", json!({"graph": "g", "id": "ada", "attributes": {"only": true}, "mode": "replace", "if_revision": 2})).await;
        assert_eq!(output(&replaced)["attributes"], json!({"only": true}));
        let got = call(&reader, "get_node", json!({"graph": "g", "id": "ada"})).await;
        assert_eq!(output(&got), output(&replaced), "a read sees the write before it");
        seen.extend([merged, stale, replaced, got]);

        // `apply`: all or nothing.
        let failed = call(&writer, "apply", json!({"writes": [
            {"create_node": {"graph": "g", "id": "carol", "type": "person"}},
            {"create_edge": {"graph": "g", "id": "e5", "type": "knows", "from": "carol", "to": "ghost"}},
        ]})).await;
        assert_eq!(error_code(&failed), "NODE_NOT_FOUND");
        assert!(message(&failed).starts_with("write 1: "), "{}", message(&failed));
        let carol = call(&reader, "get_node", json!({"graph": "g", "id": "carol"})).await;
        assert_eq!(error_code(&carol), "NODE_NOT_FOUND", "the failed apply left nothing");
        let applied = call(&writer, "apply", json!({"writes": [
            {"create_node": {"graph": "g", "id": "carol", "type": "person"}},
            {"create_edge": {"graph": "g", "id": "e5", "type": "knows", "from": "carol", "to": "ada"}},
            {"delete_edge": {"graph": "g", "id": "e1"}},
        ]})).await;
        let kinds: Vec<&str> = output(&applied).as_array().unwrap().iter().map(|a| a.as_object().unwrap().keys().next().unwrap().as_str()).collect();
        assert_eq!(kinds, ["node", "edge", "deleted"]);
        let too_many_writes = call(&writer, "apply", json!({"writes": vec![json!({"delete_edge": {"graph": "g", "id": "e1"}}); 17]})).await;
        assert_eq!(error_code(&too_many_writes), codes::INVALID_INPUT);
        seen.extend([failed, carol, applied, too_many_writes]);

        // Deletes: a node takes its edges, a graph everything.
        let gone = call(&writer, "delete_node", json!({"graph": "g", "id": "ada"})).await;
        assert_eq!(output(&gone)["edges"], 4, "e2, e3, e4 and e5");
        let edge_gone = call(&reader, "get_edge", json!({"graph": "g", "id": "e3"})).await;
        assert_eq!(error_code(&edge_gone), "EDGE_NOT_FOUND");
        let graphs = call(&reader, "list_graphs", json!({})).await;
        assert_eq!(output(&graphs)["items"][0]["id"], "g");
        let dropped = call(&writer, "delete_graph", json!({"graph": "g"})).await;
        assert_eq!(output(&dropped)["nodes"], 5, "alan, bob, lab, big, carol");
        let after = call(&reader, "get_node", json!({"graph": "g", "id": "bob"})).await;
        assert_eq!(error_code(&after), "NODE_NOT_FOUND");
        seen.extend([gone, edge_gone, without_cursor(graphs), dropped, after]);
        seen
    })
    .await;
}

#[tokio::test]
async fn watch_streams_every_change_once_and_resumes_after_a_sequence_number() {
    let make = || StorageProtocol::local(StorageService::open(&settings()).unwrap());
    each_path::<StorageProtocol, _, _>(make, |env| async move {
        let writer = as_caller(&env, &["read", "write"]);
        writer
            .invoke("storage", "create_graph", json!({"graph": "g"}))
            .await;
        writer
            .invoke("storage", "create_graph", json!({"graph": "other"}))
            .await;
        let mut live = writer
            .subscribe("storage", "watch", json!({"graph": "g", "since": 0}))
            .await;
        for n in 0..20 {
            let node =
                json!({"graph": "g", "id": format!("n{n}"), "type": "t", "attributes": {"n": n}});
            writer.invoke("storage", "create_node", node).await;
            // Changes to another graph are not this watch's.
            writer
                .invoke(
                    "storage",
                    "create_node",
                    json!({"graph": "other", "id": format!("n{n}"), "type": "t"}),
                )
                .await;
        }
        writer
            .invoke(
                "storage",
                "update_node",
                json!({"graph": "g", "id": "n3", "attributes": {"x": 1}}),
            )
            .await;
        writer
            .invoke("storage", "delete_node", json!({"graph": "g", "id": "n4"}))
            .await;
        let mut seen = Vec::new();
        let mut seqs = Vec::new();
        for _ in 0..23 {
            let change = live.next().await.expect("the watch goes on").unwrap();
            assert_eq!(change["graph"], "g");
            seqs.push(change["seq"].as_u64().unwrap());
            seen.push(change);
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        assert_eq!(seen[0]["entity"], "graph");
        assert_eq!(seen[1]["record"]["attributes"], json!({"n": 0}));
        assert_eq!(
            (&seen[21]["action"], &seen[21]["revision"]),
            (&json!("updated"), &json!(2))
        );
        assert_eq!(
            (&seen[22]["action"], &seen[22]["record"]),
            (&json!("deleted"), &Value::Null)
        );

        // Resume after the 10th change: the 11th on, each once.
        let resumed = writer
            .subscribe("storage", "watch", json!({"graph": "g", "since": seqs[9]}))
            .await;
        let resumed: Vec<Value> = resumed.take(13).map(|item| item.unwrap()).collect().await;
        assert_eq!(resumed, seen[10..]);
        // From now: only what comes after.
        let mut from_now = writer
            .subscribe("storage", "watch", json!({"graph": "g"}))
            .await;
        writer
            .invoke("storage", "delete_graph", json!({"graph": "g"}))
            .await;
        let next = from_now.next().await.unwrap().unwrap();
        assert_eq!(
            (&next["entity"], &next["action"]),
            (&json!("node"), &json!("deleted"))
        );

        let position = writer.invoke("storage", "change_log", json!({})).await;
        assert_eq!(output(&position)["oldest"], 1);
        vec![position]
    })
    .await;
}

#[tokio::test]
async fn a_since_the_log_no_longer_holds_is_a_clear_error() {
    let env = env_of(
        StorageService::open(&StorageSettings {
            change_log_keep: NonZeroU64::new(5),
            ..settings()
        })
        .unwrap(),
    );
    let writer = as_caller(&env, &["read", "write"]);
    writer
        .invoke("storage", "create_graph", json!({"graph": "g"}))
        .await;
    for n in 0..10 {
        writer
            .invoke(
                "storage",
                "create_node",
                json!({"graph": "g", "id": format!("n{n}"), "type": "t"}),
            )
            .await;
    }
    let position = writer.invoke("storage", "change_log", json!({})).await;
    assert_eq!(output(&position), &json!({"head": 11, "oldest": 7}));
    let refused = collect(
        writer
            .subscribe("storage", "watch", json!({"graph": "g", "since": 5}))
            .await,
    )
    .await;
    assert_eq!(error_code(&refused[0]), "CHANGES_PRUNED");
    assert_eq!(
        refused[0].result.as_ref().unwrap_err().details,
        Some(json!({"oldest": 7}))
    );
    assert!(
        message(&refused[0]).contains("read the graph again"),
        "{}",
        message(&refused[0])
    );
    // From one before the oldest kept: every change it holds.
    let mut kept = writer
        .subscribe("storage", "watch", json!({"graph": "g", "since": 6}))
        .await;
    for seq in 7..=11 {
        assert_eq!(kept.next().await.unwrap().unwrap()["seq"], seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_a_watcher_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(StorageService::file(&dir.path().join("db.sqlite3")).unwrap());
    let writer = as_caller(&env, &["read", "write"]);
    writer
        .invoke("storage", "create_graph", json!({"graph": "g"}))
        .await;
    let mut watch = writer
        .subscribe("storage", "watch", json!({"graph": "g", "since": 1}))
        .await;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for n in 0..125 {
                    let node = json!({"graph": "g", "id": format!("t{task}-{n}"), "type": "t"});
                    let made = writer.invoke("storage", "create_node", node).await;
                    assert!(made.result.is_ok(), "{made:?}");
                }
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut last = 1;
    while ids.len() < 2000 {
        let change = watch.next().await.unwrap().unwrap();
        let seq = change["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "no gap and no repeat");
        last = seq;
        assert!(ids.insert(change["id"].as_str().unwrap().to_string()));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let listed = writer
        .invoke(
            "storage",
            "list_nodes",
            json!({"graph": "g", "limit": 1000}),
        )
        .await;
    assert_eq!(output(&listed)["items"].as_array().unwrap().len(), 1000);
}

/// Every node a listing gives, page by page.
async fn list_all(env: &OperationEnv, mut query: Value) -> Vec<Value> {
    let mut nodes = Vec::new();
    loop {
        let page = env.invoke("storage", "list_nodes", query.clone()).await;
        let page = output(&page);
        nodes.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(cursor) => query["cursor"] = json!(cursor),
            None => return nodes,
        }
    }
}

#[tokio::test]
async fn indexed_attributes_list_what_unindexed_ones_do_and_follow_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("indexed.sqlite3");
    let indexed = |keys: &[&str]| StorageSettings {
        file: Some(file.clone()),
        indexed_attributes: keys.iter().map(|key| key.to_string()).collect(),
        ..StorageSettings::default()
    };
    let with_index = as_caller(
        &env_of(StorageService::open(&indexed(&["team", "age"])).unwrap()),
        &["read", "write"],
    );
    let without = as_caller(
        &env_of(StorageService::in_memory().unwrap()),
        &["read", "write"],
    );
    for env in [&with_index, &without] {
        let made = env
            .invoke("storage", "create_graph", json!({"graph": "g"}))
            .await;
        output(&made);
        for n in 0..240 {
            let (node_type, team) = (["person", "place"][n % 2], ["red", "blue", "green"][n % 3]);
            let node = json!({
                "graph": "g",
                "id": format!("n{n:03}"),
                "type": node_type,
                "attributes": {"team": team, "age": 20 + n % 7, "n": n},
            });
            output(&env.invoke("storage", "create_node", node).await);
        }
    }
    let queries = [
        json!({"graph": "g", "filter": {"team": "red"}, "limit": 7}),
        json!({"graph": "g", "type": "place", "filter": {"team": "blue"}, "limit": 7}),
        json!({"graph": "g", "filter": {"age": 23, "team": "green"}, "limit": 5}),
        json!({"graph": "g", "type": "person", "filter": {"n": 12, "team": "red"}}),
        json!({"graph": "g", "filter": {"team": "none"}}),
    ];
    for query in queries {
        let listed = list_all(&with_index, query.clone()).await;
        assert_eq!(listed, list_all(&without, query.clone()).await, "{query}");
        let ids: Vec<&str> = listed
            .iter()
            .map(|node| node["id"].as_str().unwrap())
            .collect();
        assert!(ids.is_sorted(), "{query}: {ids:?}");
    }
    drop(with_index);

    let index_names = || -> Vec<String> {
        let conn = rusqlite::Connection::open(&file).unwrap();
        let mut statement = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND name GLOB 'nodes_by_attribute:*' ORDER BY name")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        index_names(),
        ["nodes_by_attribute:age", "nodes_by_attribute:team"]
    );
    drop(StorageService::open(&indexed(&["team"])).unwrap());
    assert_eq!(index_names(), ["nodes_by_attribute:team"]);

    let err = StorageService::open(&indexed(&["team", "a.b"]))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "`[storage] indexed_attributes`: `a.b` cannot be indexed: a key is 1 to 64 of `A-Z a-z 0-9 _ -`"
    );
    assert_eq!(index_names(), ["nodes_by_attribute:team"]);
}

#[test]
fn a_database_file_is_migrated_once_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("db.sqlite3");
    let store = SqliteStore::open(&path, Default::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SqliteStore::SCHEMA_VERSION);
    drop(store);
    // Reopened: already at this version, nothing to do.
    let store = SqliteStore::open(&path, Default::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SqliteStore::SCHEMA_VERSION);
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, Default::default()).err().unwrap();
    assert!(
        err.to_string()
            .contains("schema version 99, newer than this build's"),
        "{err}"
    );

    std::fs::write(dir.path().join("junk.sqlite3"), b"not a database at all").unwrap();
    let err = SqliteStore::open(&dir.path().join("junk.sqlite3"), Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("junk.sqlite3"), "{err}");
}

const CHILD: &str = "ALKNET_STORAGE_WRITING_CHILD";

/// Every write a node acknowledged is in its database after the node is killed mid-loop.
#[test]
fn an_acknowledged_write_survives_kill_9() {
    if let Some(file) = std::env::var_os(CHILD) {
        return write_nodes(Path::new(&file), 1..);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.sqlite3");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_acknowledged_write_survives_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = 0u64;
    let mut line = String::new();
    while acknowledged < 300 {
        line.clear();
        assert_ne!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap(),
            0,
            "the child ended"
        );
        if let Some(n) = line.trim().strip_prefix("wrote ") {
            acknowledged = n.parse().unwrap();
        }
    }
    // SAFETY: kill(2) on the child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    for line in std::io::BufRead::lines(stdout) {
        if let Some(n) = line.unwrap().trim().strip_prefix("wrote ") {
            acknowledged = n.parse().unwrap();
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let env = env_of(StorageService::file(&file).unwrap());
        let reader = as_caller(&env, &["read"]);
        for n in 1..=acknowledged {
            let node = reader
                .invoke(
                    "storage",
                    "get_node",
                    json!({"graph": "g", "id": format!("n{n}")}),
                )
                .await;
            assert_eq!(
                output(&node)["attributes"]["n"],
                n,
                "write {n} of {acknowledged}"
            );
        }
    });
}

/// Where the child of `another_process_writes_reach_watch` writes its nodes.
const OTHER_WRITER: &str = "ALKNET_STORAGE_OTHER_WRITER";
const OTHER_WRITES: u64 = 50;

#[test]
fn another_process_writes_reach_watch() {
    if let Some(file) = std::env::var_os(OTHER_WRITER) {
        return write_nodes(Path::new(&file), 1..=OTHER_WRITES);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.sqlite3");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let env = env_of(
            StorageService::open(&StorageSettings {
                file: Some(file.clone()),
                poll_ms: NonZeroU64::new(50),
                ..StorageSettings::default()
            })
            .unwrap(),
        );
        let writer = as_caller(&env, &["read", "write"]);
        writer
            .invoke("storage", "create_graph", json!({"graph": "g"}))
            .await;
        let mut changes = writer
            .subscribe("storage", "watch", json!({"graph": "g"}))
            .await;
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "another_process_writes_reach_watch",
                "--test-threads=1",
            ])
            .env(OTHER_WRITER, &file)
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "the other process failed to write: {}",
            String::from_utf8_lossy(&child.stdout)
        );
        let mut seen = Vec::new();
        while seen.len() < OTHER_WRITES as usize {
            let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.next())
                .await
                .unwrap_or_else(|_| panic!("no change after {} of {OTHER_WRITES}", seen.len()))
                .expect("the watch goes on")
                .unwrap();
            seen.push(change["id"].as_str().unwrap().to_string());
        }
        let written: Vec<String> = (1..=OTHER_WRITES).map(|n| format!("n{n}")).collect();
        assert_eq!(seen, written);
    });
}

/// Nodes `n{n}` of graph `g` (made unless it exists), one write each, printing `wrote {n}`
/// as each is acknowledged.
fn write_nodes(file: &Path, ns: impl Iterator<Item = u64>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let env = env_of(StorageService::file(file).unwrap());
        let writer = as_caller(&env, &["read", "write"]);
        writer
            .invoke("storage", "create_graph", json!({"graph": "g"}))
            .await;
        for n in ns {
            let node =
                json!({"graph": "g", "id": format!("n{n}"), "type": "t", "attributes": {"n": n}});
            let made = writer.invoke("storage", "create_node", node).await;
            assert!(made.result.is_ok(), "{made:?}");
            println!("wrote {n}");
        }
    });
}
