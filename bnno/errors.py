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


#: The exit code of a run that a signal stopped after it saved a checkpoint (SIGTERM,
#: SIGINT or SIGUSR1; see ``bnno.interrupts``): 75, ``EX_TEMPFAIL`` of BSD's
#: ``sysexits.h`` ("a temporary failure ... the user is invited to retry"). Schedulers
#: act on it: bnno's Slurm scripts requeue the job (``scontrol requeue``) when a task
#: exits with it, and a Kubernetes Job's ``podFailurePolicy`` can match it with
#: ``action: Ignore`` so that the pod is restarted without counting as a failure.
REQUEUE_EXIT_CODE = 75


class Interrupted(Exception):
    """A signal stopped training after the current step, and a checkpoint of that step
    was written; running the same command again resumes from it. Not a ``RunError``:
    nothing failed, and a sweep marks the run interrupted, not failed. ``bnno.cli``
    prints the message and exits with :data:`REQUEUE_EXIT_CODE`."""
