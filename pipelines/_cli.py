"""Turns a pipeline's ``Args`` dataclass into a command line (CleanRL style).

Each field becomes ``--field-name``; its type annotation gives the parser type and the string
literal under the field (its attribute docstring) becomes the ``--help`` text.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from ddso.errors import UserError

T = TypeVar("T")


def _field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def parse_args(cls: type[T], argv: list[str] | None = None) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    parser = argparse.ArgumentParser(
        description=(cls.__module__ + ": " + (cls.__doc__ or "")).strip()
    )
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _base_type(hints[f.name])
        flag = f"--{f.name.replace('_', '-')}"
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = (
            None
            if required
            else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        )
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=docs.get(f.name)
            )
        else:
            parser.add_argument(
                flag, type=kind, required=required, default=default, help=docs.get(f.name)
            )
    return cls(**vars(parser.parse_args(argv)))


def run(main: Callable[[T], Any], cls: type[T], argv: list[str] | None = None) -> Any:
    """Parse the arguments and run ``main``; a :class:`UserError` exits 2 with its message."""
    try:
        return main(parse_args(cls, argv))
    except UserError as e:
        print(f"{cls.__module__}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
