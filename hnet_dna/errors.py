"""Exceptions that mean "the user's input is wrong", as opposed to a bug in hnet_dna.

The CLI prints an :class:`InputError` as one line naming the file and record and exits with
status 2; any other exception is an internal error (status 1, traceback under ``-v``).
Format-specific errors (``SequenceFormatError``, ``BedFormatError``, ...) subclass it.
``InputError`` is a ``ValueError`` so callers that caught ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["InputError", "OutputError"]


class InputError(ValueError):
    """Bad user input (file, record, option); the message says which and where."""


class OutputError(InputError):
    """An output location that must not or cannot be written (refused before any work)."""
