"""Storage URLs: checking one before anything is written, and keeping passwords out of output.

    check_storage_url("postgresql+psycopg://user:pw@db/archsearch")   # ConfigError if malformed
    grpc_address("grpc://proxy-host:13000")                           # ("proxy-host", 13000)
    redact("cannot connect to postgresql://u:s3cr@t@db/x?password=p")  # ... u:***@db/x?password=***

`redact` finds every `scheme://...` in a text and hides its password: the user-info part's
password, whatever characters it holds (`@` included; the last `@` before the host ends it),
and every password-like query parameter (`?password=`, `passwd`, `pwd`, `secret`, `token`).
SQLAlchemy's own `make_url(...).render_as_string(hide_password=True)` hides neither: it
splits `user:p@ss@host` at the first `@` (leaking `ss` as part of the host) and leaves the
query alone.
"""

from __future__ import annotations

import re

from .errors import ConfigError

__all__ = ["redact", "check_storage_url", "grpc_address"]

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s'\"<>]*)")
_SECRET_PARAM = re.compile(r"(?P<key>(?:^|[?&;])(?:password|passwd|pwd|pass|secret|token|api_key|apikey)=)(?P<value>[^&;#]*)",
                           re.IGNORECASE)
_HIDDEN = "***"


def redact(text: str, url: str | None = None) -> str:
    """`text` with the password of every URL in it replaced by `***`; with `url`, also every
    bare occurrence of that URL's password (a driver may quote it without its URL)."""
    text = _URL.sub(lambda m: m["scheme"] + _redact_rest(m["rest"]), str(text))
    password = _password(url) if url else None
    return text.replace(password, _HIDDEN) if password and len(password) >= 3 else text


def _password(url: str) -> str | None:
    head = url.split("://", 1)[-1].split("?", 1)[0]
    userinfo = head[: head.rfind("@")] if "@" in head else ""
    if ":" not in userinfo:
        return None
    from urllib.parse import unquote

    return unquote(userinfo.split(":", 1)[1])


def _redact_rest(rest: str) -> str:
    query_at = rest.find("?")
    head, query = (rest, "") if query_at < 0 else (rest[:query_at], rest[query_at:])
    at = head.rfind("@")  # the password may hold '@'; the host cannot
    if at >= 0:
        userinfo, host = head[:at], head[at:]
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + _HIDDEN
        head = userinfo + host
    return head + _SECRET_PARAM.sub(lambda m: m["key"] + _HIDDEN, query)


_KNOWN_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite", "oracle", "mssql")


def check_storage_url(url: str, path: str = "--storage") -> None:
    """Raise ConfigError (located at `path`) for a URL that cannot name a storage.

    Only the form is checked: whether the server answers is found when it is opened (an
    unreachable server is a runtime failure, not bad input).
    """
    if url.startswith("grpc://"):
        grpc_address(url, path)
        return
    if url.startswith(("journal://", "file://")):
        if not url.split("://", 1)[1]:
            raise ConfigError(path, f"{url!r} names no journal file; write journal:///path/to/optuna.journal")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a non-numeric port raises here
    except (ArgumentError, ValueError):
        raise ConfigError(path, f"{redact(url)!r} is not a storage URL; write dialect+driver://user@host:port/database "
                                "(a password follows the user after a colon), e.g. postgresql+psycopg://..., "
                                "or journal:///path/to/optuna.journal, or grpc://HOST:PORT") from None
    if url.split("?", 1)[0].count("@") > 1:
        raise ConfigError(path, f"{redact(url)!r}: the password holds '@', which ends it for the database driver; "
                                "write each '@' in it as %40")
    dialect = parsed.get_backend_name()
    if dialect not in _KNOWN_SCHEMES:
        raise ConfigError(path, f"unknown database {dialect!r} in {redact(url)!r}; use postgresql, mysql or sqlite "
                                "(or journal:///path, or grpc://HOST:PORT)")
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(path, f"unknown driver {parsed.drivername!r} in {redact(url)!r}; e.g. postgresql+psycopg, "
                                "mysql+pymysql") from None


_GRPC_FORM = "write grpc://HOST:PORT, where `archsearch storage-proxy` listens (e.g. grpc://10.0.0.5:13000)"


def grpc_address(url: str, path: str = "--storage") -> tuple[str, int]:
    """(host, port) of a `grpc://HOST:PORT` URL (an IPv6 host keeps its brackets, as gRPC wants it);
    ConfigError at `path` for anything else. Optuna's proxy is unauthenticated: no user, no password."""
    shown = redact(url)
    rest = url.split("://", 1)[1].removesuffix("/")
    if "@" in rest:
        raise ConfigError(path, f"{shown!r}: Optuna's gRPC proxy takes no user or password (it has no authentication; "
                                f"keep it on a private network); {_GRPC_FORM}")
    if any(c in rest for c in "/?#"):
        raise ConfigError(path, f"{shown!r}: a proxy URL names no database, path or options (the proxy knows its "
                                f"database); {_GRPC_FORM}")
    host, colon, port = rest.rpartition(":")
    if not colon:
        raise ConfigError(path, f"{shown!r} names no port; {_GRPC_FORM}")
    if not host:
        raise ConfigError(path, f"{shown!r} names no host; {_GRPC_FORM}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(path, f"{shown!r}: write an IPv6 host in brackets, e.g. grpc://[::1]:13000")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(path, f"{shown!r}: the port {port!r} is not a number from 1 to 65535; {_GRPC_FORM}")
    return host, int(port)
