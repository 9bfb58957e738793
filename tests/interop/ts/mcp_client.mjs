// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk), driven by
// the Rust adapter tests; the TypeScript twin of ../python/mcp_client.py.
//
// Connects over streamable HTTP (--http URL [--token T]) or stdio (--stdio COMMAND ARGS...),
// lists the tools, makes each call of --calls (a JSON list of {"name", "arguments"}), closes
// the session, and prints {"tools": [...], "results": [...]} as JSON. The SDK checks every
// result against its tool's outputSchema, errors included: a result it rejects fails the
// call. A connection the server refuses prints {"refused": {name, code, message}} instead.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const args = process.argv.slice(2);
let http, token, stdio;
let calls = [];
while (args.length) {
  const flag = args.shift();
  if (flag === "--http") http = args.shift();
  else if (flag === "--token") token = args.shift();
  else if (flag === "--calls") calls = JSON.parse(args.shift());
  else if (flag === "--stdio") stdio = args.splice(0);
  else throw new Error(`unknown argument ${flag}`);
}

const transport = http
  ? new StreamableHTTPClientTransport(new URL(http), {
      requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
    })
  : new StdioClientTransport({ command: stdio[0], args: stdio.slice(1), stderr: "inherit" });
const client = new Client({ name: "alknet-interop-ts", version: "0" });
try {
  await client.connect(transport);
} catch (e) {
  process.stdout.write(JSON.stringify({ refused: { name: e.name, code: e.code ?? null, message: e.message } }));
  process.exit(0);
}

const { tools } = await client.listTools();
const results = [];
for (const call of calls) {
  const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} });
  const text = result.content
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("");
  results.push({
    is_error: Boolean(result.isError),
    structured: result.structuredContent ?? null,
    text: JSON.parse(text),
  });
}
if (http) await transport.terminateSession();
await client.close();
process.stdout.write(
  JSON.stringify({
    tools: tools.map((t) => ({
      name: t.name,
      description: t.description,
      read_only: t.annotations?.readOnlyHint ?? null,
      destructive: t.annotations?.destructiveHint ?? null,
      idempotent: t.annotations?.idempotentHint ?? null,
      input_schema: t.inputSchema,
      output_schema: t.outputSchema,
    })),
    results,
  }),
);
