"""Berth's configuration sources: a TOML file, ``BERTH_<FIELD>`` variables, flags.

Every field of ``BerthConfig``, ``ServerSettings`` and ``ClientSettings`` can be set from each
source; a later source wins (file < environment < flag). The defaults are the
dataclasses' own, so they are defined once, and the raw values are decoded
and validated by one ``msgspec.convert`` call per dataclass. Flags are
generated from the fields, so a field added later gets its flag, its variable
and its file key with no change here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from actors.config import BerthConfig
from actors.secret import Secret
from transport.settings import ClientSettings, ServerSettings

T = TypeVar("T")

ENV_PREFIX = "BERTH_"
#: Short spellings kept from earlier versions of the command line.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "instance_id": ("--instance",),
    "agent_runner": ("--runner",),
    "warm_pool_size": ("--warm",),
}
#: Older variable names still honoured (below the ``BERTH_`` ones).
ENV_ALIASES: dict[str, str] = {"github_token": "GITHUB_TOKEN"}
CONFIGURED = (BerthConfig, ServerSettings, ClientSettings)


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Loaded:
    """The effective configuration and where each value came from."""

    config: BerthConfig
    server: ServerSettings
    client: ClientSettings
    #: field name -> "default", "<file path>", "env BERTH_X" or "flag --x".
    sources: dict[str, str]

    def values(self) -> dict[str, Any]:
        return {**_as_dict(self.config), **_as_dict(self.server), **_as_dict(self.client)}


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "berth" / "config.toml"


def fields() -> dict[str, dataclasses.Field[Any]]:
    """Every configurable field by name, across both dataclasses."""
    found: dict[str, dataclasses.Field[Any]] = {}
    for cls in CONFIGURED:
        for f in dataclasses.fields(cls):
            found[f.name] = f
    return found


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_flags(parser: argparse.ArgumentParser, skip_aliases: tuple[str, ...] = ()) -> None:
    """One flag per field; absent flags leave no attribute (SUPPRESS)."""
    group = parser.add_argument_group("configuration (also BERTH_<FIELD> and the config file)")
    group.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML configuration file (default {default_config_file()})",
    )
    hints = _hints()
    for name, f in fields().items():
        kind = hints[name]
        default = f.default if f.default is not dataclasses.MISSING else "computed"
        helptext = f"env {env_name(name)}; default {shown_value(default)}"
        names = (flag_name(name), *(a for a in FLAG_ALIASES.get(name, ()) if a not in skip_aliases))
        dest = f"cfg_{name}"
        if _is_pairs(kind):
            group.add_argument(
                *names,
                dest=dest,
                action="append",
                default=argparse.SUPPRESS,
                metavar="KEY=VALUE",
                help=helptext,
            )
        else:
            group.add_argument(
                *names, dest=dest, default=argparse.SUPPRESS, metavar=_metavar(kind), help=helptext
            )


def load(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Loaded:
    """The configuration from the file, the environment and ``args`` (flags)."""
    environ = os.environ if environ is None else environ
    flags = vars(args) if args is not None else {}
    explicit = flags.get("config") or config_file or environ.get(ENV_PREFIX + "CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_file()
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in _read_file(path, required=bool(explicit)).items():
        raw[name], sources[name] = value, str(path)
    hints = _hints()
    for name in fields():
        for variable in (ENV_ALIASES.get(name), env_name(name)):
            if variable and variable in environ:
                raw[name], sources[name] = _from_text(name, hints[name], environ[variable]), f"env {variable}"
        if f"cfg_{name}" in flags:
            given = flags[f"cfg_{name}"]
            value = (
                _from_pairs(name, given) if _is_pairs(hints[name]) else _from_text(name, hints[name], given)
            )
            raw[name], sources[name] = value, f"flag {flag_name(name)}"
    for name in fields():
        sources.setdefault(name, "default")
    config = _convert(BerthConfig, raw, sources)
    server = _convert(ServerSettings, raw, sources)
    client = _convert(ClientSettings, raw, sources)
    return Loaded(config, server, client, sources)


def _read_file(path: Path, required: bool) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"config file {path} does not exist (given by --config or BERTH_CONFIG)"
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    known = fields()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key {unknown[0]!r}; the keys are the names `berth config` lists"
        )
    hints = _hints()
    out: dict[str, Any] = {}
    for name, value in data.items():
        if _is_pairs(hints[name]) and isinstance(value, dict):
            value = [[str(k), str(v)] for k, v in value.items()]
        elif value == "" and _is_optional(hints[name]):
            value = None
        out[name] = value
    return out


def _from_text(name: str, kind: Any, text: str) -> Any:
    """A flag or variable's text, shaped for msgspec (which does the typing)."""
    if text == "" and _is_optional(kind):
        return None
    if _is_pairs(kind):
        return _from_pairs(name, shlex.split(text))
    if _is_sequence(kind):
        return shlex.split(text)
    return text


def _from_pairs(name: str, items: list[str]) -> list[list[str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{name}: {item!r} is not KEY=VALUE")
        pairs.append([key, value])
    return pairs


def _convert(cls: type[T], raw: dict[str, Any], sources: dict[str, str]) -> T:
    own = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data = {k: v for k, v in raw.items() if k in own}
    try:
        return msgspec.convert(data, cls, strict=False, dec_hook=_decode_extra)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), data, sources) from None


def _decode_extra(kind: type, value: Any) -> Any:
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    if kind is Path and isinstance(value, str):
        return Path(value).expanduser()
    raise TypeError(f"Expected `str`, got `{type(value).__name__}`")


def _explain(message: str, data: dict[str, Any], sources: dict[str, str]) -> ConfigError:
    located = re.search(r"at `\$\.(\w+)", message)
    mentioned = sorted((n for n in data if n in message), key=len, reverse=True)
    name = located.group(1) if located else next(iter(mentioned), None)
    if name is None:
        return ConfigError(f"bad configuration: {message}")
    value = data.get(name)
    shown = Secret(value).masked if isinstance(value, str) and _secret(name) else value
    reason = re.sub(r" - at `\$[^`]*`$", "", message)
    if reason.startswith("Expected"):
        reason = f"expected {_describe(_hints()[name])}"
    return ConfigError(f"{name} = {shown!r} (from {sources.get(name, 'default')}) is not allowed: {reason}")


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _secret(name: str) -> bool:
    return _hints()[name] in (Secret, Secret | None)


def shown_value(value: Any) -> str:
    """A value as `berth config` prints it; secrets masked."""
    if isinstance(value, Secret):
        return value.masked
    if value is None or value == ():
        return "(none)"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return " ".join(f"{k}={v}" for k, v in value)
    if isinstance(value, tuple):
        return shlex.join(value)
    return str(value)


def _hints() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for cls in CONFIGURED:
        hints.update(typing.get_type_hints(cls))
    return hints


def _args(kind: Any) -> tuple[Any, ...]:
    return typing.get_args(kind)


def _is_optional(kind: Any) -> bool:
    return isinstance(kind, types.UnionType) and type(None) in _args(kind)


def _strip_optional(kind: Any) -> Any:
    if _is_optional(kind):
        return next(a for a in _args(kind) if a is not type(None))
    return kind


def _is_sequence(kind: Any) -> bool:
    return typing.get_origin(_strip_optional(kind)) is tuple


def _is_pairs(kind: Any) -> bool:
    inner = _args(_strip_optional(kind))
    return _is_sequence(kind) and bool(inner) and typing.get_origin(inner[0]) is tuple


def _metavar(kind: Any) -> str:
    base = _strip_optional(kind)
    return {int: "N", float: "SECONDS", bool: "BOOL", Path: "PATH", Secret: "SECRET"}.get(base, "TEXT")


def _describe(kind: Any) -> str:
    base = _strip_optional(kind)
    names = {
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        Path: "a path",
        Secret: "a string",
        str: "a string",
    }
    if _is_pairs(kind):
        text = "KEY=VALUE pairs"
    elif _is_sequence(kind):
        text = "a list of words"
    else:
        text = names.get(base, str(base))
    return text + (" (empty for none)" if _is_optional(kind) else "")
