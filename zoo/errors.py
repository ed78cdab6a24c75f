"""The one exception type a user sees as a sentence instead of a traceback.

Anything raised as ``UserError`` is printed by ``train.py`` as ``error: <message>`` and the
process exits with status 2. The message must say what is wrong and what to do.
"""


class UserError(Exception):
    """A mistake in the user's input (config, data, checkpoint), explained in one sentence."""


class RunStopped(Exception):
    """Training ended early on purpose (a signal); ``exit_code`` is what the process returns
    (128 + the signal's number: 130 for Ctrl-C). Here, not beside the signal handling in
    zoo/run/reliability.py (which imports Lightning), so that a Ctrl-C while Lightning is still being
    imported is caught too."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
