"""Calls a node through the client openapi-python-client generated from its /openapi.json,
driven by the Rust adapter tests (tests/tests/openapi_clients.rs).

Usage: openapi_client.py GENERATED_DIR BASE_URL. GENERATED_DIR holds the generated package
`alknet_client` (the generator's defaults). Makes a successful call, one that fails with a
declared domain error, one with a refused bearer token (401) and one with invalid input
(422), and prints for each {"call", "status", "type", "body"}: the HTTP status, the name of
the generated class the response parsed into, and that object back as a dict.
"""

import importlib
import json
import sys

sys.path.insert(0, sys.argv[1])
base_url = sys.argv[2]

from alknet_client import AuthenticatedClient, Client  # noqa: E402

say = importlib.import_module("alknet_client.api.echo.echo_say")
shout = importlib.import_module("alknet_client.api.echo.echo_shout")
models = importlib.import_module("alknet_client.models")

anonymous = Client(base_url=base_url)
refused = AuthenticatedClient(base_url=base_url, token="not-a-token")

calls = {
    "success": lambda: say.sync_detailed(client=anonymous, body=models.EchoSay(text="hi")),
    "domain_error": lambda: shout.sync_detailed(client=anonymous, body=models.EchoShout(text="  ")),
    "unauthenticated": lambda: say.sync_detailed(client=refused, body=models.EchoSay(text="hi")),
    # The generated model does not check types: 42 goes out as the text.
    "invalid_input": lambda: say.sync_detailed(client=anonymous, body=models.EchoSay(text=42)),
}

results = []
for name, call in calls.items():
    response = call()
    parsed = response.parsed
    results.append(
        {
            "call": name,
            "status": int(response.status_code),
            "type": type(parsed).__name__,
            "body": parsed.to_dict() if parsed is not None else None,
        }
    )
print(json.dumps(results))
