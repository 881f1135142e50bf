"""Static files (core.static_files): collected under hashed names with gzip
copies, served over ASGI with a year's immutable cache on hashed names and a
short one on the others, the gzip copy only to a browser that takes it; the
dashboard's module imports name the hashed files; nothing collected yet: the
plain files from the finders."""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command

from core.static_files import StaticFilesASGI, static_files_stale

MODULE = "const big = " + repr("x" * 4000) + ";\nexport const answer = 42;\n"


@pytest.fixture
def static_setup(settings, tmp_path: Path) -> Path:
    source = tmp_path / "src"
    (source / "js").mkdir(parents=True)
    (source / "js" / "lib.js").write_text(MODULE)
    (source / "js" / "main.js").write_text('import { answer } from "./lib.js";\nconsole.log(answer);\n')
    settings.STATICFILES_DIRS = [source]
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STATIC_ROOT = tmp_path / "collected"
    settings.DEBUG = False
    return source


async def _not_found(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def _get(app: StaticFilesASGI, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(app(scope, None, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(m.get("body", b"") for m in sent[1:])


def test_hashed_files_are_served_compressed_and_cached_for_a_year(static_setup):
    assert static_files_stale()
    call_command("collectstatic", interactive=False, verbosity=0)
    assert not static_files_stale()
    lib, main = staticfiles_storage.url("js/lib.js"), staticfiles_storage.url("js/main.js")
    assert lib != "/static/js/lib.js" and lib.startswith("/static/js/lib.")
    app = StaticFilesASGI(_not_found)

    status, headers, body = _get(app, main)
    assert status == 200 and f'from "./{lib.rsplit("/", 1)[1]}"' in body.decode()  # the import names the hashed module

    status, headers, body = _get(app, lib, accept_encoding="gzip, deflate, br")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "immutable" in headers["cache-control"] and "max-age=315360000" in headers["cache-control"]
    assert gzip.decompress(body).decode() == MODULE and len(body) < len(MODULE) / 4

    status, headers, body = _get(app, lib)  # a client without gzip gets the plain file
    assert status == 200 and "content-encoding" not in headers and body.decode() == MODULE

    status, headers, _ = _get(app, "/static/js/lib.js")  # the unhashed name: a short cache
    assert status == 200 and headers["cache-control"] == "max-age=60, public"

    status, _, body = _get(app, "/static/js/nothing.js")
    assert status == 404 and body == b"app"  # not a static file: the app answers


def test_without_collectstatic_pages_name_the_plain_files_served_from_the_finders(static_setup):
    assert staticfiles_storage.url("js/lib.js") == "/static/js/lib.js"
    status, headers, body = _get(StaticFilesASGI(_not_found), "/static/js/lib.js")
    assert status == 200 and body.decode() == MODULE


def test_an_edited_source_file_makes_the_collection_stale(static_setup):
    call_command("collectstatic", interactive=False, verbosity=0)
    assert not static_files_stale()
    later = time.time() + 5
    os.utime(static_setup / "js" / "lib.js", (later, later))
    assert static_files_stale()
