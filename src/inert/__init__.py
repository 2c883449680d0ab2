"""inert: encode any work into a key against an inert blob, and decode it back bit-exactly.

The library is inert.api (see its examples); its common functions are here, imported on
first use so that the command starts without numpy.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Report", "__version__", "decode", "decode_to", "encode", "encode_to", "explain"]
__all__ += ["open_blob"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'inert' has no attribute {name!r}")
