// A Server-Sent Events client built on the `eventsource` package (the WHATWG EventSource,
// for Node), driven by the Rust adapter tests: it opens URL with GET, as a browser's
// EventSource does, records every event, and — like a client that forgets to close on
// `completed` — lets the EventSource reconnect as it will. It prints
// {"events": [{type, id, data}], "closed": bool} as JSON once the EventSource has closed
// itself, or after WAIT_MS (default 15000) if it never does.
import { EventSource } from "eventsource";

const [url, waitMs = "15000"] = process.argv.slice(2);
const source = new EventSource(url);
const events = [];
const record = (type) => (event) =>
  events.push({ type, id: event.lastEventId ?? null, data: event.data ?? null });
source.onmessage = record("message");
source.addEventListener("completed", record("completed"));
// Both the node's `error` events (with data) and the EventSource's own connection errors.
source.addEventListener("error", record("error"));

const started = Date.now();
while (source.readyState !== EventSource.CLOSED && Date.now() - started < Number(waitMs)) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const closed = source.readyState === EventSource.CLOSED;
source.close();
process.stdout.write(JSON.stringify({ events, closed }));
