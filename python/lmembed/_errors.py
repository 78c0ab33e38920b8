"""The exceptions lmembed raises: the C++ library's error types, one Python class each."""
from __future__ import annotations


class Error(RuntimeError):
    """Base of every error lmembed raises (lmembed::error)."""


class FormatError(Error, ValueError):
    """A file's bytes are not what its format allows (GGUF, safetensors, npy, JSON ...).
    The message names the file and byte offset; so do .file and .offset (None where the
    library had none)."""

    file: str | None = None
    offset: int | None = None


class ShapeError(Error, ValueError):
    """Arrays whose shapes do not fit together (the message names both shapes)."""


class ConfigError(Error, ValueError):
    """A configuration or argument that is missing or invalid (bad design name, head that
    does not fit the model, ...)."""


class IoError(Error, OSError):
    """The operating system refused a file operation (the message names the file)."""


class InputError(Error, ValueError):
    """Input values out of their domain (token id out of range, text too long, no EOS ...)."""
