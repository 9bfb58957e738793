-- Schema version 1: graphs, nodes and edges with JSON attributes, and the change log that
-- triggers keep (so a cascade's deletes are logged like any other).

CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT;

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value ANY NOT NULL
) STRICT;
-- The key that authenticates page cursors, and the last sequence number the log dropped.
INSERT INTO meta (key, value) VALUES ('cursor_key', randomblob(32)), ('pruned_through', 0);

CREATE TABLE graphs (
    id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    revision INTEGER NOT NULL
) STRICT;

CREATE TABLE nodes (
    graph TEXT NOT NULL REFERENCES graphs (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    attributes TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (graph, id)
) STRICT;
CREATE INDEX nodes_by_type ON nodes (graph, type, id);

CREATE TABLE edges (
    graph TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    attributes TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (graph, id),
    FOREIGN KEY (graph, source) REFERENCES nodes (graph, id) ON DELETE CASCADE,
    FOREIGN KEY (graph, target) REFERENCES nodes (graph, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX edges_from ON edges (graph, source, id);
CREATE INDEX edges_to ON edges (graph, target, id);

CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    graph TEXT NOT NULL,
    entity TEXT NOT NULL,
    action TEXT NOT NULL,
    id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    record TEXT
) STRICT;
CREATE INDEX changes_by_graph ON changes (graph, seq);

CREATE TRIGGER graphs_created AFTER INSERT ON graphs BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (NEW.id, 'graph', 'created', NEW.id, NEW.revision,
            json_object('id', NEW.id, 'attributes', json(NEW.attributes), 'revision', NEW.revision));
END;

CREATE TRIGGER graphs_deleted AFTER DELETE ON graphs BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (OLD.id, 'graph', 'deleted', OLD.id, OLD.revision, NULL);
END;

CREATE TRIGGER nodes_created AFTER INSERT ON nodes BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (NEW.graph, 'node', 'created', NEW.id, NEW.revision,
            json_object('graph', NEW.graph, 'id', NEW.id, 'type', NEW.type,
                        'attributes', json(NEW.attributes), 'revision', NEW.revision));
END;

CREATE TRIGGER nodes_updated AFTER UPDATE ON nodes BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (NEW.graph, 'node', 'updated', NEW.id, NEW.revision,
            json_object('graph', NEW.graph, 'id', NEW.id, 'type', NEW.type,
                        'attributes', json(NEW.attributes), 'revision', NEW.revision));
END;

CREATE TRIGGER nodes_deleted AFTER DELETE ON nodes BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (OLD.graph, 'node', 'deleted', OLD.id, OLD.revision, NULL);
END;

CREATE TRIGGER edges_created AFTER INSERT ON edges BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (NEW.graph, 'edge', 'created', NEW.id, NEW.revision,
            json_object('graph', NEW.graph, 'id', NEW.id, 'type', NEW.type,
                        'from', NEW.source, 'to', NEW.target,
                        'attributes', json(NEW.attributes), 'revision', NEW.revision));
END;

CREATE TRIGGER edges_deleted AFTER DELETE ON edges BEGIN
    INSERT INTO changes (graph, entity, action, id, revision, record)
    VALUES (OLD.graph, 'edge', 'deleted', OLD.id, OLD.revision, NULL);
END;
