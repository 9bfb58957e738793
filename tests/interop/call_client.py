"""A call-protocol client written from docs/call-protocol.md alone, with aioquic.

Drives a node: a call, a subscription, errors, and an abort. Exits non-zero (with the
failed assertion) if the node does not behave as the document says.

    python call_client.py --addr 127.0.0.1:4433 --fingerprint ed25519:... --token TOKEN
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import ssl
import struct
import time

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

ALPN = "alknet/call/1"
MAX_FRAME = 16 * 1024 * 1024


def fingerprint(public_key: ed25519.Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()


def self_signed():
    """An Ed25519 key and a self-signed certificate: every client presents one."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "python-client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, None)
    )
    return key, cert


def frame(envelope: dict) -> bytes:
    body = json.dumps(envelope, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


class CallError(Exception):
    def __init__(self, payload):
        super().__init__(f"{payload['code']}: {payload['message']}")
        self.code = payload["code"]
        self.retryable = payload["retryable"]
        self.details = payload.get("details")


class Call:
    """One call: one bidirectional stream."""

    def __init__(self, client, stream_id, call_id):
        self.client = client
        self.stream_id = stream_id
        self.id = call_id
        self.events = asyncio.Queue()

    async def next_event(self):
        event = await self.events.get()
        if event is None:
            raise CallError({"code": "UNAVAILABLE", "message": "the connection is lost", "retryable": True})
        assert event["id"] == self.id, event
        return event

    def abort(self):
        self.client.send(self.stream_id, frame({"type": "call.aborted", "id": self.id, "payload": {}}))


class CallClient(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {}
        self.buffers = {}
        self.next_id = 0

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            buffer = self.buffers.setdefault(event.stream_id, bytearray())
            buffer.extend(event.data)
            call = self.calls.get(event.stream_id)
            while len(buffer) >= 4:
                (length,) = struct.unpack(">I", buffer[:4])
                if length > MAX_FRAME:
                    raise ValueError(f"a frame of {length} bytes is over the limit")
                if len(buffer) < 4 + length:
                    break
                body = bytes(buffer[4 : 4 + length])
                del buffer[: 4 + length]
                if call:
                    call.events.put_nowait(json.loads(body))
        elif isinstance(event, ConnectionTerminated):
            for call in self.calls.values():
                call.events.put_nowait(None)

    def send(self, stream_id, data, end=False):
        self._quic.send_stream_data(stream_id, data, end_stream=end)
        self.transmit()

    def peer_fingerprint(self):
        return fingerprint(self._quic.tls._peer_certificate.public_key())

    def start(self, operation_id, input, token=None, deadline_ms=None):
        self.next_id += 1
        call_id = str(self.next_id)
        payload = {"operationId": operation_id, "input": input}
        if token is not None:
            payload["auth_token"] = token
        if deadline_ms is not None:
            payload["deadline"] = deadline_ms
        stream_id = self._quic.get_next_available_stream_id()
        call = Call(self, stream_id, call_id)
        self.calls[stream_id] = call
        self.send(stream_id, frame({"type": "call.requested", "id": call_id, "payload": payload}))
        return call

    async def call(self, operation_id, input, token=None):
        call = self.start(operation_id, input, token, deadline_ms=30000)
        event = await asyncio.wait_for(call.next_event(), 30)
        if event["type"] == "call.error":
            raise CallError(event["payload"])
        assert event["type"] == "call.responded", event
        return event["payload"]["output"]

    async def subscribe(self, operation_id, input, token=None):
        call = self.start(operation_id, input, token)
        items = []
        while True:
            event = await asyncio.wait_for(call.next_event(), 30)
            if event["type"] == "call.completed":
                return items
            if event["type"] == "call.error":
                raise CallError(event["payload"])
            assert event["type"] == "call.responded", event
            items.append(event["payload"]["output"])


async def expect_error(code, call):
    try:
        await call
    except CallError as err:
        assert err.code == code, f"expected {code}, got {err}"
        return err
    raise AssertionError(f"expected {code}, got success")


async def until(what, condition):
    deadline = time.monotonic() + 5
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def main(addr, expected_fingerprint, token):
    host, port = addr.rsplit(":", 1)
    key, cert = self_signed()
    configuration = QuicConfiguration(is_client=True, alpn_protocols=[ALPN])
    # The server is verified by its key fingerprint below, not by a CA.
    configuration.verify_mode = ssl.CERT_NONE
    configuration.certificate = cert
    configuration.private_key = key
    configuration.server_name = "alknet-node"
    async with connect(host, int(port), configuration=configuration, create_protocol=CallClient) as client:
        assert client.peer_fingerprint() == expected_fingerprint, "the server's key is not the pinned one"
        print("connected, server key pinned")

        # An unknown key without a token is an anonymous caller: open operations answer it,
        # restricted ones want a credential.
        listed = await client.call("/services/list", {})
        ids = {op["operationId"] for op in listed}
        assert "/echo/say" in ids and "/echo/served" not in ids, ids
        said = await client.call("/echo/say", {"text": "hi"})
        assert said == {"text": "hi", "length": 2}, said
        await expect_error("UNAUTHENTICATED", client.call("/echo/served", {}))
        print("anonymous: services/list, echo/say; echo/served UNAUTHENTICATED")

        said = await client.call("/echo/say", {"text": "hello"}, token)
        assert said == {"text": "hello", "length": 5}, said
        print("call:", said)

        ticks = await client.subscribe("/echo/ticks", {"count": 3}, token)
        assert ticks == [{"n": 1}, {"n": 2}, {"n": 3}], ticks
        print("subscription:", ticks)

        err = await expect_error("EMPTY_TEXT", client.call("/echo/shout", {"text": "  "}, token))
        assert err.details == {"whitespace": 2} and not err.retryable, err.details
        await expect_error("NOT_FOUND", client.call("/echo/nope", {}, token))
        err = await expect_error("INVALID_INPUT", client.call("/echo/say", {"txt": 1}, token))
        print("errors: EMPTY_TEXT, NOT_FOUND, INVALID_INPUT:", err)

        async def counts():
            return await client.call("/gate/counts", {}, token)

        hanging = client.start("/gate/hang", {}, token)
        await until("the call runs", lambda: _started(counts, 1))
        hanging.abort()
        await until("the node cancels it", lambda: _dropped(counts, 1))
        print("abort: the handler was cancelled")

        listed = await client.call("/services/list", {}, token)
        assert any(op["operationId"] == "/echo/say" for op in listed), listed
        print("ok")


async def _started(counts, n):
    return (await counts())["started"] == n


async def _dropped(counts, n):
    return (await counts())["dropped"] == n


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.addr, args.fingerprint, args.token))
