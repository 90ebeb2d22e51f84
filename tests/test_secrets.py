"""Secrets (docs/security.md): DSN passwords never reach a message, a log line or a
traceback, in any log format; params an action marks sensitive are never shown, never
searchable, never quoted by an error, never stored in an error or logged."""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel
from typer.testing import CliRunner

from queuetopia import JobState, Queuetopia, QueuetopiaError, ValidationError
from queuetopia.db.connections import Database
from queuetopia.errors import redact
from queuetopia.sensitive import mask
from queuetopia_cli.logs import setup_logging
from queuetopia_cli.main import app

from .helpers import wait_for
from .strategies import passwords

FAST = settings(max_examples=300, deadline=None)


# -- DSN passwords: redact() --------------------------------------------------------------


def libpq_quoted(password: str) -> str:
    """A value quoted the way libpq's keyword/value connection strings read it."""
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


@FAST
@given(password=passwords)
def test_a_quoted_keyword_password_is_hidden_whole(password: str) -> None:
    text = f"connection failed: host=db.local port=5432 password={libpq_quoted(password)} user=shop"
    assert redact(text) == "connection failed: host=db.local port=5432 password=*** user=shop"


@FAST
@given(password=passwords.filter(lambda p: not any(c.isspace() for c in p) and p[0] not in "'\""))
def test_an_unquoted_keyword_password_is_hidden(password: str) -> None:
    text = f"invalid dsn: host=db.local password={password} dbname=shop"
    assert redact(text) == "invalid dsn: host=db.local password=*** dbname=shop"


@FAST
@given(password=passwords)
def test_a_percent_encoded_uri_password_is_hidden(password: str) -> None:
    text = f"cannot reach postgresql://shop:{quote(password, safe='')}@db.local:5432/shop now"
    assert redact(text) == "cannot reach postgresql://shop:***@db.local:5432/shop now"


@FAST
@given(password=passwords.filter(lambda p: not any(c.isspace() for c in p)))
def test_a_uri_password_that_was_not_encoded_is_hidden_up_to_the_host(password: str) -> None:
    """@, : and / in a raw password: everything up to the URI's last @ goes."""
    text = f"dsn postgres://shop:{password}@db.local:5432/shop?sslmode=require, user a@b.c"
    assert redact(text) == "dsn postgres://shop:***@db.local:5432/shop?sslmode=require, user a@b.c"


@FAST
@given(password=passwords)
def test_a_password_in_a_repr_or_json_mapping_is_hidden(password: str) -> None:
    settings_ = {"host": "db.local", "password": password, "user": "shop"}
    assert redact(repr(settings_)) == "{'host': 'db.local', 'password': ***, 'user': 'shop'}"
    assert redact(json.dumps(settings_)) == '{"host": "db.local", "password": ***, "user": "shop"}'
    environ = {"PGPASSWORD": password, "PGUSER": "shop"}
    assert redact(repr(environ)) == "{'PGPASSWORD': ***, 'PGUSER': 'shop'}"


@FAST
@given(password=passwords.filter(lambda p: "\n" not in p))
def test_a_pgpassword_environment_line_is_hidden(password: str) -> None:
    listing = f"PGHOST=db.local\nPGPASSWORD={password}\nPGUSER=shop"
    assert redact(listing) == "PGHOST=db.local\nPGPASSWORD=***\nPGUSER=shop"


@FAST
@given(text=st.text(max_size=80).filter(lambda t: "password" not in t.lower() and "://" not in t))
def test_text_without_a_password_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_messages_about_passwords_are_left_alone() -> None:
    for text in (
        'FATAL:  password authentication failed for user "shop"',
        "fe_sendauth: no password supplied",
        "postgresql://shop@db.local/shop",
    ):
        assert redact(text) == text


# -- DSN passwords in the errors of connecting -------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(password=passwords)
def test_a_dsn_that_libpq_cannot_parse_never_shows_its_password(password: str) -> None:
    """libpq's messages about a DSN it cannot parse quote fragments of it (`missing "="
    after "..."`, `unexpected spaces found in "..."`). With a marker after each character
    of the password, any fragment of it longer than one character would show the marker."""
    marked = "".join(char + "§" for char in password)
    for dsn in (
        f"host=127.0.0.1 port=1 user=shop password={marked} dbname=shop",
        f"postgresql://shop:{marked}@127.0.0.1:1/shop",
    ):
        with pytest.raises(QueuetopiaError) as caught:
            Database(dsn).connect().close()
        told = "".join(traceback.format_exception(caught.value))
        pairs = {marked[i : i + 2] for i in range(len(marked) - 1)}
        assert not [pair for pair in pairs if pair in told], told


@pytest.mark.parametrize(
    "dsn",
    [
        "host=127.0.0.1 port=1 password=s3cr3t pw-2nd user=shop",
        "postgresql://shop:s3cr3t%zz@127.0.0.1:1/shop",
        "postgresql://shop:s3cr3t pw-2nd@127.0.0.1:1/shop",
    ],
)
def test_a_malformed_dsn_is_one_line_without_its_password(dsn: str) -> None:
    result = CliRunner().invoke(app, ["migrate", "--status", "--dsn", dsn])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert "s3cr3t" not in result.output and "pw-2nd" not in result.output, result.output


# -- DSN passwords in the log formats, tracebacks included ---------------------------------

SECRET = "s3cr3t-pw"


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the CLI logs with rich."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("log_format", "stream"), [("text", io.StringIO), ("text", Terminal), ("json", io.StringIO)]
)
def test_no_log_format_shows_a_password_in_a_traceback(
    monkeypatch: pytest.MonkeyPatch, log_format: str, stream: Callable[[], io.StringIO]
) -> None:
    """Plain lines (a pipe), rich (a terminal) and JSON: the message, the exception and
    its chained cause all lose the password."""
    err = stream()
    monkeypatch.setattr(sys, "stderr", err)
    setup_logging(False, log_format)
    try:
        try:
            raise OSError(f"connect to postgresql://shop:{SECRET}@db/shop")
        except OSError as cause:
            raise RuntimeError(f"bad dsn host=db password='{SECRET} 2'") from cause
    except RuntimeError:
        logging.getLogger("queuetopia.worker").exception("worker loop error (password=%s)", SECRET)
    output = err.getvalue()
    assert "RuntimeError" in output and "OSError" in output, output  # the traceback is there
    assert "Traceback" in output or log_format == "json"
    assert SECRET not in output and "2'" not in output, output
    assert "***" in output


# -- sensitive params -------------------------------------------------------------------------


class Card(BaseModel):
    number: str
    holder: str


def a_pin(value: str) -> str:
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a PIN")  # quotes the value, as validators do
    return value


def telling_hook(job: Any, error: BaseException) -> None:
    raise ValueError(f"the hook saw {job.params.get('password')}")


@pytest.fixture
def login(topia: Queuetopia) -> Any:
    @topia.action(
        "login",
        sensitive=("password", "pin", "card.number", "history.token"),
        on_failure=telling_hook,
    )
    def login(
        user: str,
        password: str = "",
        pin: Annotated[str, AfterValidator(a_pin)] = "0000",
        card: Card | None = None,
        history: list[dict[str, str]] | None = None,
    ) -> None:
        if user == "fails":
            raise RuntimeError(f"login refused: {password} / {card.number if card else ''}")

    return login


def test_masking_follows_dotted_paths_through_objects_and_lists() -> None:
    params = {
        "password": "hunter2",
        "card": {"number": "4111", "holder": "Ada"},
        "history": [{"token": "t1", "at": "x"}, {"token": "t2"}],
        "card.number": "a key with a dot, as the path reads",
    }
    paths = frozenset({"password", "card.number", "history.token"})
    assert mask(params, paths) == {
        "password": "***",
        "card": {"number": "***", "holder": "Ada"},
        "history": [{"token": "***", "at": "x"}, {"token": "***"}],
        "card.number": "***",
    }
    assert params["card"]["number"] == "4111"  # a copy: the job keeps its params


def test_sensitive_params_are_masked_when_shown(topia: Queuetopia, login: Any) -> None:
    job = login.delay("q", user="ada", password="hunter2", card={"number": "4111", "holder": "Ada"})
    assert job.params["password"] == "hunter2"  # stored as given: the action needs it
    assert topia.shown_params(job) == {
        "user": "ada",
        "password": "***",
        "card": {"number": "***", "holder": "Ada"},
    }


def test_a_search_never_matches_a_sensitive_value(topia: Queuetopia, login: Any) -> None:
    job = login.delay(
        "q",
        user="ada-lovelace",
        password="hunter2-pw",
        card={"number": "4111-1111", "holder": "Ada Byron"},
        history=[{"token": "tok-9876"}],
    )
    other = topia.create_job("q", "elsewhere", {"password": "hunter2-pw"})  # not sensitive

    def found(text: str) -> list[int]:
        return [j.id for j in topia.list_jobs(search=text)]

    for secret in ("hunter2", "4111", "tok-98"):
        assert job.id not in found(secret), secret
    for visible in ("lovelace", "Byron", "holder", "history"):
        assert found(visible) == [job.id], visible
    assert found("hunter2") == [other.id]  # an action this topia does not mark


def test_an_invalid_sensitive_param_is_refused_without_quoting_it(
    topia: Queuetopia, login: Any
) -> None:
    secret = "hunter2-" + "pin"  # the traceback quotes source lines: not this one's value
    with pytest.raises(ValidationError) as caught:
        login.delay("q", user="ada", pin=secret)
    error = caught.value
    told = str(error) + "".join(traceback.format_exception(error))
    assert "pin" in str(error) and secret not in told, told
    assert error.__cause__ is None  # pydantic's error (which quotes the input) is not chained
    with pytest.raises(ValidationError) as caught:
        login.delay("q", user="ada", card={"number": 4111, "holder": "Ada"})
    assert "card.number" in str(caught.value) and "4111" not in str(caught.value)
    assert topia.list_jobs() == []  # nothing written


def test_an_invalid_plain_param_still_says_what_is_wrong(topia: Queuetopia, login: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        login.delay("q", user=["not", "a", "string"], password="hunter2-pw")
    assert "user: Input should be a valid string" in str(caught.value)
    # pydantic's error quotes every input, the password too: never chained here ...
    assert caught.value.__cause__ is None

    @topia.action("plain")
    def plain(user: str) -> None: ...

    with pytest.raises(ValidationError) as caught:
        plain.delay("q", user=["x"])
    assert caught.value.__cause__ is not None  # ... but kept where nothing is sensitive


@pytest.fixture
def worker_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="queuetopia"):
        yield caplog


def test_a_failed_attempt_stores_and_logs_no_sensitive_value(
    topia: Queuetopia, login: Any, worker_logs: pytest.LogCaptureFixture
) -> None:
    job = login.delay(
        "q", user="fails", password="hunter2-pw", card={"number": "4111-1111", "holder": "Ada"}
    )
    with topia.worker():
        stored = wait_for(
            lambda: (j := topia.get_job(job.id)) and "hook raised" in (j.error or "") and j
        )
    assert "login refused: *** / ***" in stored.error
    assert "on_failure hook raised: ValueError: the hook saw ***" in stored.error
    logged = "\n".join(r.getMessage() for r in worker_logs.records)
    assert "login refused: *** / ***" in logged
    for secret in ("hunter2", "4111"):
        assert secret not in stored.error and secret not in logged


def test_params_that_no_longer_validate_fail_without_quoting_the_value(
    topia: Queuetopia, login: Any, db: psycopg.Connection[Any]
) -> None:
    """A stored job whose sensitive param the current code refuses (the action changed)."""
    job = login.delay("q", user="ada", pin="1234")
    db.execute(
        'UPDATE queuetopia_jobs SET params = params || \'{"pin": "no-hunter2"}\' WHERE id = %s',
        (job.id,),
    )
    with topia.worker():
        stored = wait_for(lambda: (j := topia.get_job(job.id)) and j.error and j)
    assert stored.state == JobState.PENDING and stored.error.startswith("invalid params: pin")
    assert "hunter2" not in stored.error


def test_sensitive_paths_are_checked(topia: Queuetopia) -> None:
    for bad in ("password", ("card..number",), ("",), (1,)):
        with pytest.raises(ValidationError):
            topia.action(f"bad-{bad!r}", sensitive=bad)(lambda: None)  # type: ignore[arg-type]
