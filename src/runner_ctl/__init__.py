"""runner-ctl: fast, safe CI for a Bazel-heavy repository.

The library is typed and usable on its own; ``runner_ctl.cli`` is a thin layer over it.
"""

from runner_ctl.errors import ConfigError, PrerequisiteError, RunnerCtlError, UsageError

__all__ = ["ConfigError", "PrerequisiteError", "RunnerCtlError", "UsageError", "__version__"]

__version__ = "0.1.0"
