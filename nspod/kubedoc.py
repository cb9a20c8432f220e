"""Typed access to a manifest document, each error naming the field's path.

Doc's getters raise UsageError (`spec.containers[1].ports[0].hostPort:
expected an integer`); `leftovers` turns every key a reader did not take
into one warning. Pure: no root, no kernel, no YAML.
"""

from __future__ import annotations

import re
from typing import Any

from nspod.errors import UsageError


class Doc:
    """Reads one document: typed getters raise UsageError naming the path; every
    key a reader does not take is reported once by `leftovers`."""

    def __init__(self, where: str, warnings: list[str]) -> None:
        self.where = where
        self.warnings = warnings

    def fail(self, path: str, why: str) -> UsageError:
        return UsageError(f"{self.where}{path}: {why}")

    def warn(self, path: str, why: str = "not supported, ignored") -> None:
        self.warnings.append(f"{self.where}{path}: {why}")

    def mapping(self, value: object, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "expected a mapping")
        return value

    def seq(self, value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "expected a list")
        return value

    def string(self, value: object, path: str, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise self.fail(path, "required")
            return None
        if not isinstance(value, str):
            raise self.fail(path, "expected a string")
        return value

    def integer(self, value: object, path: str, lo: int | None = None,
                hi: int | None = None) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, "expected an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(path, f"{value} is out of range {lo}-{hi}")
        return value

    def boolean(self, value: object, path: str) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(path, "expected true or false")
        return value

    def strings(self, value: object, path: str) -> tuple[str, ...] | None:
        if value is None:
            return None
        items = self.seq(value, path)
        return tuple(str(self.string(v, f"{path}[{i}]", True)) for i, v in enumerate(items))

    def string_map(self, value: object, path: str) -> tuple[tuple[str, str], ...]:
        m = self.mapping(value, path)
        out = []
        for k, v in m.items():
            if not isinstance(v, str):
                raise self.fail(f"{path}.{k}", "expected a string")
            out.append((str(k), v))
        return tuple(out)

    def leftovers(self, m: dict[str, Any], path: str, known: set[str]) -> None:
        prefix = f"{path}." if path else ""
        for key in m:
            if key not in known:
                self.warn(f"{prefix}{key}")


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label, as Kubernetes wants


def dns_label(doc: Doc, value: object, path: str) -> str:
    name = doc.string(value, path, required=True)
    assert name is not None
    if len(name) > 63 or not _NAME.match(name):
        raise doc.fail(path, f"{name!r} is not a valid name (lower-case letters, digits and "
                             "'-', at most 63)")
    return name
