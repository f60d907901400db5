"""Strategies by name. Adding one: a Strategy subclass decorated with @register; the API's list of
valid strategies (project settings) is this registry's."""

from __future__ import annotations

from worker.acquisition.base import Params, Strategy

REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    if cls.name in REGISTRY:
        raise ValueError(f"strategy {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


def build(name: str, params: Params | None = None) -> Strategy:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(REGISTRY)}") from None
    return cls(params or Params())


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)
