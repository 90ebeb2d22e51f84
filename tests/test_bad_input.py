"""Bad input (SPEC §5): every invalid name or param raises a ValidationError naming
what is wrong, and nothing is written; every valid one round-trips exactly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuetopia import Queuetopia, QueuetopiaError, ValidationError
from queuetopia.testing import drain

from .strategies import (
    SQL_LOOKING,
    invalid_names,
    json_params,
    json_values,
    param_names,
    same,
    valid_names,
    values_with_a_bad_leaf,
)

Conn = psycopg.Connection[Any]
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def module_db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def new_topia(dsn: str, **kwargs: Any) -> Queuetopia:
    topia = Queuetopia(dsn=dsn, scope=f"bad-{uuid.uuid4().hex[:10]}", pool_size=2, **kwargs)

    @topia.action("typed")
    def typed(count: int, name: str, tags: list[str] | None = None) -> None: ...

    @topia.action("loose")
    def loose(payload: Any = None, **extra: Any) -> None: ...

    @topia.action("with_job")
    def with_job(x: int, job: Any) -> None: ...

    return topia


@pytest.fixture(scope="module")
def good(dsn: str) -> Iterator[Queuetopia]:
    """A topia whose scope collects the valid examples."""
    topia = new_topia(dsn)
    yield topia
    topia.close()


@pytest.fixture(scope="module")
def refused(dsn: str) -> Iterator[Queuetopia]:
    """A topia whose scope must stay empty: only invalid input is sent to it."""
    topia = new_topia(dsn, max_params_bytes=1000)
    yield topia
    topia.close()


def rows_in_scope(db: Conn, scope: str) -> tuple[int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM queuetopia_jobs WHERE scope = %(s)s),"
        "       (SELECT count(*) FROM queuetopia_queues WHERE scope = %(s)s)",
        {"s": scope},
    ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.fixture(autouse=True)
def nothing_written_to_refused(refused: Queuetopia, module_db: Conn) -> Iterator[None]:
    yield
    assert rows_in_scope(module_db, refused.scope) == (0, 0), "invalid input was written"


# -- names -------------------------------------------------------------------------------


@PROPERTY
@given(queue=valid_names, action=valid_names)
def test_valid_names_round_trip_exactly(good: Queuetopia, queue: str, action: str) -> None:
    job = good.create_job(queue, action, {"k": "v"})
    stored = good.get_job(job.id)
    assert stored is not None
    assert (stored.queue, stored.action) == (queue, action)
    listed = good.list_jobs(queue=queue, action=action, limit=1000)
    assert job.id in {j.id for j in listed}
    assert all((j.queue, j.action) == (queue, action) for j in listed)
    assert queue in {q.queue for q in good.list_queues()}


@PROPERTY
@given(bad=invalid_names, where=st.sampled_from(["queue", "action"]))
def test_invalid_names_are_refused(refused: Queuetopia, bad: str, where: str) -> None:
    queue, action = (bad, "typed") if where == "queue" else ("q", bad)
    with pytest.raises(ValidationError) as caught:
        refused.create_job(queue, action, {"count": 1, "name": "x"})
    assert where in caught.value.fields and where in str(caught.value)
    if where == "queue":
        typed = refused.actions["typed"]
        for enqueue in (
            lambda: typed.delay(bad, count=1, name="x"),
            lambda: typed.schedule(bad, at=timedelta(seconds=1), count=1, name="x"),
            lambda: typed.delay_many(bad, [{"count": 1, "name": "x"}]),
            lambda: typed.options(max_attempts=2).delay(bad, count=1, name="x"),
        ):
            with pytest.raises(ValidationError):
                enqueue()


@PROPERTY
@given(bad=invalid_names)
def test_invalid_names_are_refused_everywhere_else(dsn: str, refused: Queuetopia, bad: str) -> None:
    with pytest.raises(ValidationError):
        refused.action(bad)(lambda: None)
    with pytest.raises(ValidationError):
        Queuetopia(dsn=dsn, scope=bad)
    with pytest.raises(ValidationError):
        refused.pause_queue(bad)
    with pytest.raises(ValidationError):
        refused.worker(queues=[bad])


def test_names_of_other_types_are_refused(refused: Queuetopia) -> None:
    for bad in (None, 42, b"queue", ["q"]):
        with pytest.raises(ValidationError):
            refused.create_job(bad, "typed", {"count": 1, "name": "x"})  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            refused.create_job("q", bad, {})  # type: ignore[arg-type]


def test_search_treats_like_wildcards_literally(good: Queuetopia) -> None:
    marker = uuid.uuid4().hex
    literal = good.create_job(f"100%_{marker}", "x", {})
    good.create_job(f"100ab{marker}", "x", {})
    assert [j.id for j in good.list_jobs(search=f"%_{marker}")] == [literal.id]


# -- params ------------------------------------------------------------------------------


@PROPERTY
@given(params=json_params)
def test_json_params_round_trip_faithfully(good: Queuetopia, params: dict[str, Any]) -> None:
    job = good.create_job("params", "elsewhere", params)
    stored = good.get_job(job.id)
    assert stored is not None
    assert same(stored.params, params), (stored.params, params)
    assert same(job.params, params)


@PROPERTY
@given(payload=json_values, extra=st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values))
def test_params_of_a_registered_action_round_trip_faithfully(
    good: Queuetopia, payload: Any, extra: dict[str, Any]
) -> None:
    job = good.actions["loose"].delay("params", payload=payload, **extra)
    stored = good.get_job(job.id)
    assert stored is not None
    assert same(stored.params, {"payload": payload, **extra})


@pytest.mark.parametrize("text", [*SQL_LOOKING, "emoji 🎉 and ünïcödé", "line\nbreak\ttab"])
def test_typed_text_params_round_trip(good: Queuetopia, text: str) -> None:
    job = good.actions["typed"].delay("params", count=1, name=text, tags=[text, text[::-1]])
    stored = good.get_job(job.id)
    assert stored is not None and stored.params == {
        "count": 1,
        "name": text,
        "tags": [text, text[::-1]],
    }


@PROPERTY
@given(field=param_names, value=values_with_a_bad_leaf)
def test_a_param_that_json_or_postgres_cannot_store_is_refused(
    refused: Queuetopia, field: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as caught:
        refused.create_job("q", "elsewhere", {field: value})
    assert field in caught.value.fields
    assert repr(field) in str(caught.value)


@PROPERTY
@given(value=values_with_a_bad_leaf)
def test_a_bad_value_for_an_untyped_param_of_a_registered_action_is_refused(
    refused: Queuetopia, value: Any
) -> None:
    loose = refused.actions["loose"]
    with pytest.raises(ValidationError) as caught:
        loose.delay("q", payload=value)
    assert "payload" in caught.value.fields
    with pytest.raises(ValidationError) as caught:
        loose.delay_many("q", [{"payload": 1}, {"other": value}])
    assert "other" in caught.value.fields


@pytest.mark.parametrize("via", ["create_job", "registered action with **extra"])
def test_a_nul_in_a_top_level_param_name_is_a_validation_error(
    refused: Queuetopia, via: str
) -> None:
    name = "bad\x00name"
    try:
        if via == "create_job":
            refused.create_job("q", "elsewhere", {name: 1})
        else:
            refused.actions["loose"].delay("q", **{name: 1})
    except ValidationError as exc:
        assert name in exc.fields
    except QueuetopiaError as exc:
        pytest.fail(f"expected a ValidationError, got {type(exc).__name__}: {exc}")
    else:
        pytest.fail("a param name with a NUL was accepted")


def test_params_nested_too_deep_are_refused(refused: Queuetopia, good: Queuetopia) -> None:
    def nest(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = [value]
        return value

    assert good.create_job("params", "elsewhere", {"shallow": nest(20)}).params == {
        "shallow": nest(20)
    }
    for depth in (150, 5000):
        with pytest.raises(ValidationError) as caught:
            refused.create_job("q", "elsewhere", {"deep": nest(depth)})
        assert caught.value.fields == ("deep",)


def test_params_over_the_size_limit_are_refused(
    refused: Queuetopia, good: Queuetopia, dsn: str
) -> None:
    assert refused.max_params_bytes == 1000
    with pytest.raises(ValidationError, match="1000"):
        refused.create_job("q", "elsewhere", {"blob": "x" * 1000})
    with pytest.raises(ValidationError):
        refused.create_job("q", "elsewhere", {"blob": "é" * 600})  # 1200 bytes, 600 characters
    with pytest.raises(ValidationError):
        refused.actions["typed"].delay("q", count=1, name="x" * 1000)
    with pytest.raises(ValidationError):
        refused.actions["typed"].delay_many(
            "q", [{"count": 1, "name": "ok"}, {"count": 2, "name": "y" * 1000}]
        )
    # The default limit is 1 MiB of JSON.
    assert good.max_params_bytes == 1024 * 1024
    with pytest.raises(ValidationError):
        good.create_job("never-written", "elsewhere", {"blob": "x" * (1024 * 1024)})
    assert good.list_jobs(queue="never-written") == []
    assert good.create_job("params", "elsewhere", {"blob": "x" * 1000}).params["blob"] == "x" * 1000


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": "x"}, "count"),  # missing
        ({"count": 1, "name": "x", "bogus": 2}, "bogus"),  # unknown
        ({"count": "many", "name": "x"}, "count"),  # wrong type
        ({"count": 1, "name": ["x"]}, "name"),
        ({"count": 1, "name": "x", "tags": [1, "a"]}, "tags"),
        ({"count": 1, "name": "x", "tags": "not a list"}, "tags"),
    ],
)
def test_params_are_validated_against_the_signature(
    refused: Queuetopia, params: dict[str, Any], field: str
) -> None:
    typed = refused.actions["typed"]
    attempts = [
        lambda: typed.delay("q", **params),
        lambda: typed.schedule("q", at=timedelta(minutes=1), **params),
        lambda: typed.options(timeout=5).delay("q", **params),
        lambda: typed.delay_many("q", [{"count": 1, "name": "fine"}, params]),
        lambda: refused.create_job("q", "typed", params),
    ]
    for attempt in attempts:
        with pytest.raises(ValidationError) as caught:
            attempt()
        assert field in caught.value.fields, caught.value
        assert field in str(caught.value)


def test_job_is_not_a_param(refused: Queuetopia, good: Queuetopia) -> None:
    with pytest.raises(ValidationError) as caught:
        refused.actions["with_job"].delay("q", x=1, job={"id": 1})
    assert "job" in caught.value.fields
    assert good.actions["with_job"].delay("params", x=1).params == {"x": 1}


def test_validated_params_are_stored_as_json_values(good: Queuetopia) -> None:
    job = good.actions["typed"].delay("params", count="5", name="x", tags=("a", "b"))  # type: ignore[arg-type]
    assert job.params == {"count": 5, "name": "x", "tags": ["a", "b"]}


# -- what actions hand back ----------------------------------------------------------------


@pytest.fixture(scope="module")
def echo(dsn: str) -> Iterator[Queuetopia]:
    """A topia whose actions return or raise whatever the test hands them."""
    topia = Queuetopia(dsn=dsn, scope=f"echo-{uuid.uuid4().hex[:10]}", pool_size=2)
    yield topia
    topia.close()


@settings(PROPERTY, max_examples=25)
@given(value=values_with_a_bad_leaf)
def test_a_result_postgres_cannot_store_is_stored_as_none(echo: Queuetopia, value: Any) -> None:
    name = f"returns-{uuid.uuid4().hex[:8]}"
    echo.action(name)(lambda: value)
    job = echo.create_job("q", name, {})
    assert drain(echo).done == 1
    stored = echo.get_job(job.id)
    assert stored is not None and stored.state == "done" and stored.result is None


@settings(PROPERTY, max_examples=25)
@given(message=st.text())
def test_any_exception_message_is_recorded_and_never_leaves_the_job_running(
    echo: Queuetopia, message: str
) -> None:
    name = f"raises-{uuid.uuid4().hex[:8]}"

    def fail() -> None:
        raise RuntimeError(message)

    echo.action(name, max_attempts=1)(fail)
    job = echo.create_job("q", name, {})
    assert drain(echo).failed == 1
    stored = echo.get_job(job.id)
    assert stored is not None and stored.state == "failed"
    assert stored.error is not None and stored.error.startswith("RuntimeError")


@pytest.mark.parametrize("reason", ["nul \x00 inside", "lone \ud800 surrogate"])
def test_a_cancel_reason_postgres_cannot_store_is_refused_and_changes_nothing(
    echo: Queuetopia, reason: str
) -> None:
    job = echo.create_job("cancel-me", "anything", {})
    with pytest.raises(ValidationError, match="reason"):
        echo.cancel_job(job.id, reason=reason)
    stored = echo.get_job(job.id)
    assert stored is not None and stored.state == "pending" and stored.error is None
