"""Helpers shared by the management commands of every app (kept out of
``commands/`` so Django does not list it as a command)."""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError

from core.exceptions import DomainError


def command_error(exc: DomainError) -> CommandError:
    """A service's refusal as a CommandError (exit status 1) naming the fields."""
    detail = "; ".join(f"{field}: {' '.join(str(m) for m in messages)}" for field, messages in exc.fields.items())
    return CommandError(f"{exc.message} ({detail})" if detail else exc.message)


def note(command: BaseCommand, message: str) -> None:
    """Human guidance on stderr (unstyled), so stdout carries only the result."""
    command.stderr.write(message, style_func=str)


def read_secret(prompt: str, *, whole: bool = True, stream: TextIO | None = None) -> str:
    """A secret from a no-echo prompt when stdin is a terminal, else from stdin,
    so it need not sit in the shell history. ``whole`` reads the stream to its
    end (a value may span lines, e.g. a PEM key); otherwise one line."""
    stream = stream or sys.stdin
    if stream.isatty():
        return getpass.getpass(prompt)
    text = stream.read() if whole else stream.readline()
    return text.rstrip("\r\n")
