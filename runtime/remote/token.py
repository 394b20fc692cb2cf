"""The access token of a render server (main thread: `imtalker-cam serve` and the client).

Generated on first start into the config folder (`server-token`, mode 0600) and shown once;
`--token` or `IMTALKER_TOKEN` sets it explicitly (on the client too).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from runtime.remote.protocol import TOKEN_MIN_CHARS

TOKEN_ENV = "IMTALKER_TOKEN"
TOKEN_FILE = "server-token"


class TokenError(ValueError):
    """A token that cannot be used; `str()` says why."""


def check_token(token: str) -> str:
    token = token.strip()
    if len(token) < TOKEN_MIN_CHARS or not token.isprintable() or " " in token:
        raise TokenError(
            f"the token must be at least {TOKEN_MIN_CHARS} printable characters without spaces"
        )
    return token


def server_token(explicit: str | None, config_dir: Path) -> tuple[str, bool]:
    """(token, newly generated). `explicit` (or `IMTALKER_TOKEN`) wins; else the stored one;
    else a new one is generated and stored (0600)."""
    given = explicit if explicit is not None else os.environ.get(TOKEN_ENV)
    if given:
        return check_token(given), False
    path = config_dir / TOKEN_FILE
    try:
        return check_token(path.read_text(encoding="utf-8")), False
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, TokenError) as exc:
        raise TokenError(f"{path} cannot be used as the token ({exc}); delete it") from None
    token = secrets.token_urlsafe(32)
    config_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    # Created 0600 from the start: the token is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(token.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return token, True


def client_token(explicit: str | None) -> str | None:
    given = explicit if explicit is not None else os.environ.get(TOKEN_ENV)
    return None if not given else check_token(given)
