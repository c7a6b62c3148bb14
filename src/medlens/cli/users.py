"""`medlens users add|list|token|revoke|passwd|remove`: the server's accounts.

Users live in the store, so MEDLENS_DATA_DIR / MEDLENS_DATABASE_URL decide whose users
a server sees. Passwords are hashed with Argon2id; a token is printed once and only its
SHA-256 is kept. Every change is written to the audit log as actor "cli".
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from medlens.cli.common import settings_from
from medlens.errors import ConfigError, MedLensError

users_app = typer.Typer(
    help="Users, roles and API tokens of the server (stored in the database).",
    no_args_is_help=True,
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_RESERVED = {"local", "cli"}
MIN_PREFIX_CHARS = 8


class Role(StrEnum):
    clinician = "clinician"
    radiologist = "radiologist"
    admin = "admin"


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@contextmanager
def _store() -> Iterator[Any]:
    from medlens.store import open_store

    store = open_store(settings_from())
    try:
        yield store
    finally:
        store.close()


def _check_name(name: str, what: str = "user name") -> str:
    from medlens.store.users import TOKEN_PREFIX

    if not _NAME.match(name) or name.startswith(TOKEN_PREFIX) or name.lower() in _RESERVED:
        raise ConfigError(
            f"Invalid {what} {name!r}: use letters, digits, '.', '_', '@' or '-' (at most 64),"
            f" not starting with {TOKEN_PREFIX!r} nor one of {sorted(_RESERVED)}."
        )
    return name


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _user(store: Any, name: str) -> Any:
    user = store.get_user_by_name(name)
    if user is None:
        raise ConfigError(f"No user named {name!r} (see `medlens users list`).")
    return user


@users_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Login name (unique).")],
    role: Annotated[Role, typer.Option("--role", help="What the user may do.")],
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="A group whose studies the user shares (repeatable)."),
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user; the password is prompted twice (hidden) unless --password-stdin."""
    from medlens.store.users import hash_password

    try:
        _check_name(name)
        groups = [_check_name(g, "group") for g in dict.fromkeys(group or [])]
        password_hash = hash_password(_read_password(password_stdin))
        with _store() as store:
            user = store.create_user(name, role.value, groups, password_hash)
            store.audit("cli", "user_add", detail={"user": name, "role": role.value})
    except Exception as err:
        _fail(err)
    typer.echo(f"added {user.name} ({user.role}; groups: {', '.join(user.groups) or '-'})")


@users_app.command("list")
def list_cmd() -> None:
    """The users with their role, groups and active tokens."""
    with _store() as store:
        users = store.list_users()
        typer.echo(f"{'NAME':<24} {'ROLE':<12} {'GROUPS':<24} {'PASSWORD':<8} TOKENS")
        for user in users:
            active = [t.prefix for t in store.list_tokens(user.id) if t.revoked_at is None]
            typer.echo(
                f"{user.name:<24} {user.role:<12} {','.join(user.groups) or '-':<24} "
                f"{'set' if user.password_hash else '-':<8} {' '.join(active) or '-'}"
            )


@users_app.command("token")
def token_cmd(name: Annotated[str, typer.Argument(help="The user to make a token for.")]) -> None:
    """Print a new API token for NAME, once: it cannot be shown again."""
    from medlens.store.users import new_token

    try:
        with _store() as store:
            user = _user(store, name)
            token, sha, prefix = new_token()
            store.add_token(user.id, sha, prefix)
            store.audit("cli", "token_add", detail={"user": name, "prefix": prefix})
    except Exception as err:
        _fail(err)
    typer.echo(
        f"new token for {name} (shown once; revoke with `medlens users revoke {prefix}`):", err=True
    )
    typer.echo(token)


@users_app.command("revoke")
def revoke_cmd(
    target: Annotated[
        str, typer.Argument(help="A user name (all their tokens) or a token prefix.")
    ],
) -> None:
    """Revoke all of a user's tokens, or the token(s) starting with a prefix. Immediate."""
    from medlens.store.users import TOKEN_PREFIX

    try:
        with _store() as store:
            user = store.get_user_by_name(target)
            if user is not None:
                n = store.revoke_tokens(user_id=user.id)
            elif target.startswith(TOKEN_PREFIX) and len(target) >= MIN_PREFIX_CHARS:
                n = store.revoke_tokens(prefix=target)
            else:
                raise ConfigError(
                    f"{target!r} is neither a user nor a token prefix (like "
                    f"{TOKEN_PREFIX}xxxx, at least {MIN_PREFIX_CHARS} characters)."
                )
            store.audit("cli", "token_revoke", detail={"target": target[:16], "revoked": n})
    except Exception as err:
        _fail(err)
    typer.echo(f"revoked {n} token(s)")


@users_app.command("passwd")
def passwd_cmd(
    name: Annotated[str, typer.Argument(help="The user whose password to set.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password (their page sessions end)."""
    from medlens.store.users import hash_password

    try:
        with _store() as store:
            user = _user(store, name)
            store.set_password(user.id, hash_password(_read_password(password_stdin)))
            store.audit("cli", "user_passwd", detail={"user": name})
    except Exception as err:
        _fail(err)
    typer.echo(f"password of {name} changed")


@users_app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="The user to remove.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Remove a user and their tokens at once (their studies stay, visible to admins)."""
    if not yes:
        typer.confirm(f"Remove user {name!r}?", abort=True)
    try:
        with _store() as store:
            store.delete_user(_user(store, name).id)
            store.audit("cli", "user_remove", detail={"user": name})
    except Exception as err:
        _fail(err)
    typer.echo(f"removed {name}")


def _fail(err: Exception) -> NoReturn:
    # The package's own errors are one line; anything else is a bug: keep its traceback.
    if isinstance(err, MedLensError):
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
    raise err


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
