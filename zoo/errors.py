"""The one exception type a user sees as a sentence instead of a traceback.

Anything raised as ``UserError`` is printed by ``train.py`` as ``error: <message>`` and the
process exits with status 2. The message must say what is wrong and what to do.
"""


class UserError(Exception):
    """A mistake in the user's input (config, data, checkpoint), explained in one sentence."""
