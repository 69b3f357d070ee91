"""The two kinds of failure bnno reports to users, without a traceback.

Library code raises these; ``bnno.cli`` turns ``UsageError`` into a click usage error
(exit 2) and ``RunError`` into a click error (exit 1). Each message is one sentence
that says what is wrong and, where there are choices, lists them with the closest.
"""


class UsageError(ValueError):
    """The user asked for something that does not exist or cannot be parsed."""


class RunError(RuntimeError):
    """The request was well formed but cannot be carried out here (no data, no
    network, a run that cannot be resumed); the message says what to do."""
