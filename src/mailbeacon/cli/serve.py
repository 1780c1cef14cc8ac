"""``mailbeacon serve``: tracking routes and API on one machine."""

from __future__ import annotations

import secrets
import socket

from mailbeacon import accounts, logs
from mailbeacon.cli.common import console, fail, open_db, with_settings
from mailbeacon.relay import tls
from mailbeacon.settings import Settings
from mailbeacon.store import queries
from mailbeacon.web.app import App
from mailbeacon.web.server import serve as run_server
from mailbeacon.web.services import Services

FIRST_ADMIN = "admin@localhost"


def _can_listen(what: str, host: str, port: int) -> None:
    """Refuse to start, saying why, when an address is taken: found later, inside the server,
    it would end in a page of tracebacks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            flag = "--listen" if what == "HTTP" else "--smtp-listen"
            raise fail(
                f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc} "
                f"(another server? choose another address with {flag})"
            ) from exc


@with_settings
def serve(*, settings: Settings) -> None:
    """Serve the tracking routes and the API.

    The first start creates an admin user and prints its API key and dashboard password.
    """
    log_config = logs.setup(settings.log_format)
    _can_listen("HTTP", settings.host, settings.port)
    if settings.smtp_listen is not None:
        _can_listen("SMTP", *settings.smtp_listen)
    with open_db(settings) as db:
        dialect = db.dialect
        if db.read(queries.count_users) == 0:
            password = secrets.token_urlsafe(12)
            admin = db.write(accounts.create_user, FIRST_ADMIN, is_admin=True, password=password)
            console.print(
                f"Created the admin user {admin.email}. Its API key and password (shown once):"
            )
            console.print(f"  API key:  [bold]{admin.api_key}[/bold]", highlight=False)
            console.print(f"  password: [bold]{password}[/bold]", highlight=False)
            console.print(
                f"  Sign in at {settings.public_url}/ (another password: "
                f"`mailbeacon users password {admin.email}`)",
                highlight=False,
            )
    console.print(f"mailbeacon listening on {settings.public_url}", highlight=False)
    console.print(f"  web:     {settings.public_url}/", highlight=False)
    console.print(f"  API:     {settings.public_url}/api/v1/openapi.json", highlight=False)
    console.print(f"  data:    {settings.data}  database: {dialect}", highlight=False)
    if settings.smtp_listen is not None:
        # Made (or checked) now, so that a bad certificate stops the start with its reason, and
        # so that users can compare the fingerprint with what their mail client shows them.
        tls.server_context(settings)
        cert = tls.certificate_files(settings)[0]
        host, port = settings.smtp_listen
        console.print(f"  SMTP:    {host}:{port} (STARTTLS, then AUTH)", highlight=False)
        console.print(f"  cert:    {cert}  SHA-256 {tls.fingerprint(cert)}", highlight=False)
    run_server(App(Services.open(settings)), settings.host, settings.port, log_config)
