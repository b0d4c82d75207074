"""Decode Stripe's form encoding (`a[b][0][c]=x`, `expand[]=y`) into nested dicts and lists.

Indexed keys stay dicts with string digits (`{"0": {...}}`): the validator turns them into lists
where the parameter spec says array, and reports the original bracket path in errors."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    """`items[0][price]` -> ["items", "0", "price"]; `expand[]` -> ["expand", ""]."""
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    rest = "[" + rest
    parts = [head]
    pos = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != pos:
            raise invalid(f"Invalid parameter name: {key}", key)
        parts.append(match.group(1))
        pos = match.end()
    if pos != len(rest):
        raise invalid(f"Invalid parameter name: {key}", key)
    return parts


def decode_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = split_key(key)
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `a[]=x`: append to a list
                if not isinstance(node, list):
                    raise invalid(f"Invalid array: {key}", key)
                if last:
                    node.append(value)
                else:
                    node.append({})
                    node = node[-1]
                continue
            if isinstance(node, list):
                raise invalid(f"Invalid array: {key}", key)
            nxt_is_list = not last and parts[i + 1] == ""
            if last:
                if isinstance(node.get(part), dict | list) and value == "":
                    node[part] = ""
                elif isinstance(node.get(part), dict | list):
                    raise invalid(f"Invalid parameter: {key}", key)
                else:
                    node[part] = value
            else:
                child = node.get(part)
                if child is None or isinstance(child, str):
                    child = [] if nxt_is_list else {}
                    node[part] = child
                node = child
    return root


def decode_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    if not body:
        return {}
    if content_type and "json" in content_type:
        import json

        try:
            data = json.loads(body.decode("utf-8"))
        except ValueError as exc:
            raise invalid("Invalid JSON body") from exc
        return _stringify(data) if isinstance(data, dict) else {}
    return decode_pairs(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def _stringify(value: Any) -> Any:
    """JSON bodies become the same strings form encoding would give."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): _stringify(v) for i, v in enumerate(value)}
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
