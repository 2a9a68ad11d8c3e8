"""What the demo's modules share: the user error and progress notes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


class DemoError(Exception):
    """A problem with what the user asked for (a missing path, no questions, ...): one line, exit code 2."""


def note(message: str) -> None:
    """Progress and warnings go to stderr, so stdout holds only the answers."""
    print(f"gear demo: {message}", file=sys.stderr)
