"""Extract one version's OpenAPI schema from an upstream CRD file, as the JSON vendored
beside this script (see README.md): ``python vendor.py CRD.yaml VERSION > OUT.json``.

Descriptions are dropped (they are most of the bytes and validate nothing); every other
keyword is kept as upstream wrote it, ``x-kubernetes-*`` extensions included.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ruamel.yaml import YAML


def strip(schema: Any) -> Any:
    """The schema without ``description`` keywords (a property *named* description, in a
    ``properties`` map, stays)."""
    if isinstance(schema, list):
        return [strip(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: strip(sub) for name, sub in value.items()}
        else:
            out[key] = strip(value)
    return out


def main() -> None:
    path, version = sys.argv[1], sys.argv[2]
    with open(path) as stream:
        (crd,) = [d for d in YAML(typ="safe").load_all(stream) if d]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = strip(served["schema"]["openAPIV3Schema"])
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
