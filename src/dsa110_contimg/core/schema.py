"""The configuration schema machinery: pydantic v2 models that fail with one clear line.

Every section of the configuration (``[paths]``, ``[photometry]``, ``[daemon]``,
``[logging]``, ``[web]``) is a :class:`ConfigModel`: an immutable pydantic model whose
fields carry their type, their limits and their documentation (the attribute docstring
under each field). Validation is pydantic's; what reaches the caller is always a
:class:`~dsa110_contimg.core.errors.ConfigError` naming the key, the value and what is
allowed (plus the file when the values came from one), never a pydantic
``ValidationError``.

What is allowed for a key is, in order: the text an ``invalid(...)`` raised by a validator
gives, the :class:`Allowed` marker in the field's ``Annotated`` metadata, or a sentence
derived from the field's type and limits (``an integer in [1, 64]``, ``a number > 0``,
``true or false``).

Types shared by the sections:

:data:`Directory` / :data:`FilePath`
    A path; ``$VAR`` and ``~`` are expanded and a relative path is resolved against the
    folder of the configuration file (the ``base`` of the validation context; without a
    context, e.g. a model built in code, it is kept as written).
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Mapping

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    PlainValidator,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from dsa110_contimg.core.errors import ConfigError, UnknownKey

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Allowed:
    """``Annotated`` marker: what a key accepts, as written in error messages."""

    text: str


def invalid(allowed: str, *, field: str | None = None, value: Any = _MISSING) -> PydanticCustomError:
    """The error a validator raises: ``allowed`` says what would be accepted.

    ``field`` names the key when the check spans several keys (a model validator);
    ``value`` replaces the value shown (e.g. a database URL with its password masked).
    """
    ctx: dict[str, Any] = {"allowed": allowed}
    if field is not None:
        ctx["field"] = field
    if value is not _MISSING:
        ctx["value"] = value
    return PydanticCustomError("config", "{allowed}", ctx)


def resolve_path(value: Any, info: ValidationInfo | None) -> Path:
    """A path value: ``str`` or ``PathLike`` -> :class:`Path` with ``$VAR`` and ``~`` expanded,
    relative paths resolved against the context's ``base`` folder when there is one."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise invalid("a non-empty path string")
    path = Path(os.path.expandvars(value)).expanduser()
    base = (info.context or {}).get("base") if info is not None else None
    if base is not None and not path.is_absolute():
        path = (Path(base) / path).resolve()
    return path


#: A folder; relative to the configuration file's folder.
Directory = Annotated[Path, PlainValidator(resolve_path), Allowed("a non-empty path string")]
#: A file; relative to the configuration file's folder.
FilePath = Annotated[Path, PlainValidator(resolve_path), Allowed("a non-empty path string")]


def one_of(options, aliases: Mapping[str, str] | None = None, *, fold_case: bool = False,
           suffix: str = ""):
    """A ``str`` field restricted to ``options`` (``aliases`` map other spellings on them)."""
    text = "one of " + ", ".join(options) + suffix

    def check(value):
        if not isinstance(value, str):
            raise invalid(text)
        key = value.lower() if fold_case else value
        key = (aliases or {}).get(key, key)
        if key not in options:
            raise invalid(text)
        return key

    return Annotated[str, PlainValidator(check), Allowed(text)]


class ConfigModel(BaseModel):
    """Base of every configuration section: immutable, unknown keys refused, strict types
    (``1`` is not ``true``, ``"2"`` is not ``2``; an integer is a valid number), no NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False,
                              use_attribute_docstrings=True, hide_input_in_errors=True)

    #: Comment written above the section in the documented TOML file.
    toml_comment: ClassVar[str] = ""

    def __init__(self, /, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self)) from None

    # Only translates the error: validation from a mapping (model_validate, nested sections)
    # must not go through this __init__, which would drop the validation context.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str):
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    @classmethod
    def validate_dict(cls, data: Mapping[str, Any] | None, *, context: Mapping[str, Any] | None = None,
                      prefix: str = "", source: str | Path | None = None):
        """Build from a plain mapping (a TOML table, JSON parameters).

        ``context={"base": folder}`` resolves relative paths against ``folder``.
        Raises :class:`ConfigError` (key prefixed by ``prefix``, message naming ``source``).
        """
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(prefix.rstrip(".") or "(configuration)", data, "a [table]", source)
        try:
            return cls.model_validate(dict(data or {}), context=dict(context or {}))
        except ValidationError as exc:
            raise config_error(exc, cls, prefix=prefix, source=source) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict (paths as strings, tuples as lists)."""
        return self.model_dump(mode="json")

    def replace(self, **overrides: Any):
        """A copy with some fields changed (validated again); unknown names are errors."""
        fields = type(self).model_fields
        for key in overrides:
            if key not in fields:
                raise UnknownKey(key, overrides[key], list(fields))
        return type(self)(**{**{name: getattr(self, name) for name in fields}, **overrides})


# -- errors -------------------------------------------------------------------------------
def config_error(exc: ValidationError, model: type[BaseModel], *, prefix: str = "",
                 source: str | Path | None = None) -> ConfigError:
    """The first error of ``exc`` as a :class:`ConfigError`: the dotted key, the value given and
    what is allowed (from the validator, the field's :class:`Allowed` marker or its type)."""
    err = exc.errors(include_url=False)[0]
    ctx = err.get("ctx") or {}
    names: list[str] = []
    owner: type[BaseModel] = model
    info = None
    for part in err["loc"]:
        if isinstance(part, str) and part in owner.model_fields:
            names.append(part)
            info = owner.model_fields[part]
            sub = _model_of(info.annotation)
            if sub is None:
                break
            owner, info = sub, None
        else:
            if isinstance(part, str) and err["type"] == "extra_forbidden":
                names.append(part)
            break
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        section = not prefix and len(names) == 1 and isinstance(value, Mapping)   # a [table]
        return UnknownKey(prefix + ".".join(names), value, _public_keys(owner), source,
                          section=section)
    if err["type"] == "config":
        allowed = ctx["allowed"]
        if "field" in ctx:
            names.append(ctx["field"])
        value = ctx.get("value", value)
    elif info is not None:
        allowed = allowed_text(info)
    else:
        allowed = f"a [table] of the keys {', '.join(sorted(_public_keys(owner)))}"
    return ConfigError(prefix + ".".join(names) if names else prefix.rstrip(".") or "(configuration)",
                       value, allowed, source)


def _public_keys(model: type[BaseModel]) -> list[str]:
    return [name for name, f in model.model_fields.items() if not (f.json_schema_extra or {}).get("internal")]


def _model_of(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _unwrap(annotation):
    """(inner type, optional) of ``X | None`` / ``Optional[X]`` / ``Annotated[X, ...]``."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _find_allowed(annotation) -> str | None:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, Allowed):
                return meta.text
        return _find_allowed(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _find_allowed(arg)
            if found is not None:
                return found
    return None


def allowed_text(info) -> str:
    """What a field accepts, in words (its :class:`Allowed` marker, else from type and limits)."""
    for meta in info.metadata:
        if isinstance(meta, Allowed):
            return meta.text
    inner, optional = _unwrap(info.annotation)
    found = _find_allowed(info.annotation)
    if found is not None:
        return found + (" (or leave the key out)" if optional else "")
    limits = {type(m).__name__: next(iter(dataclasses.asdict(m).values())) for m in info.metadata
              if isinstance(m, (annotated_types.Gt, annotated_types.Ge, annotated_types.Lt,
                                annotated_types.Le))}
    if inner is bool:
        text = "true or false"
    elif inner is int:
        lo, hi = limits.get("Ge"), limits.get("Le")
        if lo is not None and hi is not None:
            text = f"an integer in [{lo}, {hi}]"
        else:
            text = "an integer" + "".join(f" {op} {limits[k]}" for k, op in
                                         (("Gt", ">"), ("Ge", ">="), ("Lt", "<"), ("Le", "<="))
                                         if k in limits)
    elif inner is float:
        parts = [f"{op} {limits[k]}" for k, op in (("Gt", ">"), ("Ge", ">="), ("Lt", "<"), ("Le", "<="))
                 if k in limits]
        text = "a number" + (" " + " and ".join(parts) if parts else "")
    elif inner is str:
        text = "a string"
    else:
        text = f"a value of type {getattr(inner, '__name__', inner)}"
    return text + (" (or leave the key out)" if optional else "")


# -- the documented TOML file ---------------------------------------------------------------
def toml_value(value) -> str:
    """``value`` as a TOML literal (booleans, numbers, strings, arrays)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))   # a TOML basic string (same escapes as JSON)


def comment(text: str, width: int = 94) -> list[str]:
    """``text`` as ``# `` comment lines: paragraphs wrapped, lines starting with a space kept."""
    out: list[str] = []
    for n, para in enumerate(textwrap.dedent(text).strip().split("\n\n")):
        if n:
            out.append("")
        block: list[str] = []
        for line in para.splitlines():
            if line.startswith(" "):
                if block:
                    out += textwrap.wrap(" ".join(block), width - 2)
                    block = []
                out.append(line)
            else:
                block.append(line.strip())
        if block:
            out += textwrap.wrap(" ".join(block), width - 2)
    return [("# " + line).rstrip() for line in out]


def section_toml(name: str, model: type[ConfigModel]) -> list[str]:
    """The ``[name]`` table of ``model``: each key's docstring as a comment above it, its
    default (or documented value) as the value; a key without default is shown commented
    out with its example."""
    lines = [f"[{name}]"]
    if model.toml_comment:
        lines += comment(model.toml_comment)
    for key, info in model.model_fields.items():
        extra = info.json_schema_extra or {}
        if extra.get("internal"):
            continue
        if info.description:
            lines += comment(info.description)
        value = extra["toml"] if "toml" in extra else info.get_default(call_default_factory=True)
        if value is None:
            lines.append(f"# {key} = {toml_value(extra['example'])}")
        else:
            if isinstance(value, Path):
                value = str(value)
            lines.append(f"{key} = {toml_value(value)}")
    return lines
