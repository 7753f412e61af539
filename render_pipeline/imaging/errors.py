"""The one exception type for input the engine refuses to render, and its fixed sentences.

A refusal's ``reason`` is stored and grouped on (``GROUP BY error_message``), so it is one
sentence per cause: it names the format and the configured limit, never this file's size,
offsets, object reprs or a library's message.  What is particular to the file goes to
``details``.
"""

from __future__ import annotations

from collections.abc import Mapping

from PIL import Image


class ImageRejected(ValueError):
    """Refused input: ``code`` is stable (stored, grouped, alerted on), ``reason`` is for people
    and the same for every file refused for the same cause, ``details`` are this file's facts
    (declared dimensions, byte size, decoder status) for metadata and logs.

    Codes: ``empty``, ``too_large``, ``too_many_pixels``, ``unsupported_format``,
    ``corrupt``, ``truncated``.
    """

    def __init__(self, code: str, reason: str, details: Mapping[str, object] | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.details = dict(details or {})

    def __reduce__(self):  # keep code/reason/details when pickled across processes
        return (type(self), (self.code, self.reason, self.details))


def empty() -> ImageRejected:
    return ImageRejected("empty", "the file is empty")


def too_large(byte_size: int, max_bytes: int) -> ImageRejected:
    return ImageRejected(
        "too_large", f"the file is over the {_bytes(max_bytes)} limit", {"byte_size": byte_size}
    )


def too_many_pixels(max_pixels: int, size: tuple[int, int] | None = None) -> ImageRejected:
    """``size`` is the declared one when known; without it (Pillow's own bomb check fired first,
    which happens only above ``2 * Image.MAX_IMAGE_PIXELS``) the reason names whichever limit
    that exceeds for certain."""
    pillow_limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    if size is None and pillow_limit is not None and pillow_limit <= max_pixels:
        reason = f"the header declares more pixels than Pillow's {pillow_limit / 1e6:g} MP bomb limit"
        return ImageRejected("too_many_pixels", reason)
    details = {"width": size[0], "height": size[1]} if size else {}
    return ImageRejected("too_many_pixels", _pixels_over(max_pixels), details)


def unsupported(name: str) -> ImageRejected:
    """``name`` comes from a fixed table of format names, never from the file."""
    return ImageRejected("unsupported_format", f"unsupported format: {name}")


def not_an_image(what: str) -> ImageRejected:
    """``what`` is one of the fixed sentences of ``formats.refusal_for``."""
    return ImageRejected("unsupported_format", what)


def header_unreadable(fmt: str) -> ImageRejected:
    return ImageRejected("corrupt", f"the {fmt} header is unreadable")


def header_ends_early(fmt: str) -> ImageRejected:
    return ImageRejected("truncated", f"the {fmt} header ends early")


def no_pixels(fmt: str, size: tuple[int, int]) -> ImageRejected:
    width, height = size
    return ImageRejected("corrupt", f"the {fmt} header declares an image without pixels",
                         {"width": width, "height": height})


def data_ends_early(fmt: str, decoder_status: str | None) -> ImageRejected:
    return ImageRejected("truncated", f"the {fmt} data ends early", _status(decoder_status))


def data_damaged(fmt: str, decoder_status: str | None) -> ImageRejected:
    return ImageRejected("corrupt", f"the {fmt} data is damaged", _status(decoder_status))


def _status(decoder_status: str | None) -> dict[str, object]:
    return {"decoder_status": decoder_status} if decoder_status else {}


def _pixels_over(max_pixels: int) -> str:
    return f"the header declares more pixels than the {max_pixels / 1e6:g} MP limit"


def _bytes(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count} bytes"
