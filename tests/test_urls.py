"""Storage URLs: malformed ones are bad input; passwords never appear in what is shown."""

from __future__ import annotations

import pytest

import archsearch.urls as urls
from archsearch.errors import ConfigError
from archsearch.urls import check_storage_url, grpc_address, mask_url, redact
from test_bad_inputs import answers_within


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.setattr(urls, "_KNOWN", {})


@pytest.mark.parametrize("url,secret", [
    ("postgresql+psycopg://user:hunter2@db.example.org:5432/archsearch", "hunter2"),
    ("postgresql+psycopg://user:p@ss@w0rd@db:5432/archsearch", "ss@w0rd"),
    ("postgresql://user:a:b:c@db/archsearch", "a:b:c"),
    ("postgresql://user@db/archsearch?sslmode=require&password=hunter2", "hunter2"),
    ("postgresql://db/archsearch?PASSWORD=hunter2", "hunter2"),
    ("mysql+pymysql://root:%40secret@127.0.0.1/x?token=abc", "secret"),
    ("grpc://user:hunter2@proxy-host:13000", "hunter2"),
])
def test_passwords_are_hidden_wherever_they_sit(url, secret):
    text = f"error: OperationalError: connection to {url} failed: ({url})"
    shown = redact(text)
    assert secret not in shown and "***" in shown
    assert shown.count("***") >= 2 and "failed" in shown


def test_urls_without_secrets_are_left_alone():
    for text in ("journal:///tmp/x/optuna.journal", "sqlite:///study.db", "see https://optuna.org/a@b", "plain text",
                 "grpc://127.0.0.1:13000"):
        assert redact(text) == text
    assert redact("postgresql://user@db/x?sslmode=require") == "postgresql://user@db/x?sslmode=require"


@pytest.mark.parametrize("url,says", [
    ("not a url", "is not a storage URL"),
    ("postgresql://db:port/x", "is not a storage URL"),
    ("postgresql+nodriver://db/x", "unknown driver"),
    ("redis://127.0.0.1:6379", "unknown database 'redis'"),
    ("journal://", "names no journal file"),
    ("grpc://proxy-host", "names no port"),
    ("grpc://proxy-host:13000x", "the port '13000x' is not a number from 1 to 65535"),
    ("grpc://user:pw@proxy-host:13000", "takes no user or password"),
])
def test_malformed_urls(url, says):
    with pytest.raises(ConfigError) as exc:
        check_storage_url(url)
    assert exc.value.path == "--storage" and says in exc.value.message


def test_malformed_urls_hide_their_password():
    with pytest.raises(ConfigError) as exc:
        check_storage_url("postgresql+nodriver://u:hunter2@db/x")
    assert "hunter2" not in str(exc.value)


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:p@127.0.0.1:5432/test", "mysql+pymysql://root@127.0.0.1/test",
                                 "sqlite:///study.db", "journal:///tmp/study/optuna.journal", "postgresql:///test"])
def test_wellformed_urls(url):
    check_storage_url(url)


@pytest.mark.parametrize("url,address", [
    ("grpc://127.0.0.1:13000", ("127.0.0.1", 13000)),
    ("grpc://proxy.internal:1/", ("proxy.internal", 1)),
    ("grpc://[::1]:65535", ("[::1]", 65535)),  # brackets kept: gRPC's target is host:port
])
def test_wellformed_grpc_urls(url, address):
    assert grpc_address(url) == address
    check_storage_url(url)


def test_a_bad_grpc_url_is_located_where_it_was_given():
    with pytest.raises(ConfigError) as exc:
        grpc_address("grpc://proxy-host", path="study.storage")
    assert exc.value.path == "study.storage"


def test_a_password_with_a_raw_at_sign_is_bad_input():
    with pytest.raises(ConfigError) as exc:
        check_storage_url("postgresql+psycopg://user:p@ss@127.0.0.1:5432/test")
    assert "%40" in exc.value.message and "ss@" not in str(exc.value)


def test_a_driver_message_quoting_the_bare_password_is_redacted():
    url = "postgresql+psycopg://user:hunter2@db/x"
    assert redact('FATAL: password "hunter2" rejected', url) == 'FATAL: password "***" rejected'
    assert redact("x" * 3, "postgresql://u:x@db/y") == "xxx"  # too short to hide without hiding everything


@pytest.mark.parametrize("url,shown", [
    ("postgresql+psycopg://u:it's a secret@db/x?password=p", "postgresql+psycopg://u:***@db/x?password=***"),
    ("postgresql://u:@db/x", "postgresql://u:***@db/x"),
    ("postgresql://u:pw@[::1]:5432/x", "postgresql://u:***@[::1]:5432/x"),
    ("postgresql://db/x?application_name=a&sslpassword=k&x=1", "postgresql://db/x?application_name=a&sslpassword=***&x=1"),
    ("postgresql://u:pw@db/x?password=a&b;c&x=1", "postgresql://u:***@db/x?password=***&x=1"),  # a raw '&' in it
    ("postgresql://u:a?password=b@db/x", "postgresql://u:***"),  # read as a query too: hidden to the end
    ("u:pw@db/x", "u:***@db/x"),  # no scheme: masked alike
    # nothing to hide
    ("sqlite:///C:/a@b/x.db", "sqlite:///C:/a@b/x.db"),
    ("journal:///home/me@corp/optuna.journal", "journal:///home/me@corp/optuna.journal"),
    ("postgresql://u@db/x?sslmode=require", "postgresql://u@db/x?sslmode=require"),
    ("grpc://[::1]:13000", "grpc://[::1]:13000"),
    ("not a url", "not a url"),
])
def test_mask_url_reads_the_structure(url, shown):
    assert mask_url(url) == shown


def test_sqlalchemys_rendering_is_redacted():
    """`repr(make_url(...))` hides the user-info's password but not the query's."""
    from sqlalchemy.engine import make_url

    url = "postgresql+psycopg://u:hunter2@db/x?sslpassword=k3y-s3cret"
    rendered = [repr(make_url(url)), make_url(url).render_as_string(hide_password=False)]
    assert "k3y-s3cret" in rendered[0]
    for text in rendered:
        assert "hunter2" not in redact(text) and "k3y-s3cret" not in redact(text)
        assert "hunter2" not in redact(text, url) and "k3y-s3cret" not in redact(text, url)


@pytest.mark.parametrize("text", [
    "a" * 5_000_000,  # the old `scheme://` pattern backtracked over every letter from every start
    "a:/" * 2_000_000,
    "a://" * 1_250_000,
    "postgresql://u:" + "x" * 5_000_000,
    "postgresql://u:p " * 300_000,
    "postgresql://" + "@" * 5_000_000,
    "postgresql://h/x?" + "&password=a" * 400_000,
], ids=["letters", "colon-slash", "schemes", "user-info", "urls", "at-signs", "query"])
def test_redact_takes_linear_time_on_any_text(text):
    with answers_within(30):  # a hang guard: seconds, where a quadratic scan takes hours
        shown = redact(text, "postgresql://u:secret@db/x")
        mask_url(text)
    assert len(shown) < 2 * len(text)  # a `***` for each secret, no more
