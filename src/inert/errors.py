"""Errors: every failure a user can cause becomes one of these, with a message and a hint."""


class InertError(Exception):
    """A failure to report as `inert: error: <message>` (+ `inert: hint: <hint>`), exit 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class KeyFormatError(InertError):
    """The bytes are not a well-formed key of a version this inert can read."""


class ChecksumError(InertError):
    """Decoding finished but the work's checksum does not match the key: wrong blob or damage."""
