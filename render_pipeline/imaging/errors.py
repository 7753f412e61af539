"""The one exception type for input the engine refuses to render."""

from __future__ import annotations


class ImageRejected(ValueError):
    """Refused input: ``code`` is stable (stored, grouped, alerted on), ``reason`` is for people.

    Codes: ``empty``, ``too_large``, ``too_many_pixels``, ``unsupported_format``,
    ``corrupt``, ``truncated``.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    def __reduce__(self):  # keep code/reason when pickled across processes
        return (type(self), (self.code, self.reason))
