"""Reading request bodies and queries: JSON objects, checked field by field with clear errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from werkzeug.wrappers import Request

from transport.v1.errors import ApiError

Json = dict[str, Any]


def json_body(request: Request) -> Json:
    data = request.get_data() or b"{}"
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def optional_str(body: Json, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{name}: expected a string, got {type(value).__name__}")
    return value


def required_str(body: Json, name: str, where: str = "") -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{where}{name}: a non-empty string is required")
    return value


def reject_unsupported(body: Json, names: dict[str, str]) -> None:
    """A 400 for each field Berth does not support, saying why."""
    for name, why in names.items():
        value = body.get(name)
        if value not in (None, [], {}):
            raise ApiError(400, f"{name} is not supported by Berth: {why}")


def text_content(blocks: Any, where: str) -> str:
    """The text of a content-block list (text blocks only)."""
    if not isinstance(blocks, list) or not blocks:
        raise ApiError(400, f"{where}content: a non-empty list of content blocks is required")
    texts = []
    for index, block in enumerate(blocks):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise ApiError(
                400, f"{where}content[{index}]: only text blocks are supported by Berth (got {kind!r})"
            )
        texts.append(block["text"])
    return "\n".join(texts)


def limit_arg(request: Request, default: int, most: int) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ApiError(400, f"limit: an integer from 1 to {most} (got {raw!r})")
    return int(raw)


def order_arg(request: Request, default: str) -> str:
    order = request.args.get("order", default)
    if order not in ("asc", "desc"):
        raise ApiError(400, f"order: 'asc' or 'desc' (got {order!r})")
    return order


def list_arg(request: Request, name: str) -> list[str]:
    """A repeated query parameter (``name=a&name=b``, also ``name[]=a``)."""
    return request.args.getlist(name) + request.args.getlist(name + "[]")


def bool_arg(request: Request, name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, f"{name}: 'true' or 'false' (got {raw!r})")
    return raw in ("true", "1")


def time_bounds(request: Request) -> list[tuple[str, float]]:
    """``created_at[gt|gte|lt|lte]`` filters as (operator, Unix time)."""
    bounds = []
    for op in ("gt", "gte", "lt", "lte"):
        raw = request.args.get(f"created_at[{op}]")
        if raw is None:
            continue
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, f"created_at[{op}]: an RFC 3339 time is required (got {raw!r})") from None
        bounds.append((op, moment.timestamp()))
    return bounds


def within(moment: float, bounds: list[tuple[str, float]]) -> bool:
    for op, bound in bounds:
        ok = {"gt": moment > bound, "gte": moment >= bound, "lt": moment < bound, "lte": moment <= bound}[op]
        if not ok:
            return False
    return True
