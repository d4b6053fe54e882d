"""Progress reporting: engines report, front ends draw.

Engines never print. They call a :class:`Reporter`; the default does nothing, the
CLI passes one that draws rich progress bars (fsspec's ``Callback`` and restic's
progress reporters are the models).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def start(self, phase: str, total: int | None = None, unit: str = "rows") -> None:
        """A phase begins; ``total`` is its size when known."""

    def advance(self, amount: int = 1) -> None:
        """Progress within the current phase."""

    def finish(self) -> None:
        """The current phase is done."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the work."""


class NullReporter:
    """Reports nothing; warnings go to the ``warnings`` module so they are not lost."""

    def start(self, phase: str, total: int | None = None, unit: str = "rows") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def warn(self, message: str) -> None:
        import warnings

        warnings.warn(message, stacklevel=3)


NULL = NullReporter()
