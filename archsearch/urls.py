"""Storage URLs: checking one before anything is written, and keeping passwords out of output.

    check_storage_url("postgresql+psycopg://user:pw@db/archsearch")   # ConfigError if malformed
    grpc_address("grpc://proxy-host:13000")                           # ("proxy-host", 13000)
    mask_url("postgresql://u:it's a secret@db/x?password=p")          # postgresql://u:***@db/x?password=***
    redact("cannot connect to postgresql://u:s3cr@t@db/x")            # ... postgresql://u:***@db/x

Passwords are hidden in three layers:

- **A URL archsearch shows** (a summary's storage, the proxy's line, an error about the URL)
  goes through `mask_url`, which reads the URL's structure, not its characters: the password
  runs from the first `:` of the user-info to the *last* `@` (a password may hold any printable
  character, `@` `/` `?` `#` `'` and spaces included; a host holds none of them), and every
  password-like query parameter (`password`, `sslpassword`, `secret`, `token`, ...) loses its
  value, up to the next `&name=`. Both are read over the whole URL and what either calls a
  secret is hidden: too much of an odd URL (an `@` in a query value) is the price of never too
  little. SQLAlchemy's `make_url(...).render_as_string()` is no substitute: it shows the
  query's password, and splits `user:p@ss@host` at the first `@` (showing `ss` as the host).
- **Every URL a process is given** is registered (`register_url`: `check_storage_url`,
  `open_storage` and the CLI's error handler do it), and `redact` hides it in any text, in
  every form a driver, a traceback or a log may quote it: the URL as given and as SQLAlchemy
  renders it, and `user:password@`, whatever the password's length; the bare password raw,
  percent-decoded and -encoded, repr- and JSON-escaped, from 3 characters on (hiding every
  bare `x` would destroy the text). Each form is looked for in the text as it is, and the
  union of what they cover is hidden, so that overlapping forms never leave a piece behind.
- **Any other `scheme://...`** in a text is masked as `mask_url` does, up to the first space or
  quote (or to an `@` a few characters past one, for a `user:pass` that holds a space or a
  quote). A hand scan, linear in the text: `redact` runs on every error message, whatever its
  size.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from .errors import ConfigError, excerpt

__all__ = ["redact", "mask_url", "register_url", "check_storage_url", "grpc_address"]

_HIDDEN = "***"
_SECRET_KEYS = ("pwd", "pass", "auth")                # a query parameter named so holds a secret,
_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key")  # ... and one named with these
_PARAM = re.compile(r"[?&;]([A-Za-z_][A-Za-z0-9_.\-]*)=")  # a query parameter, up to its value
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_LONGEST_SCHEME = 40                                 # `postgresql+psycopg2cffi` is 23
_IN_TEXT = re.compile(r"[^\s'\"<>`]*")               # a URL in free text ends at a space or a quote
_SHORTEST_BARE = 3                                   # a bare password shorter than this stays (see above)
_PARSED_UP_TO = 4096                                 # SQLAlchemy parses a URL no longer than this


def mask_url(url: str) -> str:
    """`url` with its password and its password-like query parameters shown as `***` (see the
    module docstring); a text that is not a URL is masked alike (a `user:password@`, a `?password=`)."""
    url = str(url)
    at = url.find("://")
    start = at + 3 if at > 0 and url[0].isascii() and url[0].isalpha() and set(url[:at]) <= _SCHEME_CHARS else 0
    return url[:start] + _hide(url[start:], _secret_spans(url[start:]))


def _secret_spans(rest: str) -> list[tuple[int, int]]:
    """Where the secrets of what follows `scheme://` lie: the user-info's password (from the first
    `:` to the last `@`), and the value of every password-like query parameter (up to the next
    `&name=` or `;name=`: a raw `&` in it leaks no part of it). Both are looked for in the whole
    of `rest`, since a password may hold `?` and a query value `@`: what either reading calls a
    secret is hidden."""
    spans = []
    at = rest.rfind("@")
    colon = rest.find(":", 0, max(at, 0))
    if at > 0 and colon >= 0 and not rest.startswith("/"):  # not an empty authority (sqlite:///C:/a@b.db)
        spans.append((colon + 1, at))
    params = list(_PARAM.finditer(rest))
    for param, following in zip(params, [*params[1:], None]):
        if _is_secret(param[1]):
            spans.append((param.end(), following.start() if following else len(rest)))
    return spans


def _is_secret(key: str) -> bool:
    key = key.lower()
    return key in _SECRET_KEYS or any(word in key for word in _SECRET_WORDS)


def _hide(text: str, spans) -> str:
    """`text` with `spans` (start, end) shown as `***`, one for those that overlap or touch."""
    out, done = [], 0
    for start, end in sorted(spans):
        if start > done or not out:
            out += [text[done:start], _HIDDEN]
        done = max(done, end)
    out.append(text[done:])
    return "".join(out)


# --------------------------------------------------------------------------- secrets in free text

_Spans = tuple[tuple[int, int], ...]
_KNOWN: dict[str, _Spans] = {}  # a form of a registered URL or password -> where the secret lies in it


def register_url(url: str | None) -> None:
    """Remember `url`'s password for the rest of this process: every later `redact` hides it in
    any form (see the module docstring). A URL without a password adds nothing."""
    global _KNOWN
    if url:  # a new dict, not an update: a `redact` in another thread may be reading the old one
        _KNOWN = _merge_into(dict(_KNOWN), _forms(str(url)))


def redact(text: str, url: str | None = None) -> str:
    """`text` with every password hidden: those of the URLs registered in this process and of
    `url`, in all their forms, and that of any other `scheme://user:password@...` in it.

    Every form is looked for in the text as it is, and what any of them covers is hidden (so two
    forms that overlap, say a URL and its bare password, hide their union). Linear in the length
    of `text` for each form."""
    text = str(text)
    forms = _KNOWN if not url else _merge_into(dict(_KNOWN), _forms(str(url)))
    spans = [(at + start, at + end) for form, inside in forms.items() for at in _occurrences(text, form)
             for start, end in inside]
    return _hide(text, spans + _spans_of_urls_in(text))


def _occurrences(text: str, form: str):
    at = text.find(form)
    while at >= 0:
        yield at
        at = text.find(form, at + len(form))  # (in `aaaa`, `aaa` hides three: one `a` is not the password)


def _merge_into(known: dict[str, _Spans], forms: dict[str, _Spans]) -> dict[str, _Spans]:
    for form, spans in forms.items():
        known[form] = tuple(sorted({*known.get(form, ()), *spans}))
    return known


def _forms(url: str) -> dict[str, _Spans]:
    """Every form in which `url` and its secrets may be quoted -> where the secret lies in it."""
    scheme_end = url.find("://")
    rest = url[scheme_end + 3:] if scheme_end >= 0 else url
    secrets = {rest[start:end] for start, end in _secret_spans(rest)}
    users = {rest[: rest.find(":")]} if ":" in rest else set()
    parsed, pieces = _parsed(url), set()
    if parsed is not None:
        if parsed.password is not None:  # SQLAlchemy ends it at the first '@', not the last
            secrets.add(str(parsed.password))
            users.add(parsed.username or "")
        query = [(k, v) for k, vs in parsed.query.items() for v in ([vs] if isinstance(vs, str) else vs)]
        secrets.update(v for k, v in query if _is_secret(k))
        # A URL SQLAlchemy reads otherwise (a raw '@' in a query's password) may put a piece of a
        # secret in its host or database, which its rendering shows even with the password hidden.
        shown = _hide(rest, _secret_spans(rest))
        pieces = {c for c in (parsed.host, parsed.database, *(v for _, v in query)) if c and c not in shown
                  and any(c in s or c in unquote(s) for s in secrets)}
        secrets |= pieces
    secrets.discard("")
    if not secrets:
        return {}
    forms: dict[str, _Spans] = {}
    for whole in {url, parsed.render_as_string(hide_password=False) if parsed is not None else url}:
        head = whole.find("://") + 3 if "://" in whole else 0
        inside = [(head + a, head + b) for a, b in _secret_spans(whole[head:])]
        inside += [(at, at + len(form)) for piece in pieces for form in _spellings(piece)
                   for at in _occurrences(whole, form)]
        _merge_into(forms, {whole: tuple(inside)})
    spelled = {form for secret in secrets for form in _spellings(secret)}
    for user in {form for user in users for form in (user, unquote(user), quote(unquote(user), safe=" +"))}:
        _merge_into(forms, {f"{user}:{form}@": ((len(user) + 1, len(user) + 1 + len(form)),) for form in spelled})
    names = {unquote(user) for user in users}
    for secret in secrets:  # bare: not a short one, nor one that is the user's name (shown beside it anyway)
        if len(unquote(secret)) >= _SHORTEST_BARE and unquote(secret) not in names:
            _merge_into(forms, {form: ((0, len(form)),) for form in _spellings(secret) if len(form) >= _SHORTEST_BARE})
    return forms


def _spellings(secret: str) -> set[str]:
    """A password as written in a URL, decoded, re-encoded (as SQLAlchemy and urllib write it)
    and escaped (as repr and JSON quote it, in either quotes, once or within a repr'd message)."""
    plain = {secret, unquote(secret), unquote_plus(secret)}
    encoded = {f(p) for p in plain for f in (lambda p: quote(p, safe=" +"), lambda p: quote(p, safe=""), quote_plus)}
    escaped = {e for p in plain for e in (*_escapes(p), json.dumps(p)[1:-1])}
    return plain | encoded | escaped | {e2 for e in escaped for e2 in _escapes(e)}


def _escapes(text: str) -> set[str]:
    bare = text.encode("unicode_escape").decode()  # backslashes and what is not printable
    single, double = bare.replace("'", "\\'"), bare.replace('"', '\\"')
    return {bare, single, double, single.replace('"', '\\"')}


def _parsed(url: str):
    """SQLAlchemy's reading of `url`, or None."""
    if len(url) > _PARSED_UP_TO or "://" not in url:
        return None
    try:
        from sqlalchemy.engine import make_url

        return make_url(url)
    except Exception:  # noqa: BLE001 - not a database URL (or no SQLAlchemy): its own structure is enough
        return None


def _spans_of_urls_in(text: str) -> list[tuple[int, int]]:
    """The secrets of every `scheme://...` in `text` (`_secret_spans`); one pass, linear in `len(text)`."""
    spans = []
    sep = text.find("://")
    done = 0
    while sep >= 0:
        start = sep
        while start > max(done, sep - _LONGEST_SCHEME) and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < sep and not text[start].isalpha():
            start += 1
        if start == sep:  # `://` after no scheme
            sep = text.find("://", sep + 3)
            continue
        end = _IN_TEXT.match(text, sep + 3).end()
        if end < len(text) and ":" in text[sep + 3: end] and "@" not in text[sep + 3: end]:
            window = text[end: end + 64].split("\n", 1)[0]  # `user:pass` cut by a space or a quote in the password?
            at = window.find("@")
            if at >= 0 and "://" not in window[:at]:
                end = _IN_TEXT.match(text, end + at).end()
        spans += [(sep + 3 + a, sep + 3 + b) for a, b in _secret_spans(text[sep + 3: end])]
        done = end
        sep = text.find("://", end)
    return spans


# --------------------------------------------------------------------------- checking a URL

_KNOWN_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite", "oracle", "mssql")
_URL_EXCERPT = 200  # a URL quoted in a message: long enough for any real one


def _shown(url: str) -> str:
    return excerpt(mask_url(url), _URL_EXCERPT)


def check_storage_url(url: str, path: str = "--storage") -> None:
    """Raise ConfigError (located at `path`) for a URL that cannot name a storage; register it
    (`register_url`), so that no later message shows its password.

    Only the form is checked: whether the server answers is found when it is opened (an
    unreachable server is a runtime failure, not bad input).
    """
    register_url(url)
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
        raise ConfigError(path, f"{_shown(url)} is not a storage URL; write dialect+driver://user@host:port/database "
                                "(a password follows the user after a colon), e.g. postgresql+psycopg://..., "
                                "or journal:///path/to/optuna.journal, or grpc://HOST:PORT") from None
    misread = "@" in (parsed.host or "") or (parsed.password is not None and "@" in (parsed.database or ""))
    if url.split("?", 1)[0].count("@") > 1 or misread:  # (a '?' in the password hides a later '@' from the first)
        raise ConfigError(path, f"{_shown(url)}: the password holds '@', which ends it for the database driver; "
                                "write each '@' in it as %40")
    dialect = parsed.get_backend_name()
    if dialect not in _KNOWN_SCHEMES:
        raise ConfigError(path, f"unknown database {excerpt(dialect)} in {_shown(url)}; use postgresql, mysql or "
                                "sqlite (or journal:///path, or grpc://HOST:PORT)")
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(path, f"unknown driver {excerpt(parsed.drivername)} in {_shown(url)}; e.g. "
                                "postgresql+psycopg, mysql+pymysql") from None


_GRPC_FORM = "write grpc://HOST:PORT, where `archsearch storage-proxy` listens (e.g. grpc://10.0.0.5:13000)"


def grpc_address(url: str, path: str = "--storage") -> tuple[str, int]:
    """(host, port) of a `grpc://HOST:PORT` URL (an IPv6 host keeps its brackets, as gRPC wants it);
    ConfigError at `path` for anything else. Optuna's proxy is unauthenticated: no user, no password."""
    shown = _shown(url)
    rest = url.split("://", 1)[1].removesuffix("/")
    if "@" in rest:
        raise ConfigError(path, f"{shown}: Optuna's gRPC proxy takes no user or password (it has no authentication; "
                                f"keep it on a private network); {_GRPC_FORM}")
    if any(c in rest for c in "/?#"):
        raise ConfigError(path, f"{shown}: a proxy URL names no database, path or options (the proxy knows its "
                                f"database); {_GRPC_FORM}")
    host, colon, port = rest.rpartition(":")
    if not colon:
        raise ConfigError(path, f"{shown} names no port; {_GRPC_FORM}")
    if not host:
        raise ConfigError(path, f"{shown} names no host; {_GRPC_FORM}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(path, f"{shown}: write an IPv6 host in brackets, e.g. grpc://[::1]:13000")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(path, f"{shown}: the port {excerpt(port)} is not a number from 1 to 65535; {_GRPC_FORM}")
    return host, int(port)
