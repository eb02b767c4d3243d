"""The errors a user can cause, one family: the CLI prints their message (one or two lines naming the file or
field and what to do) and exits, without a traceback unless `--debug` or `VLPEFT_DEBUG=1`.

Everything else (a bug, a CUDA fault) keeps its traceback: that is for us, not for the user."""
from __future__ import annotations


class VlpeftError(Exception):
    """A user-facing error; `exit_code` is what the CLI exits with (2: a usage error, 1: anything else)."""
    exit_code = 1


class ConfigError(VlpeftError, ValueError):
    """A run configuration refused before any work; the message says what to change."""
    exit_code = 2


class DataError(VlpeftError, ValueError):
    """Bad or missing input data; the message names the file and what to do."""


class ModelError(VlpeftError, ValueError):
    """A model path that cannot be loaded; the message names the file and what to do."""


class MethodError(VlpeftError, ValueError):
    """A method configuration that cannot be applied; the message names the valid choices."""
    exit_code = 2


class MetricError(VlpeftError, RuntimeError):
    """A metric that cannot be computed; the message says why and what to do."""


class AssetError(VlpeftError):
    """Preparing a world or a pre-trained model would touch files the project does not own."""


class RunFolderError(VlpeftError):
    """A run folder that belongs to another configuration, or that another process is training."""


class Interrupted(VlpeftError):
    """Ctrl-C during a run; the message says how to resume."""
    exit_code = 130
