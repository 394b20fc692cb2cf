"""The model store's exception types (raised on whichever thread uses the store)."""

from __future__ import annotations


class ModelStoreError(Exception):
    """A failure with a message meant for the user (no traceback needed)."""


class VerificationError(ModelStoreError):
    """A file did not match what it must be; the offending copy has been deleted."""


class ModelVersionConflictError(VerificationError):
    """The files would leave a renderer and a generator of different model versions (or
    replace one version with another without being asked to); nothing was stored."""


class DiskFullError(ModelStoreError):
    """Not enough space; nothing at a final path was touched."""


class Cancelled(ModelStoreError):
    """The user cancelled; partial downloads are kept so the next attempt resumes."""
