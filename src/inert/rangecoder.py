"""Integer frequency tables + symbols <-> bytes: inert's own range coder (codec 3).

docs/FORMAT.md ("The range coder") specifies it; this is its reference implementation.
The coder codes exactly the integer table it is given — rows summing to TOTAL, every entry
at least 1 — with a 64-bit range renormalised a byte at a time (so the range stays above
2^56 and a step of TOTAL = 2^31 costs < 2^-25 of a symbol's interval), codes every symbol of
a key in one stream, and flushes once, with at most one byte. Every byte string decodes to
some symbols: what `imagine` and `hide` need, and why a damaged key is caught by its
checksum, not by the coder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOTAL_BITS = 31
TOTAL = 1 << TOTAL_BITS  # every table the coder codes with sums to this
_TOP = 1 << 64  # the range starts just below 2^64 ...
_BOTTOM = 1 << 56  # ... and is shifted left a byte whenever it falls below 2^56
_LOW_BITS = _BOTTOM - 1


class Encoder:
    """Codes symbols given as intervals (start, size) of their tables; `finish` -> bytes."""

    def __init__(self) -> None:
        self._low = 0  # the bottom of the interval: the 64 bits after the bytes written
        self._range = _TOP - 1
        self._out = bytearray()

    def encode(self, start: int, size: int, last: bool) -> None:
        """Code one symbol: start = Σ of the entries before it, size its entry, last
        whether it is the table's last symbol (which also takes the range's remainder)."""
        r = self._range // TOTAL
        self._low += start * r
        self._range = self._range - start * r if last else size * r
        if self._low >= _TOP:
            self._carry()
        while self._range < _BOTTOM:
            self._out.append(self._low >> 56)
            self._low = (self._low & _LOW_BITS) << 8
            self._range <<= 8

    def encode_all(
        self, starts: Sequence[int], sizes: Sequence[int], lasts: Sequence[bool]
    ) -> None:
        """encode() for each symbol in order (the loop, with its state in locals)."""
        low, rng, out = self._low, self._range, self._out
        for start, size, last in zip(starts, sizes, lasts, strict=True):
            r = rng // TOTAL
            low += start * r
            rng = rng - start * r if last else size * r
            if low >= _TOP:
                self._low, self._range = low, rng
                self._carry()
                low = self._low
            while rng < _BOTTOM:
                out.append(low >> 56)
                low = (low & _LOW_BITS) << 8
                rng <<= 8
        self._low, self._range = low, rng

    def _carry(self) -> None:
        """low passed 2^64: add the carry into the bytes written (it never passes the
        first: the interval stays inside the one it started as)."""
        self._low -= _TOP
        i = len(self._out) - 1
        while self._out[i] == 0xFF:
            self._out[i] = 0
            i -= 1
        self._out[i] += 1

    def finish(self) -> bytes:
        """The code: the bytes written, then the fewest bytes (0 or 1) that name a point of
        the final interval, without trailing zero bytes (a decoder reads zeros past the end)."""
        for k in range(9):
            unit = 1 << (64 - 8 * k)
            point = -(-self._low // unit) * unit  # the first multiple of unit >= low
            if point < self._low + self._range:
                break
        if point >= _TOP:
            self._low = point
            self._carry()
            point = 0
        self._out += (point >> (64 - 8 * k)).to_bytes(k, "big") if k else b""
        return bytes(self._out.rstrip(b"\0"))


class Decoder:
    """Reads symbols back: target() -> a point of the table, consume(start, size, last)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 8
        self._code = int.from_bytes(data[:8].ljust(8, b"\0"), "big")  # point - low, < range
        self._range = _TOP - 1
        self._r = 0

    def target(self) -> int:
        """The point of the next symbol's table the code falls on: the symbol is the one
        whose interval [start, start + size) holds it."""
        self._r = self._range // TOTAL
        return min(self._code // self._r, TOTAL - 1)

    def consume(self, start: int, size: int, last: bool) -> None:
        """Move past the symbol target() fell on, given its interval."""
        self._code -= start * self._r
        self._range = self._range - start * self._r if last else size * self._r
        while self._range < _BOTTOM:
            byte = self._data[self._pos] if self._pos < len(self._data) else 0
            self._pos += 1
            self._code = (self._code << 8) | byte
            self._range <<= 8


def intervals(freq: np.ndarray, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """freq (R, V) int64 tables and symbols (R,) -> each symbol's (start, size), (R,) int64:
    start the sum of the entries before it."""
    rows = np.arange(len(symbols))
    size = freq[rows, symbols]
    return np.cumsum(freq, axis=1)[rows, symbols] - size, size


def find(cumulative: np.ndarray, target: int) -> tuple[int, int, int]:
    """A table's inclusive running sum (V,) and a point -> (symbol, start, size)."""
    symbol = int(np.searchsorted(cumulative, target, side="right"))
    start = int(cumulative[symbol - 1]) if symbol else 0
    return symbol, start, int(cumulative[symbol]) - start


class Interval:
    """The exact interval a code of the symbols coded so far must lie in, for reading a code
    back from its symbols (what `hide` wrote as text): the encoder's arithmetic with `low`
    kept whole (no window, no carry), and which of its leading bytes are already settled."""

    def __init__(self) -> None:
        self.low, self.range, self.shifts = 0, _TOP - 1, 0  # the code at 2^-(64 + 8 shifts)

    def push(self, start: int, size: int, last: bool) -> None:
        r = self.range // TOTAL
        self.low += start * r
        self.range = self.range - start * r if last else size * r
        while self.range < _BOTTOM:
            self.low, self.range, self.shifts = self.low << 8, self.range << 8, self.shifts + 1

    def settled(self) -> int:
        """How many leading bytes every code in the interval shares."""
        width = 8 * (8 + self.shifts)
        return (width - (self.low ^ (self.low + self.range - 1)).bit_length()) // 8

    def prefix(self, n: int) -> bytes:
        """The first n settled bytes of the code."""
        return (self.low >> (8 * (8 + self.shifts - n))).to_bytes(n, "big")
