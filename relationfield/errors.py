"""Errors meant for the person at the keyboard.

Code raises :class:`UserError` for bad input (missing files, wrong formats, stale labels);
the ``relationfield`` CLI prints its message and exits with a non-zero status instead of a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, explained in the message."""


class StaleLabelsError(UserError):
    """The label store does not match the capture it is used with."""
