"""What a topia knows about its actions: each registered action, the periodic
schedules, and the failure hook of every action. Producers validate against it;
workers look up what to run in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .actions import Action, FailureHook
from .errors import ValidationError
from .periodic import Periodic


class Registry:
    def __init__(self, on_failure: FailureHook | None = None) -> None:
        self.actions: dict[str, Action[Any, Any]] = {}
        self.periodics: list[Periodic] = []
        self.on_failure = on_failure

    def add(self, action: Action[Any, Any]) -> None:
        if action.name in self.actions:
            raise ValidationError(f"action {action.name!r} is already registered")
        self.actions[action.name] = action

    def get(self, name: str) -> Action[Any, Any] | None:
        return self.actions.get(name)

    def failure_hooks(self, name: str) -> list[FailureHook]:
        """The hooks a failed attempt of action `name` calls: the action's, then the
        topia's."""
        action = self.actions.get(name)
        return [h for h in (action.on_failure if action else None, self.on_failure) if h]

    def hidden(self) -> dict[str, list[str]]:
        """Per action, its sensitive params: only this registry says what they are
        (docs/security.md)."""
        return {name: sorted(a.sensitive) for name, a in self.actions.items() if a.sensitive}

    def shown_params(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A job's params for display, with its action's sensitive params hidden."""
        registered = self.actions.get(action)
        return registered.shown_params(params) if registered else dict(params)
