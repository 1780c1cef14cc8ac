"""``mailbeacon secret``: the signing keyring."""

from __future__ import annotations

from pathlib import Path

import typer

from mailbeacon.cli.common import console, fail
from mailbeacon.settings import SETTINGS, rotate_secret_file

app = typer.Typer(help="Manage the token signing secret.", no_args_is_help=True)


@app.command("rotate")
def rotate(
    data: str = typer.Option(SETTINGS[0].default, "--data", help=SETTINGS[0].help),
) -> None:
    """Sign new mail with a new secret; mail already sent keeps working with the old ones.

    Restart `serve` afterwards. With MAILBEACON_SECRET set, rotate by moving the old value to
    MAILBEACON_PREVIOUS_SECRETS instead.
    """
    path = Path(data)
    if not (path / "secret").exists():
        raise fail(f"no secret in {path}: start `mailbeacon serve` once first")
    rotate_secret_file(path)
    console.print(
        f"Rotated {path / 'secret'}: restart `mailbeacon serve` to sign with the new key."
    )
