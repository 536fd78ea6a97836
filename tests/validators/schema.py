#!/usr/bin/env python3
"""Validate wask.toml files against docs/wask.schema.json, the JSON Schema editors use.

The check is other people's: tomllib reads each file and the jsonschema package
(Draft 2020-12, the schema itself checked first) judges it. This script only drives
them, so the schema is tested the way an editor would read it.

Usage:
  schema.py SCHEMA FILE.toml...

Every error is printed on stderr with its file and JSON path. Exit 0 if every file is
valid ("ok: N files"); 1 if any is not; 2 on usage error or an invalid schema.
"""

from __future__ import annotations

import json
import sys
import tomllib

import jsonschema
from jsonschema.exceptions import best_match


def describe(error: jsonschema.ValidationError, schema: dict) -> str:
    """The error's message, readable: a pattern or a choice of forms is named by the
    schema's description (not its regex), a choice also by the form that came closest,
    and a whole-file rule (the top-level allOf) by its description."""
    sub = error.schema if isinstance(error.schema, dict) else {}
    if error.validator in ("pattern", "not", "oneOf", "anyOf") and "description" in sub:
        wanted = sub["description"]
        message = f"{error.instance!r}: wanted {wanted[:1].lower()}{wanted[1:]}"
    else:
        message = error.message
    if error.context:  # a oneOf/anyOf: the closest form, not one of another type
        forms = [e for e in error.context if e.validator != "type"] or list(error.context)
        closest = best_match(forms)
        message += f" (closest: {closest.json_path}: {describe(closest, schema)})"
    where = list(error.schema_path)
    if len(where) > 1 and where[0] == "allOf" and "description" not in sub:
        message += f" ({schema['allOf'][where[1]].get('description', 'a whole-file rule')})"
    return message


def errors_of(validator: jsonschema.Draft202012Validator, path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        return [f"{path}: cannot read: {e}"]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        return [f"{path}: not TOML: {e}"]
    found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{path}: {e.json_path}: {describe(e, validator.schema)}" for e in found]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        print(f"INVALID SCHEMA: {argv[0]}: {e}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    failed = 0
    for path in argv[1:]:
        errors = errors_of(validator, path)
        failed += bool(errors)
        for e in errors:
            print(f"INVALID: {e}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(argv) - 1} files invalid", file=sys.stderr)
        return 1
    print(f"ok: {len(argv) - 1} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
