"""Checks the Helm chart's values against its schema (what `helm install`
does before rendering): the defaults validate, and typical mistakes fail.

Usage: chart_check.py CHART_DIR
"""

import copy
import json
import sys

import jsonschema
import yaml


def main() -> int:
    chart = sys.argv[1]
    values = yaml.safe_load(open(f"{chart}/values.yaml"))
    schema = json.load(open(f"{chart}/values.schema.json"))
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(values, schema)

    def mutated(path, value):
        v = copy.deepcopy(values)
        node = v
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        return v

    mistakes = {
        "typo in a key": mutated(["config", "cookieNmae"], "_x"),
        "unknown mode": mutated(["mode"], "daemonset"),
        "identity lifetime over the browser cap": mutated(["config", "identityTtlDays"], 401),
        "unknown store": mutated(["store", "kind"], "memcached"),
        "bad cookie name": mutated(["config", "cookieName"], "a;b"),
        "uppercase domain": mutated(["config", "allowedDomains"], ["Example.com"]),
    }
    for what, v in mistakes.items():
        try:
            jsonschema.validate(v, schema)
        except jsonschema.ValidationError:
            continue
        print(f"schema accepted a mistake: {what}", file=sys.stderr)
        return 1
    json.load(open(f"{chart}/values.schema.json"))
    yaml.safe_load(open(f"{chart}/Chart.yaml"))
    print("chart values ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
