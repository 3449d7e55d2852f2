"""Errors a user can act on: each message names the problem and the fix."""


class PolyglmError(Exception):
    """Base for errors that the CLI and UI show as one clear message (no traceback)."""


class ProfileError(PolyglmError):
    """A profile name or profile file is wrong."""


class ModelMissingError(PolyglmError):
    """Weights a profile needs are not on this machine."""


class PrepareError(PolyglmError):
    """`polyglm models prepare` could not build a part (bad input file, disk problem)."""


class VerifyError(PolyglmError):
    """A prepared part loaded but failed its real-output check."""


class InputError(PolyglmError, ValueError):
    """User input (a message, a file, a manifest) is unusable; the message says how to fix it."""
