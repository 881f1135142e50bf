"""Static files: collected under content-hashed names with gzip copies
(``collectstatic``), served by WhiteNoise in front of the ASGI app in every
mode (daphne and uvicorn): the compressed copy when the browser takes it, a
year's ``immutable`` cache on hashed names, a minute on the others.

A checkout that never ran ``collectstatic`` still works: pages then name the
plain files, served from the finders (uncompressed, short cache). ``serve``
(``make run``) and ``make prod`` collect first (``collect_if_stale``)."""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any

from django.conf import settings
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed names and gzip copies; the imports of JavaScript modules are
    rewritten to the hashed names too (the dashboard's modules import each
    other). A name missing from the manifest (nothing collected yet) is
    answered as is instead of failing the page."""

    support_js_module_import_aggregation = True

    def url_converter(self, name: str, hashed_files: Any, template: str | None = None) -> Any:
        # A reference to a file that is not there (a package's extension
        # importing a module it does not ship) stays as written rather than
        # failing the whole collection.
        convert = super().url_converter(name, hashed_files, template)

        def converter(matchobj: Any) -> str:
            try:
                return str(convert(matchobj))
            except ValueError:
                logger.debug("static file %s: reference %r left as written", name, matchobj["matched"])
                return str(matchobj["matched"])

        return converter

    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:
            return name


def _manifest_path() -> Path:
    return Path(settings.STATIC_ROOT) / HashedStaticFilesStorage.manifest_name


def static_files_stale() -> bool:
    """Whether ``collectstatic`` must run: nothing collected yet, or a file of
    the project's own static folders or front-end packages newer than the
    collected manifest (installed apps' files change only with their package)."""
    manifest = _manifest_path()
    if not manifest.exists():
        return True
    collected_at = manifest.stat().st_mtime
    for entry in settings.STATICFILES_DIRS:
        root = Path(entry[1] if isinstance(entry, tuple) else entry)
        if root.is_dir() and any(p.stat().st_mtime > collected_at for p in root.rglob("*") if p.is_file()):
            return True
    return False


def collect_if_stale(stdout: Any = None) -> bool:
    """Run ``collectstatic`` when ``static_files_stale``; whether it ran."""
    from django.core.management import call_command

    if not static_files_stale():
        return False
    call_command("collectstatic", interactive=False, verbosity=0)
    if stdout is not None:
        stdout.write(f"Static files collected into {settings.STATIC_ROOT}\n")
    return True


class StaticFilesASGI:
    """WhiteNoise's files, headers and content negotiation answered over ASGI
    (its own middleware is WSGI-style and would stream files synchronously);
    any other request goes to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        with warnings.catch_warnings():
            # Nothing collected yet (a clean clone): the finders serve the files.
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            self.whitenoise = WhiteNoiseMiddleware()
        self.prefix = self.whitenoise.static_prefix

    def find(self, path: str) -> Any:
        # Autorefresh (DEBUG): looked up on each request, edits show at once.
        return self.whitenoise.find_file(path) if self.whitenoise.autorefresh else self.whitenoise.files.get(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        static_file = self.find(path) if scope["type"] == "http" and path.startswith(self.prefix) else None
        if static_file is None:
            await self.app(scope, receive, send)
            return
        environ = {"HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1") for name, value in scope["headers"]}
        response = static_file.get_response(scope["method"], environ)
        headers = [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in response.headers]
        body = b""
        if response.file is not None:
            body = await asyncio.to_thread(_read_and_close, response.file)
        await send({"type": "http.response.start", "status": int(response.status), "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _read_and_close(file: Any) -> bytes:
    try:
        return bytes(file.read())
    finally:
        file.close()
