#!/usr/bin/env python3
"""Cuts Neon's published OpenAPI document down to the operations the
/api/v2 surface serves, with every schema and response they reference, so
the e2e tests validate our answers against Neon's own schemas.

    python3 tests/neon/extract.py FULL.json > tests/neon/neon-openapi-v2.json

FULL.json: Neon's API document (https://neon.tech/api_spec/release/v2.json),
as vendored by the generated Go client github.com/kislerdm/neon-sdk-go
(openAPIDefinition.json). Nothing is edited: operations and components are
copied as they are.
"""
import json
import re
import sys

OPERATIONS = [
    ("/consumption_history/projects", "get"),
    ("/consumption_history/account", "get"),
    ("/projects/{project_id}", "get"),
    ("/projects/{project_id}", "patch"),
]
SOURCE = "github.com/kislerdm/neon-sdk-go openAPIDefinition.json @ 0afc13e218dc6b06194bf29253506721265449f5 (2025-10-26)"


def main(path):
    full = json.load(open(path))
    paths = {}
    for p, method in OPERATIONS:
        item = full["paths"][p]
        out = paths.setdefault(p, {})
        if "parameters" in item:
            out["parameters"] = item["parameters"]
        out[method] = item[method]
    components = {"schemas": {}, "responses": {}}
    pending = [json.dumps(paths)]
    while pending:
        text = pending.pop()
        for kind, name in re.findall(r"#/components/(schemas|responses)/([A-Za-z0-9_]+)", text):
            if name not in components[kind]:
                components[kind][name] = full["components"][kind][name]
                pending.append(json.dumps(components[kind][name]))
    doc = {
        "openapi": full["openapi"],
        "info": {"title": full["info"]["title"], "version": full["info"]["version"], "x-source": SOURCE},
        "paths": paths,
        "components": {k: dict(sorted(v.items())) for k, v in components.items()},
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
