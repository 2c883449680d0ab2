"""inert: encode any work into a key against an inert blob, and decode it back bit-exactly."""

__version__ = "0.1.0"
