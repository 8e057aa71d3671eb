"""Errors that the CLI turns into one line on stderr and an exit code (never a traceback)."""

__all__ = [
    "ConfigError",
    "PrerequisiteError",
    "ProxyConfigError",
    "RunnerCtlError",
    "StepError",
    "ToolMissingError",
    "ToolTimeoutError",
    "UsageError",
]


class RunnerCtlError(Exception):
    """An expected failure: its message is a complete, one-line explanation for the user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints str(self) as is.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(RunnerCtlError):
    """Bad flags or arguments."""

    exit_code = 2


class ConfigError(RunnerCtlError):
    """Group data or another configuration input is invalid."""

    exit_code = 2


class PrerequisiteError(RunnerCtlError):
    """The machine lacks something (root, a system tool) that the command needs."""

    exit_code = 2


class StepError(RunnerCtlError):
    """A step of a multi-step job (such as a rehearsal) failed."""

    exit_code = 1


class ToolMissingError(PrerequisiteError):
    """A system tool (git, pip, ssh ...) that a command runs is not installed."""


class ToolNotExecutableError(ToolMissingError):
    """The tool is there but may not be run (no execute permission)."""


class ToolTimeoutError(RunnerCtlError):
    """A system tool did not finish within its time limit; it was killed."""

    exit_code = 1


class ProxyConfigError(ConfigError):
    """httpx found a malformed URL in a proxy variable; the value is not shown (it may hold a password)."""

    def __init__(self) -> None:
        super().__init__(
            "a proxy variable (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) holds a malformed URL; fix or unset it"
        )
