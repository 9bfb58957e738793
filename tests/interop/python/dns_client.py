"""A DNS client built on dnspython, driven by the Rust adapter tests.

Asks SERVER:PORT for NAME's TXT record over UDP, without EDNS (a 512-byte answer at most) or
with `--edns SIZE`, with dnspython's defaults, which reject a message with bytes after its
last record; then, if the answer was truncated, over TCP. Prints, as JSON, for each
exchange: its transport, the response code, the header flags, the question, the TXT strings
joined per record, and the message as received (hex).
"""

import argparse
import json

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def exchange(transport, query, server, port):
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    response = send(query, server, port=port, timeout=5)
    return {
        "transport": transport,
        "rcode": dns.rcode.to_text(response.rcode()),
        "flags": dns.flags.to_text(response.flags).lower().split(),
        "question": [q.name.to_text() for q in response.question],
        "txt": [
            b"".join(rdata.strings).decode()
            for rrset in response.answer
            for rdata in rrset
            if rdata.rdtype == dns.rdatatype.TXT
        ],
        "wire": response.wire.hex(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("port", type=int)
    parser.add_argument("name")
    parser.add_argument("--edns", type=int, metavar="SIZE", help="offer EDNS with this UDP size")
    args = parser.parse_args()
    if args.edns is None:
        query = dns.message.make_query(args.name, "TXT", use_edns=False)
    else:
        query = dns.message.make_query(args.name, "TXT", use_edns=0, payload=args.edns)
    answers = [exchange("udp", query, args.server, args.port)]
    if "tc" in answers[0]["flags"]:
        answers.append(exchange("tcp", query, args.server, args.port))
    print(json.dumps(answers))


main()
