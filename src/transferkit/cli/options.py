"""Command-line flags generated from config fields: one declaration per option.

A verb's config class (pydantic) holds each option once: name, type, default, bounds and help text. A command
lists the configs it takes with :class:`ConfigFlags`, and :func:`config_flags` adds a flag per field to the
command's signature, which Typer reads as usual:

- the flag is the field's name in kebab case (``batch_size`` -> ``--batch-size``); options of a section carry the
  section's name (``lora.rank`` -> ``--lora-rank``) unless the section is unprefixed (``finetune.freeze`` ->
  ``--freeze``, see :func:`transferkit.options.flag_name`); so a YAML key and its flag share a name;
- the help text is the field's description, with its default; the choices of a ``Literal`` are the flag's metavar;
- a boolean is a switch (``--calibrate``), or a pair (``--report/--no-report``) when it defaults to on;
- a list is one comma-separated value (``--baselines raw,scratch``);
- every flag defaults to "not given" (``None``), so a YAML file's value is overridden only by flags that were given;
  values are checked once, by the config class, with the same messages for YAML keys and flags.

The command receives the given values as one nested mapping (``{"lr": 0.01, "lora": {"rank": 4}}``) ready for
:func:`transferkit.config.merge_config`. A field that cannot be a flag (a mapping) or does not apply to the command
is listed in ``exclude`` with the reason; an unlisted field of an unknown type is an error when the command is
defined, so a new field always gets its flag.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Mapping, Optional

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from transferkit.options import flag_name

#: One-letter aliases, the same in every command that has the option.
SHORT_FLAGS = {"backbone": "-b", "strategy": "-s", "output": "-o"}


@dataclass(frozen=True)
class ConfigFlags:
    """The flags one command takes from one config class.

    ``into``: the command's parameter that receives the given values. ``exclude``: option -> why the command has
    no flag for it (a dotted name for a section's option). ``declared``: options the command declares itself (an
    argument such as DATA). ``names``: option -> flag, where the generated name is taken by another option of the
    command. ``help``: option -> this command's meaning, where it differs from the field's. ``panels``: option or
    section -> the help panel it is listed under. ``short``: option -> a one-letter alias (besides
    :data:`SHORT_FLAGS`)."""

    config: type[BaseModel]
    into: str = "options"
    exclude: Mapping[str, str] = field(default_factory=dict)
    declared: tuple[str, ...] = ()
    names: Mapping[str, str] = field(default_factory=dict)
    help: Mapping[str, str] = field(default_factory=dict)
    panels: Mapping[str, str] = field(default_factory=dict)
    short: Mapping[str, str] = field(default_factory=dict)

    def flags(self) -> list["Flag"]:
        """One :class:`Flag` per field that has one in this command, in the config's order."""
        return list(_walk(self, self.config, ""))


@dataclass(frozen=True)
class Flag:
    """One generated flag: the option it sets (``lora.rank``), its spelling and how Typer declares it."""

    option: str
    name: str
    dest: str
    kind: Literal["bool", "list", "value"]
    annotation: Any
    default: Any

    def value(self, given: Any) -> Any:
        """The option's value from what Typer parsed (``None``: not given)."""
        if self.kind == "list" and given is not None:
            return [part.strip() for part in given.split(",") if part.strip()] if given else None
        return given


def sections(config: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``config`` that are sections (configs of their own: ``finetune``, ``lora``, ...)."""
    return tuple(name for name, info in config.model_fields.items()
                 if isinstance(_unwrap_optional(info.annotation), type)
                 and issubclass(_unwrap_optional(info.annotation), BaseModel))


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _help(info: FieldInfo, override: str | None, section: str = "") -> str:
    """The field's description as a help sentence, led by its section's users (``lora: ...``) and ending with the
    default where the description does not state it."""
    text = (override or info.description or "").strip()
    if not text:
        return ""
    if section and not text.split(" ", 1)[0].endswith(":"):
        text = f"{section}: {text}"
    if not text.split(" ", 1)[0].endswith((",", ":")):  # "cpu, cuda, ..." and "lora: ..." name values: as written
        text = text[0].upper() + text[1:]
    if not text.endswith("."):
        text += "."
    default = info.get_default(call_default_factory=True)
    if "default" not in text.lower() and default not in (None, False, "", [], {}):
        shown = "on" if default is True else ",".join(map(str, default)) if isinstance(default, list) else default
        text += f" Default: {shown}."
    return text


def _own_fields_first(config: type[BaseModel]) -> list[str]:
    """The fields of ``config``, those it declares itself before those of its bases (the verb's own options lead
    its help)."""
    names: list[str] = []
    for cls in config.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            names += [n for n in inspect.get_annotations(cls) if n in config.model_fields and n not in names]
    return names


def _walk(spec: ConfigFlags, config: type[BaseModel], section: str, lead: str = "") -> Iterator[Flag]:
    for field_name in _own_fields_first(config):
        info = config.model_fields[field_name]
        key = info.alias or field_name
        option = f"{section}.{key}" if section else key
        if option in spec.exclude or option in spec.declared or (section and section in spec.exclude):
            continue
        annotation = _unwrap_optional(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            users, said, _ = (info.description or "").partition(": ")  # "lora: rank, ..." -> "lora"
            yield from _walk(spec, annotation, option, users if said else "")
            continue
        yield _flag(spec, option, info, annotation, lead)


def _flag(spec: ConfigFlags, option: str, info: FieldInfo, annotation: Any, lead: str) -> Flag:
    name = spec.names.get(option, flag_name(option))
    dest = f"{spec.into}__{option.replace('.', '__')}"
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    origin = typing.get_origin(annotation)
    panel = spec.panels.get(option) or spec.panels.get(option.partition(".")[0])
    short = spec.short.get(option) or SHORT_FLAGS.get(option)
    decls = [name, short] if short else [name]
    metavar = None
    if annotation is bool:
        kind, python_type = "bool", bool
        if info.get_default(call_default_factory=True) is True:
            decls[0] = f"{name}/--no-{name.removeprefix('--')}"
    elif origin in (list, tuple):
        kind, python_type = "list", str
        (item,) = typing.get_args(annotation)[:1]
        choices = typing.get_args(item) if typing.get_origin(item) is Literal else ()
        metavar = ",".join(choices) if choices else "A,B,..."
    elif origin is Literal:
        kind, python_type = "value", type(typing.get_args(annotation)[0])
        metavar = "[" + "|".join(map(str, typing.get_args(annotation))) + "]"
    elif extra.get("cli_parse") == "config":  # a string the config parses (a duration such as 20m)
        kind, python_type = "value", str
    elif annotation in (int, float, str):
        kind, python_type = "value", annotation
    else:
        raise TypeError(f"{spec.config.__name__}.{option}: a {annotation!r} field has no flag; list it in exclude "
                        "with the reason (e.g. a mapping, given in a YAML config).")
    default = typer.Option(None, *decls, help=_help(info, spec.help.get(option), lead), metavar=metavar,
                           rich_help_panel=panel, show_default=False)
    return Flag(option, name, dest, kind, Optional[python_type], default)


def _nest(values: dict[str, Any], option: str, value: Any) -> None:
    section, _, name = option.partition(".")
    if name:
        _nest(values.setdefault(section, {}), name, value)
    else:
        values[option] = value


def config_flags(*specs: ConfigFlags) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command (below ``@app.command()``) with the flags of ``specs``: its signature gains one keyword
    parameter per flag, and each spec's ``into`` parameter receives the given values as a nested mapping."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        hints = typing.get_type_hints(command, include_extras=True)
        receivers = {spec.into for spec in specs}
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in signature.parameters.values() if p.name not in receivers]
        flags = {spec.into: spec.flags() for spec in specs}
        generated = [inspect.Parameter(f.dest, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                       annotation=f.annotation) for fs in flags.values() for f in fs]
        names = [f.name for fs in flags.values() for f in fs]
        clash = {n for n in names if names.count(n) > 1}
        if clash:
            raise TypeError(f"{command.__name__}: two options share the flags {sorted(clash)}; rename one in names.")

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            for into, spec_flags in flags.items():
                values: dict[str, Any] = {}
                for flag in spec_flags:
                    value = flag.value(kwargs.pop(flag.dest))
                    if value is not None:
                        _nest(values, flag.option, value)
                kwargs[into] = values
            return command(**kwargs)

        parameters = own + generated
        run.__signature__ = inspect.Signature(parameters, return_annotation=signature.return_annotation)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        del run.__wrapped__  # Typer must read the generated signature, not the command's
        return run

    return decorate
