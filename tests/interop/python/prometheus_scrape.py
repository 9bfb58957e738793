"""Parse a Prometheus text exposition (stdin) with the official client's parser.

Prints one JSON object: {"samples": [{"name", "labels", "value"}], "types": {family: type}},
so a test reads what a Prometheus server would scrape. A malformed exposition makes the
parser raise, and this script exit non-zero with its message.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    samples = []
    types = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        types[family.name] = family.type
        for sample in family.samples:
            samples.append(
                {"name": sample.name, "labels": sample.labels, "value": sample.value}
            )
    json.dump({"samples": samples, "types": types}, sys.stdout)


if __name__ == "__main__":
    main()
