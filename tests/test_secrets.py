"""Passwords never print (archsearch.urls): a password of any printable ASCII character, written
as it is or percent-encoded, is hidden in every text archsearch shows or writes.

Every generated password is built of pieces that start with `Zq~` (`Zq~1'Zq~2'Zq~3`), so a leak
of any piece of it, not only of the whole, shows `Zq~` (which base64, say an image in an HTML
report, never holds). The masker is tested on all of them at unit
level (error lines, success lines, repr'd and JSON'd exception texts, SQLAlchemy's rendering,
query parameters); the CLI end to end with a few of them, against a database that does not
answer (and, where ARCHSEARCH_TEST_POSTGRES_URL names one, a whole run against PostgreSQL).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from typer.testing import CliRunner

import archsearch.urls as urls
from archsearch.cli import app
from archsearch.errors import ConfigError
from archsearch.search.proxy import proxy_line
from archsearch.search.storage import describe_error, describe_storage, open_storage
from archsearch.urls import check_storage_url, mask_url, redact, register_url

MARK = "Zq~"
PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
HOST = "127.0.0.1:5432/test"
MASKED = f"postgresql+psycopg://postgres:***@{HOST}"


def pieces(chars) -> str:
    """`chars` cut in threes, each after a `Zq~<digit>`: any seven characters of it hold a mark."""
    chars = list(chars)
    return "".join(f"{MARK}{i % 10}{''.join(chars[k:k + 3])}" for i, k in enumerate(range(0, len(chars), 3))) + MARK


_shuffled = PRINTABLE[:]
random.Random(0).shuffle(_shuffled)
# Passwords as the database knows them: each printable character (twice, between marks), all of them in
# order and shuffled, and percent signs that look like encodings.
PASSWORDS = ([f"{MARK}1{c}{MARK}2{c}{MARK}3" for c in PRINTABLE] + [pieces(PRINTABLE), pieces(_shuffled)]
             + [f"{MARK}1%40{MARK}2%2F{MARK}3%25{MARK}4%{MARK}5%zz"])
# ... and as a URL may spell them: as they are, or percent-encoded.
SPELLINGS = {"raw": lambda p: p, "encoded": lambda p: quote(p, safe="")}
CASES = [pytest.param(pw, spelling, id=f"{spelling}-{i}") for i, pw in enumerate(PASSWORDS) for spelling in SPELLINGS]


def url_with(password: str, spelling: str = "raw", user: str = "postgres") -> str:
    return f"postgresql+psycopg://{user}:{SPELLINGS[spelling](password)}@{HOST}"


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Each test starts with no URL registered (a registered password would hide the leak a test looks for)."""
    monkeypatch.setattr(urls, "_KNOWN", {})


def assert_hidden(*texts: str) -> None:
    for text in texts:
        assert MARK not in text and MARK not in text.replace("\n", ""), text


def driver_texts(url: str, password: str) -> list[str]:
    """What a driver, a traceback or a log line may say about the URL and its password."""
    texts = [f"error: OperationalError: connection to {url} failed: ({url})",
             f'FATAL:  password authentication failed for user "postgres" (password "{password}")',
             repr(RuntimeError(f"cannot connect with {url!r} and {password!r}")),
             json.dumps({"url": url, "password": password}),
             f"password={quote_plus(password)} password={quote(password, safe='')}",
             f"{url}\n  password: {password}\n"]
    try:
        from sqlalchemy.engine import make_url

        texts.append(f"Engine({make_url(url).render_as_string(hide_password=False)})")
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: nothing of its to render
        pass
    return texts


@pytest.mark.parametrize("password,spelling", CASES)
def test_a_shown_url_hides_its_password_exactly(password, spelling):
    url = url_with(password, spelling)
    assert mask_url(url) == MASKED
    assert describe_storage(url, Path("results/s")) == MASKED
    line = f"2 trials (2 completed), 1 on the Pareto front; results in results/s/ (storage: {describe_storage(url, Path('.'))})"
    assert_hidden(line, proxy_line(url, "0.0.0.0", 13000))
    assert f"in front of {MASKED};" in proxy_line(url, "0.0.0.0", 13000)


@pytest.mark.parametrize("password,spelling", CASES)
def test_free_text_hides_a_known_password_in_every_form(password, spelling):
    url = url_with(password, spelling)
    texts = driver_texts(url, password)
    assert_hidden(*(redact(text, url) for text in texts))
    assert_hidden(describe_error(RuntimeError(texts[0]), url), describe_error(RuntimeError(texts[2]), url))
    assert redact(f"connection to {url} failed ({url})", url) == f"connection to {MASKED} failed ({MASKED})"


@pytest.mark.parametrize("password,spelling", CASES)
def test_a_registered_url_is_hidden_in_every_later_text(password, spelling):
    url = url_with(password, spelling)
    register_url(url)
    assert_hidden(*(redact(text) for text in driver_texts(url, password)))
    assert_hidden(describe_error(RuntimeError(driver_texts(url, password)[2])))
    assert redact(f"connection to {url} failed ({url})") == f"connection to {MASKED} failed ({MASKED})"


@pytest.mark.parametrize("password,spelling", CASES)
def test_check_storage_url_never_shows_the_password(password, spelling):
    for url in (url_with(password, spelling), url_with(password, spelling).replace("+psycopg", "+nodriver")):
        try:
            check_storage_url(url)
        except ConfigError as exc:
            assert_hidden(str(exc))


@pytest.mark.parametrize("password,spelling", CASES)
def test_a_query_password_is_hidden(password, spelling):
    written = SPELLINGS[spelling](password)
    url = f"postgresql+psycopg://postgres@{HOST}?sslmode=require&password={written}"
    if "@" in written:  # `user@host:5432/...@` reads as a user-info too: both readings' secrets are hidden
        assert mask_url(url) == "postgresql+psycopg://postgres@127.0.0.1:***"
    else:
        assert mask_url(url) == f"postgresql+psycopg://postgres@{HOST}?sslmode=require&password=***"
    assert_hidden(*(redact(text, url) for text in driver_texts(url, password)))


@pytest.mark.parametrize("c", PRINTABLE)
def test_an_unknown_url_in_free_text_is_masked_too(c):
    """Without the URL known: the scan of `scheme://` in the text, whatever one character of the password is."""
    url = url_with(f"{MARK}1{c}{MARK}2{c}{MARK}3")
    assert redact(f"connection to {url} failed ({url}).") == f"connection to {MASKED} failed ({MASKED})."


@pytest.mark.parametrize("password", [*PRINTABLE, *(c * 2 for c in PRINTABLE)])
def test_short_passwords_are_hidden_by_the_urls_structure(password):
    """A password of one or two characters is never hidden bare (it would destroy the text), always in its URL."""
    for spelling in SPELLINGS:
        url = url_with(password, spelling)
        assert mask_url(url) == MASKED
        assert redact(f"connection to {url} failed", url) == f"connection to {MASKED} failed"
        assert f"postgres:{SPELLINGS[spelling](password)}@" not in redact(f"as postgres:{SPELLINGS[spelling](password)}@db", url)
    assert redact("a text with x and xy and xyz in it", url_with("x")) == "a text with x and xy and xyz in it"


def test_a_grpc_errors_details_are_redacted():
    """What a storage proxy answers (its details may quote the database's error) is shown redacted."""
    grpc = pytest.importorskip("grpc")
    password = f"{MARK}1'{MARK}2 {MARK}3"
    url = url_with(password)

    class Unavailable(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return f"cannot reach {url} (password {password!r})\nmore"

    register_url(url)
    assert describe_error(Unavailable()) == f'gRPC UNAVAILABLE: cannot reach {MASKED} (password "***")'


def test_a_password_that_is_the_user_name_is_not_hidden_bare():
    """It shows beside the mask anyway (`postgres:***@`): hiding `postgres` everywhere would hide the scheme."""
    url = "postgresql+psycopg://postgres:postgres@db/x"
    assert redact(f"cannot open {url}", url) == "cannot open postgresql+psycopg://postgres:***@db/x"


# --------------------------------------------------------------------------- end to end

runner = CliRunner()
UNREACHABLE = "127.0.0.1:1/nothing"  # nothing listens on port 1
SPACE = {"study": {"name": "secrets", "trials": 2}, "data": {"max_images": 64}, "train": {"steps": 2, "batch_size": 8},
         "eval": {"num_images": 8, "timesteps": 5, "timesteps_per_image": 1, "buckets": 1, "curve_points": 0},
         "architecture": {"levels": [{"width": 8, "blocks": 1}], "block": {"norm": {"groups": 4}},
                          "middle": {"blocks": 1, "attention": False}}}
E2E_URLS = {  # a quote, a space, '?', '#' and '/' as they are; every printable character raw ('@' too) and encoded
    "punctuation": f"postgresql+psycopg://postgres:{MARK}1'{MARK}2 {MARK}3?{MARK}4#{MARK}5/{MARK}6@{UNREACHABLE}",
    "all-raw": f"postgresql+psycopg://postgres:{pieces(PRINTABLE)}@{UNREACHABLE}",
    "all-encoded": f"postgresql+psycopg://postgres:{quote(pieces(PRINTABLE), safe='')}@{UNREACHABLE}",
}


def assert_nothing_written_shows(root: Path) -> None:
    """No file under `root` holds a piece of a password: text as it is, a table as its rows (images and weights hold no text)."""
    import pandas as pd

    for path in root.rglob("*"):
        if path.suffix == ".parquet":
            assert_hidden(pd.read_parquet(path).to_csv())
        elif path.is_file() and path.suffix not in (".png", ".pt"):
            assert MARK not in path.read_bytes().decode("utf-8", "replace"), path


@pytest.mark.parametrize("command", ["run", "results", "report", "verify", "storage-proxy"])
@pytest.mark.parametrize("name", list(E2E_URLS))
def test_commands_on_a_storage_that_does_not_answer_never_show_its_password(tmp_path, monkeypatch, command, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    url = E2E_URLS[name]
    args = {"run": ["run", "space.yaml", "--results-dir", "results"],
            "results": ["results", "--study", "secrets", "--out", "out"],
            "report": ["report", "--study", "secrets", "--out", "out", "--no-samples"],
            "verify": ["verify", "--study", "secrets"],
            "storage-proxy": ["storage-proxy", "--host", "127.0.0.1", "--port", "1"]}[command]
    result = runner.invoke(app, [*args, "--storage", url])
    assert result.exit_code in (1, 2), result.output
    assert "***" in result.output and "Traceback" not in result.output, result.output
    assert_hidden(result.output)
    assert_nothing_written_shows(tmp_path)


POSTGRES_URL = os.environ.get("ARCHSEARCH_TEST_POSTGRES_URL")


@pytest.mark.postgres
def test_a_whole_run_on_postgres_never_shows_its_password(tmp_path, monkeypatch):
    """A real study in PostgreSQL (trust auth takes any password) whose first trial fails with an
    error quoting the URL and the bare password: the run's lines, every file of the study folder,
    the tables, the report and the study's attributes hide it."""
    if not POSTGRES_URL:
        pytest.skip("set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
    import optuna

    import archsearch.trial as trial_module

    head, rest = POSTGRES_URL.split("://", 1)
    user = rest.split("@", 1)[0].split(":")[0] if "@" in rest else "postgres"
    password = f"{MARK}1'{MARK}2 {MARK}3?{MARK}4#{MARK}5/{MARK}6"
    url = f"{head}://{user}:{password}@{rest.split('@', 1)[-1]}"
    name = f"secrets-{os.getpid()}"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**SPACE, "study": {**SPACE["study"], "name": name}}))
    real, calls = trial_module.run_trial, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"lost {url} (password {password!r})")
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", first_fails)
    try:
        ran = runner.invoke(app, ["run", "space.yaml", "--results-dir", "results", "--storage", url])
        assert ran.exit_code == 0, ran.output
        assert "(storage: " in ran.output and "***@" in ran.output.replace("\n", "")
        tables = runner.invoke(app, ["results", "--storage", url, "--study", name, "--out", "tables", "--format", "csv"])
        report = runner.invoke(app, ["report", "--storage", url, "--study", name, "--out", "report", "--no-samples"])
        assert tables.exit_code == 0 and report.exit_code == 0, tables.output + report.output
        assert_hidden(ran.output, tables.output, report.output)
        assert_nothing_written_shows(tmp_path)
        study = optuna.load_study(study_name=name, storage=POSTGRES_URL)
        stored = [study.user_attrs] + [[t.user_attrs, t.system_attrs, t.params] for t in study.trials]
        assert "***" in json.dumps(stored, default=str)  # the failed trial's reason, masked
        assert_hidden(json.dumps(stored, default=str))
    finally:
        if name in [s.study_name for s in optuna.get_all_study_summaries(POSTGRES_URL)]:
            optuna.delete_study(study_name=name, storage=POSTGRES_URL)


@pytest.mark.postgres
@pytest.mark.parametrize("password", [f"{MARK}1'{MARK}2 {MARK}3?", "x"])
def test_a_real_driver_error_is_redacted(tmp_path, password):
    """A real connection to a database that does not exist: the driver's own words, no password."""
    if not POSTGRES_URL:
        pytest.skip("set ARCHSEARCH_TEST_POSTGRES_URL to a PostgreSQL database (CI does)")
    head, rest = POSTGRES_URL.split("://", 1)
    host = rest.split("@", 1)[-1].rsplit("/", 1)[0]
    url = f"{head}://postgres:{password}@{host}/archsearch_no_such_database"
    with pytest.raises(RuntimeError) as exc:
        open_storage(url, tmp_path)
    shown = describe_error(exc.value)
    assert shown.startswith(f"RuntimeError: cannot open storage {head}://postgres:***@{host}/") and "does not exist" in shown
    assert_hidden(shown)


def test_the_readme_shows_a_url_as_archsearch_prints_it():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    url = "postgresql+psycopg://archsearch:$PGPASSWORD@db.example.org:5432/archsearch"
    assert f"export STORAGE={url}" in readme and f"`{mask_url(url)}`" in readme
