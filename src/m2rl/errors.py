"""The exceptions the CLI turns into one line and an exit status (see cli.main)."""

import signal


class UserError(Exception):
    """Bad input a user can fix: the message says what was wrong, where, and what to do (exit 2)."""


class StudyFailed(Exception):
    """Some stages of a study failed; the rest ran (exit 1). The message names each failed stage."""


class Interrupted(Exception):
    """Stopped by a signal (Ctrl-C: SIGINT, or SIGTERM); exit status 128 + the signal number."""

    def __init__(self, signum: int, stopped: list[str] | None = None, resume: str = "", no_resume: str = ""):
        self.signum = int(signum)
        self.stopped = list(stopped or [])
        self.resume = resume  # the command that continues the stopped work, if one can
        self.no_resume = no_resume  # else why nothing can: it starts again with the same command
        name = (
            signal.Signals(self.signum).name
            if self.signum in signal.Signals._value2member_map_
            else str(signum)
        )
        super().__init__(f"interrupted by {name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
