"""First-start secrets for the embedded default.

The embedded default must run with no set-up, yet a secret key and the broker
credential key must never live in the repository. On first start they are
generated into a git-ignored file under ``var/``; real environment variables
still win (``read_env(..., overwrite=False)``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


def ensure_local_env(path: Path) -> Path:
    """Create ``path`` with fresh secrets unless it exists; return it."""
    if not path.exists():
        lines = [
            "# Generated on first start. Keep out of version control.",
            f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
            f"BROKER_ENCRYPTION_KEYS={Fernet.generate_key().decode()}",
        ]
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        try:
            # Two processes starting at once: the first link wins, both read it.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path
