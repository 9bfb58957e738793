"""An MCP client built on the official Python SDK, driven by the Rust adapter tests.

Connects over streamable HTTP (--http URL [--token T]) or stdio (--stdio COMMAND ARGS...),
lists the tools, makes each call of --calls (a JSON list of {"name", "arguments"}), and
prints {"tools": [...], "results": [...]} as JSON. Every successful result is validated
against its tool's outputSchema (by the SDK, and again here with jsonschema), every
outputSchema must be an object schema, and each text rendering must be JSON.
"""

import argparse
import asyncio
import json
import sys

import jsonschema
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def session_calls(read, write, calls):
    async with ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        tools = {}
        for tool in listed.tools:
            assert tool.output_schema is not None, f"{tool.name} has no outputSchema"
            assert tool.output_schema.get("type") == "object", tool.output_schema
            assert tool.input_schema.get("type") == "object", tool.input_schema
            jsonschema.Draft202012Validator.check_schema(tool.output_schema)
            tools[tool.name] = tool
        results = []
        for call in calls:
            result = await session.call_tool(call["name"], call.get("arguments") or {})
            text = "".join(c.text for c in result.content if getattr(c, "type", None) == "text")
            if not result.is_error:
                jsonschema.validate(result.structured_content, tools[call["name"]].output_schema)
            results.append(
                {
                    "is_error": bool(result.is_error),
                    "structured": result.structured_content,
                    "text": json.loads(text),
                }
            )
        return {
            "tools": [
                {
                    "name": t.name,
                    "description": t.description,
                    "read_only": t.annotations.read_only_hint if t.annotations else None,
                    "destructive": t.annotations.destructive_hint if t.annotations else None,
                    "idempotent": t.annotations.idempotent_hint if t.annotations else None,
                    "input_schema": t.input_schema,
                    "output_schema": t.output_schema,
                }
                for t in listed.tools
            ],
            "results": results,
        }


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http")
    parser.add_argument("--token")
    parser.add_argument("--stdio", nargs=argparse.REMAINDER)
    parser.add_argument("--calls", default="[]")
    args = parser.parse_args()
    calls = json.loads(args.calls)
    if args.http:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
        async with create_mcp_http_client(headers=headers) as client:
            async with streamable_http_client(args.http, http_client=client) as (read, write):
                out = await session_calls(read, write, calls)
    else:
        command, *rest = args.stdio
        params = StdioServerParameters(command=command, args=rest)
        async with stdio_client(params) as (read, write):
            out = await session_calls(read, write, calls)
    json.dump(out, sys.stdout)


asyncio.run(main())
