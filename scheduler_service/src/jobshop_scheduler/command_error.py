"""The error every ``schedctl`` subcommand raises for a message and an exit code.

Here, not in `cli`, because `cli` sits above every command module (it imports them by name).
"""


class CliError(Exception):
    """A message for stderr and an exit code (2: bad input or a missing prerequisite)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
