"""Options declared once, on the dataclass that uses them.

Its CLI flags and recipe checks derive from it.

A field made with `option(...)` carries its help text, allowed values and bounds. Three readers
apply the same rules with the same words: `click_options(cls)` turns the fields into click options
(bool fields become `--x/--no-x`, or a plain flag when they default to False), `check_value` checks
a value read from a recipe, and `check_fields` checks an instance built in Python (its
`__post_init__`). No torch here: the CLIs build their `--help` from this module.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence

import click


def option(
    default,
    help: str = "",
    *,
    choices: Sequence[str] | None = None,
    min: int | float | None = None,
    max: int | float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    flag: str | None = None,
    aliases: Sequence[str] = (),
    show_default: bool = True,
    cli: bool = True,
) -> typing.Any:  # a dataclasses.Field, typed as its value (as dataclasses.field is)
    """A dataclass field with what its flag says.

    Help, choices, bounds (`min` <= value <= `max`, or strictly inside a bound marked open by
    `min_open` / `max_open`), a flag name other than `--field-name`, old spellings that still work
    but stay out of --help (`aliases`, e.g. "--model"); `cli=False` keeps it off the command line
    (set by the program, not the user).
    """
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "min_open": min_open,
        "max_open": max_open,
    }
    meta |= {"flag": flag, "show_default": show_default}
    meta |= {"cli": cli, "aliases": tuple(aliases)}
    return dataclasses.field(default=default, metadata=meta)


def click_options(cls: type, *, skip: Sequence[str] = ()) -> Callable:
    """A decorator adding one click option per `option` field of `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    declared = [
        f for f in dataclasses.fields(cls) if f.metadata.get("cli", False) and f.name not in skip
    ]

    def decorate(command):
        for f in reversed(declared):
            command = _click_option(f, hints[f.name])(command)
        return command

    return decorate


def check_value(cls: type, name: str, value) -> str | None:
    """What is wrong with `value` for field `name` of `cls` (as a recipe gives it), or None."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    kind = _base_type(hint)
    choices = f.metadata.get("choices")
    if value is None:
        return None
    if kind is tuple:
        item = _item_type(hint)
        items_ok = isinstance(value, list) and value and all(_is_a(v, item) for v in value)
        if not items_ok or (choices is not None and not set(value) <= set(choices)):
            return f"a non-empty list of {', '.join(choices) if choices else item.__name__ + 's'}"
        return None
    if not _is_a(value, kind):
        return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
    return _rule_problem(f, kind, value)


def check_fields(instance) -> None:
    """Refuse an instance whose fields break their declared choices or bounds.

    Types are the caller's: a library user may pass a Path or a numpy number.

    Raises:
        ValueError: naming the flag, the value and what it must be.
    """
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        value, kind = getattr(instance, f.name), _base_type(hints[f.name])
        values = value if kind is tuple and isinstance(value, tuple) else (value,)
        for item in values:
            wanted = None if item is None or kind is bool else _rule_problem(f, kind, item)
            if wanted:
                raise ValueError(f"{flag_of(f)} {item!r}: must be {wanted}")


def refuse_contradicting_weights(weights, pretrained: bool | None) -> None:
    """Refuse `--weights FILE --no-pretrained`: a file of weights is pretrained weights.

    `pretrained` None (not given) contradicts nothing.
    """
    if pretrained is False and weights is not None:
        raise ValueError(
            f"--weights {weights} and --no-pretrained contradict each other; give one of them"
        )


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a field: `--backbone` for `model`, `--label-smoothing`, ..."""
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def _rule_problem(f: dataclasses.Field, kind: type, value) -> str | None:
    """What a value of the right type must be to satisfy the field's choices and bounds, or None."""
    choices = f.metadata.get("choices")
    if choices is not None:
        return None if value in choices else f"one of {', '.join(map(str, choices))}"
    low, high, open_low, open_high = (
        f.metadata.get(k) for k in ("min", "max", "min_open", "max_open")
    )
    if kind not in (int, float) or (low is None and high is None):
        return None
    above = low is None or (value > low if open_low else value >= low)
    below = high is None or (value < high if open_high else value <= high)
    if above and below:
        return None
    return _bounds_phrase(kind, low, high, bool(open_low), bool(open_high))


def _bounds_phrase(kind: type, low, high, open_low: bool, open_high: bool) -> str:
    what = "an integer" if kind is int else "a number"
    if high is None:
        return f"{what} {'>' if open_low else '>='} {low:g}"
    if low is None:
        return f"{what} {'<' if open_high else '<='} {high:g}"
    return f"{what} in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def field_names(cls: type, *, cli_only: bool = True) -> tuple[str, ...]:
    """The fields of an options dataclass (only those that are flags, by default)."""
    return tuple(
        f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", False) or not cli_only
    )


class AliasedOption(click.Option):
    """An option whose old spellings (every name after the first) work but stay out of --help."""

    def get_help_record(self, ctx):
        """Show only the option's first name in `--help`."""
        shown, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def _click_option(f: dataclasses.Field, hint) -> Callable:
    meta, kind = f.metadata, _base_type(hint)
    flag = flag_of(f)
    names = (flag, *meta["aliases"], f.name) if meta["flag"] else (flag, *meta["aliases"])
    kwargs = {
        "default": f.default,
        "help": meta["help"] or None,
        "show_default": meta["show_default"],
    }
    if meta["aliases"]:
        kwargs["cls"] = AliasedOption
    if kind is tuple:  # a comma-separated list on the command line
        kwargs["default"] = ",".join(map(str, typing.cast(tuple, f.default)))
        item = _item_type(hint)
        empty_ok = not typing.cast(tuple, f.default)  # an empty default: none is a value
        parse = _comma_list(item, meta["choices"], empty_ok=empty_ok)
        return click.option(*names, callback=parse, **kwargs)
    if kind is bool:
        if f.default is False:
            return click.option(*names, is_flag=True, help=kwargs["help"])
        return click.option(f"{flag}/--no-{flag[2:]}", *names[1:], **kwargs)
    if meta["choices"] is not None:
        kwargs["type"] = click.Choice(list(meta["choices"]))
    else:
        kwargs["type"] = kind
        if meta["min"] is not None or meta["max"] is not None:
            kwargs["callback"] = _within_bounds(f, kind)
    if f.default is None:
        kwargs["show_default"] = False
    return click.option(*names, **kwargs)


def _within_bounds(f: dataclasses.Field, kind: type) -> Callable:
    """A click callback refusing values outside the field's bounds, in `check_fields`'s words."""

    def check(ctx, param, value):
        wanted = None if value is None else _rule_problem(f, kind, value)
        if wanted:
            raise click.BadParameter(f"{value!r}: must be {wanted}")
        return value

    return check


def _is_a(value, kind: type) -> bool:
    """A TOML value of the field's type (a bool is not a number; an integer is a float)."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def _comma_list(item: type, choices: Sequence[str] | None, *, empty_ok: bool = False) -> Callable:
    what = (
        f"choose from {', '.join(choices)}"
        if choices
        else f"expected comma-separated {item.__name__}s"
    )

    def parse(ctx, param, value: str) -> tuple:
        try:
            values = tuple(item(v.strip()) for v in value.split(",") if v.strip())
        except ValueError as e:
            raise click.BadParameter(f"{value!r}: {what}") from e
        if (not values and not empty_ok) or any(choices and v not in choices for v in values):
            raise click.BadParameter(f"{value!r}: {what}")
        return values

    return parse


def _item_type(hint) -> type:
    """`tuple[int, ...]` (or that `| None`) -> int."""
    return typing.get_args(_without_none(hint))[0]


def _base_type(hint) -> type:
    """`int | None` -> int; `str` -> str; `tuple[str, ...]` -> tuple."""
    hint = _without_none(hint)
    return typing.get_origin(hint) or hint


def _without_none(hint):
    """`X | None` -> X; any other hint as it is."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint
