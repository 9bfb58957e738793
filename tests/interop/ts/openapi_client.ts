// Calls a node through the client @hey-api/openapi-ts generated (with its defaults) from
// the node's /openapi.json into ./client; driven by the Rust adapter tests
// (tests/tests/openapi_clients.rs), which compile it with `tsc --strict` and run it as
// `node openapi_client.js BASE_URL`. The annotations below are the point: each response
// must type-check as what the document declares, before it runs at all. Prints
// [{call, status, data, error}] as JSON.
import { client } from "./client/client.gen";
import { echoSay, echoShout, echoTicks } from "./client/sdk.gen";
import type { AlknetErrorUnauthenticated, EchoEcho, EchoSayError, EchoShoutError } from "./client/types.gen";

client.setConfig({ baseUrl: process.argv[2] });

async function main(): Promise<void> {
  const results: { call: string; status: number; data: unknown; error: unknown }[] = [];
  const record = (call: string, reply: { response?: Response; data?: unknown; error?: unknown }) =>
    results.push({ call, status: reply.response?.status ?? 0, data: reply.data ?? null, error: reply.error ?? null });

  const said = await echoSay({ body: { text: "hi" } });
  const echoed: EchoEcho | undefined = said.data;
  record("success", { ...said, data: echoed });

  // The error is the union of every error body the operation declares; its `code`
  // tells them apart, down to the declared error's typed details.
  const shouted = await echoShout({ body: { text: "  " } });
  const refusal: EchoShoutError | undefined = shouted.error;
  const failure = refusal?.error;
  const whitespace: number | undefined = failure?.code === "EMPTY_TEXT" ? failure.details.whitespace : undefined;
  record("domain_error", { ...shouted, error: { ...refusal, whitespace } });

  const unauthenticated = await echoSay({ body: { text: "hi" }, headers: { Authorization: "Bearer not-a-token" } });
  const refused: EchoSayError | undefined = unauthenticated.error;
  const unauthenticatedBody: AlknetErrorUnauthenticated | undefined =
    refused?.error.code === "UNAUTHENTICATED" ? (refused as AlknetErrorUnauthenticated) : undefined;
  record("unauthenticated", { ...unauthenticated, error: unauthenticatedBody ?? null });

  // Past the types on purpose: the node must refuse what tsc would not let through.
  const invalid = await echoSay({ body: { text: 42 as unknown as string } });
  const rejected: EchoSayError | undefined = invalid.error;
  record("invalid_input", { ...invalid, error: rejected });

  // A field with a `default` (`interval_ms`) may be left out of the input; the
  // subscription's stream arrives through the generated Server-Sent Events client.
  const ticks = await echoTicks({ body: { count: 1 }, sseMaxRetryAttempts: 0 });
  const items: unknown[] = [];
  for await (const item of ticks.stream) items.push(item);
  record("default_field", { data: items });

  process.stdout.write(JSON.stringify(results));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
