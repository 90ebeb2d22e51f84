"""Actions: functions registered with `@topia.action(name)`, and the pydantic model
built from each signature that validates params at enqueue and loads them to run."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar

import pydantic

from .db.rows import AsyncConn, Conn
from .durations import optional_seconds, seconds
from .errors import ValidationError
from .models import Job, JobRequest
from .sensitive import check_paths, is_sensitive, mask, scrub, secret_values
from .validation import check_name, check_storable, params_json

P = ParamSpec("P")
R = TypeVar("R")

OnExhausted = Literal["skip", "block"]
BackoffFn = Callable[["Job"], float]
FailureHook = Callable[["Job", BaseException], object]

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_MAX_BACKOFF = 86_400.0


class Producer(Protocol):
    """The enqueue path an action's `.delay` calls (enqueue.Producer)."""

    def enqueue(
        self,
        requests: Sequence[JobRequest],
        connection: Conn | AsyncConn | None = None,
        *,
        label: bool = True,
    ) -> list[Job]: ...

    async def enqueue_async(
        self,
        requests: Sequence[JobRequest],
        connection: Conn | AsyncConn | None = None,
        *,
        label: bool = True,
    ) -> list[Job]: ...


@dataclass(frozen=True)
class JobOptions:
    """Per-job settings; None means "the action's default"."""

    timeout: float | None = None
    max_attempts: int | None = None
    max_backoff: float | None = None
    unique_key: str | None = None
    after: tuple[Any, ...] = ()  # jobs (or ids) that must be done first


@dataclass(frozen=True)
class ActionConfig:
    timeout: float = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_backoff: float = DEFAULT_MAX_BACKOFF
    backoff: BackoffFn | None = None
    on_exhausted: OnExhausted = "skip"
    # Seconds a head may hold its queue blocked (since its first failed attempt)
    # before it is parked; None: block until done or exhausted (docs/blocking.md).
    max_blocked: float | None = None

    @classmethod
    def of(
        cls,
        *,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_backoff: float | timedelta = DEFAULT_MAX_BACKOFF,
        backoff: BackoffFn | None = None,
        on_exhausted: OnExhausted = "skip",
        max_blocked: float | timedelta | None = None,
    ) -> ActionConfig:
        """The config `@topia.action(...)` registers, its durations as seconds."""
        return cls(
            seconds(timeout),
            max_attempts,
            seconds(max_backoff),
            backoff,
            on_exhausted,
            optional_seconds(max_blocked),
        )

    def resolve(self, options: JobOptions) -> ActionConfig:
        """The settings a job gets: its own options over these defaults, checked."""
        resolved = replace(
            self,
            timeout=_pick(options.timeout, self.timeout),
            max_attempts=_pick(options.max_attempts, self.max_attempts),
            max_backoff=_pick(options.max_backoff, self.max_backoff),
        )
        resolved.check()
        return resolved

    def check(self) -> None:
        if not _positive(self.timeout):
            raise ValidationError(f"timeout must be a positive number, got {self.timeout!r}")
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or (self.max_attempts < 1)
        ):
            raise ValidationError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if not _positive(self.max_backoff, allow_zero=True):
            raise ValidationError(f"max_backoff must be >= 0, got {self.max_backoff!r}")
        if self.max_blocked is not None and not _positive(self.max_blocked):
            raise ValidationError(
                f"max_blocked must be a positive duration, got {self.max_blocked!r}"
            )
        if self.on_exhausted not in ("skip", "block"):
            raise ValidationError(
                f"on_exhausted must be 'skip' or 'block', got {self.on_exhausted!r}"
            )


def qualified_name(fn: Callable[..., Any]) -> str:
    """The name a bare `@topia.action` gives `fn`: `module.function`."""
    return f"{fn.__module__}.{fn.__qualname__}"


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _positive(value: object, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value >= 0 if allow_zero else value > 0 and value != float("inf")


class ParamSchema:
    """Validates params against a function's signature (the `job` parameter excluded).
    Errors about `sensitive` paths never quote the value (docs/security.md)."""

    def __init__(self, fn: Callable[..., Any], sensitive: frozenset[str] = frozenset()) -> None:
        self.sensitive = sensitive
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # keep Annotated constraints
        fields: dict[str, Any] = {}
        self.untyped: set[str] = set()
        self.takes_job = False
        extra: Literal["allow", "forbid"] = "forbid"
        for name, param in signature.parameters.items():
            if name == "job":
                self.takes_job = True
            elif param.kind is param.VAR_KEYWORD:
                extra = "allow"
            elif param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
                raise ValidationError(f"action parameter {name!r} must be passable by keyword")
            else:
                annotation = hints.get(name, Any)
                if annotation in (Any, object):
                    self.untyped.add(name)
                default = ... if param.default is param.empty else param.default
                fields[name] = (annotation, default)
        self.accepts_extra = extra == "allow"
        config = pydantic.ConfigDict(extra=extra, arbitrary_types_allowed=False)
        self.model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{fn.__name__}_params", __config__=config, **fields
        )
        # Read once: `dump` and `load` run for every job enqueued and run, and model_validate and
        # model_fields add microseconds of Python around the validator each time.
        self._names = tuple(self.model.model_fields)
        self._validate = self.model.__pydantic_validator__.validate_python

    def dump(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `params` and return them as JSON-ready values."""
        for name, value in params.items():
            if name in self.untyped or (self.accepts_extra and name not in self._names):
                check_storable(name, value)
        try:
            model: pydantic.BaseModel = self._validate(dict(params))
            return model.model_dump(mode="json", exclude_unset=True)
        except pydantic.ValidationError as exc:
            # pydantic's own message quotes the input: chained, it would be in tracebacks.
            raise _translate(exc, self.sensitive) from (None if self.sensitive else exc)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"params are not JSON-serialisable: {exc}") from exc

    def load(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Stored JSON params back to the typed values the function takes."""
        try:
            model = self._validate(dict(stored))
        except pydantic.ValidationError as exc:
            raise _translate(exc, self.sensitive) from None
        values = {name: getattr(model, name) for name in self._names}
        values.update(model.model_extra or {})
        return values


def _translate(
    exc: pydantic.ValidationError, sensitive: frozenset[str] = frozenset()
) -> ValidationError:
    problems = []
    fields = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "params"
        fields.append(str(error["loc"][0]) if error["loc"] else "params")
        if error["type"] != "missing" and is_sensitive(error["loc"], sensitive):
            # A message may quote the value (a custom validator's, a parse error's).
            problems.append(f"{where}: invalid ({error['type']}; the value is sensitive)")
        else:
            problems.append(f"{where}: {error['msg']}")
    return ValidationError("invalid params: " + "; ".join(problems), tuple(fields))


class Action(Generic[P, R]):
    """A registered action. Calling it runs the function directly; `delay`,
    `schedule` and `delay_many` enqueue jobs that a worker runs."""

    def __init__(
        self,
        producer: Producer,
        name: str,
        fn: Callable[P, R],
        config: ActionConfig,
        *,
        max_params_bytes: int,
        on_failure: FailureHook | None = None,
        sensitive: tuple[str, ...] = (),
    ) -> None:
        self.producer = producer
        self.max_params_bytes = max_params_bytes
        self.name = check_name("action", name)
        self.fn = fn
        self.config = config
        self.on_failure = on_failure
        self.sensitive = check_paths(sensitive)
        self.schema = ParamSchema(fn, self.sensitive)
        self.is_async = inspect.iscoroutinefunction(fn)
        config.check()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Action {self.name!r}>"

    def options(
        self,
        *,
        timeout: float | timedelta | None = None,
        max_attempts: int | None = None,
        max_backoff: float | timedelta | None = None,
        connection: Conn | AsyncConn | None = None,
        unique_key: str | None = None,
        after: Sequence[Any] = (),
    ) -> BoundAction:
        """The same action with per-job options for the jobs enqueued through it.

        With `unique_key`, an enqueue returns the job already in line with that key
        in the queue, if any, instead of writing a new one (docs/unique-jobs.md).
        With `after` (jobs, or their ids), the jobs start only once every job named
        is done (docs/flow-control.md)."""
        options = JobOptions(
            optional_seconds(timeout),
            max_attempts,
            optional_seconds(max_backoff),
            unique_key,
            tuple(after)
            if isinstance(after, Sequence) and not isinstance(after, str)
            else (after,),
        )
        return BoundAction(self, options, connection)

    def delay(self, queue: str, /, **params: Any) -> Job:
        return BoundAction(self, JobOptions()).delay(queue, **params)

    def schedule(self, queue: str, /, *, at: datetime | timedelta, **params: Any) -> Job:
        return BoundAction(self, JobOptions()).schedule(queue, at=at, **params)

    def delay_many(self, queue: str, params_list: list[dict[str, Any]], /) -> list[Job]:
        return BoundAction(self, JobOptions()).delay_many(queue, params_list)

    async def delay_async(self, queue: str, /, **params: Any) -> Job:
        return await BoundAction(self, JobOptions()).delay_async(queue, **params)

    async def schedule_async(
        self, queue: str, /, *, at: datetime | timedelta, **params: Any
    ) -> Job:
        return await BoundAction(self, JobOptions()).schedule_async(queue, at=at, **params)

    async def delay_many_async(self, queue: str, params_list: list[dict[str, Any]], /) -> list[Job]:
        return await BoundAction(self, JobOptions()).delay_many_async(queue, params_list)

    def shown_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Params as people may see them: sensitive values replaced by '***'."""
        return mask(params, self.sensitive)

    def scrub(self, text: str, params: Mapping[str, Any]) -> str:
        """`text` (an error of a job with these params) without their sensitive values."""
        if not self.sensitive:
            return text
        return scrub(text, secret_values(params, self.sensitive))

    def serialise(self, params: Mapping[str, Any]) -> str:
        """Validated params as the JSON text that will be stored."""
        return params_json(self.schema.dump(params), self.max_params_bytes)


@dataclass(frozen=True)
class BoundAction:
    """An action with job options attached, from `Action.options(...)`."""

    action: Action[Any, Any]
    opts: JobOptions
    connection: Conn | AsyncConn | None = None  # the caller's transaction, if given

    def delay(self, queue: str, /, **params: Any) -> Job:
        return self.delay_many(queue, [params])[0]

    def schedule(self, queue: str, /, *, at: datetime | timedelta, **params: Any) -> Job:
        return self._enqueue(queue, [params], at)[0]

    def delay_many(self, queue: str, params_list: list[dict[str, Any]], /) -> list[Job]:
        return self._enqueue(queue, params_list, None)

    async def delay_async(self, queue: str, /, **params: Any) -> Job:
        return (await self.delay_many_async(queue, [params]))[0]

    async def schedule_async(
        self, queue: str, /, *, at: datetime | timedelta, **params: Any
    ) -> Job:
        return (await self._enqueue_async(queue, [params], at))[0]

    async def delay_many_async(self, queue: str, params_list: list[dict[str, Any]], /) -> list[Job]:
        return await self._enqueue_async(queue, params_list, None)

    def requests(
        self, queue: str, params_list: list[dict[str, Any]], at: datetime | timedelta | None
    ) -> list[JobRequest]:
        """The jobs to enqueue, as the bulk call takes them."""
        if not isinstance(params_list, list) or not all(isinstance(p, dict) for p in params_list):
            raise ValidationError("delay_many takes a list of dicts of params")
        o = self.opts
        return [
            JobRequest(
                queue,
                self.action,
                params,
                scheduled_at=at,
                timeout=o.timeout,
                max_attempts=o.max_attempts,
                max_backoff=o.max_backoff,
                unique_key=o.unique_key,
                after=o.after,
            )
            for params in params_list
        ]

    def _enqueue(
        self, queue: str, params_list: list[dict[str, Any]], at: datetime | timedelta | None
    ) -> list[Job]:
        requests = self.requests(queue, params_list, at)
        return self.action.producer.enqueue(requests, self.connection, label=False)

    async def _enqueue_async(
        self, queue: str, params_list: list[dict[str, Any]], at: datetime | timedelta | None
    ) -> list[Job]:
        requests = self.requests(queue, params_list, at)
        return await self.action.producer.enqueue_async(requests, self.connection, label=False)
