"""User-facing failures and the exit-code contract.

Every failure a person can cause (a bad config, a missing file, a run that does not
exist, a full disk) is raised as a `UserError` carrying what went wrong, where, and
what to do. The CLI prints it as a few plain lines (with `--json`: one object
`{"error", "where", "fix"}` on stdout) and exits with its code: never a traceback.

Exit codes (documented in README.md):
    0  success (lint/check: no errors found)
    1  a failure the user can fix, or errors found (bad input, missing file, disk full, ...)
    2  usage error: unknown option, missing argument, a value out of range on the command line
    3  busy: another process owns the run (a second trainer on the same run folder)
    70 internal error: a bug in ftwizard (details saved to a file; please report it)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A failure the user can fix: what went wrong, where, and what to do."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, code: int = EXIT_FAILED):
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix
        self.code = code

    def render(self) -> str:
        lines = [f"error: {self.what}"]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"error": self.what, "where": self.where, "fix": self.fix}


class UsageError(UserError):
    """A command line that cannot be run as given (exit 2)."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(what, where=where, fix=fix or "see `ftwizard COMMAND --help`", code=EXIT_USAGE)


# errno -> (what happened, what to do). The one table every OS failure is read through.
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "free some space on that disk (or choose a folder on another one) and run it again"),
    errno.EDQUOT: ("the disk quota is used up", "free some space in your quota, or choose a folder elsewhere"),
    errno.EROFS: ("the file system is read-only", "choose a writable folder (for runs: --runs-dir DIR)"),
    errno.EACCES: ("permission denied", "check the permissions of that path (ls -ld), or choose a folder you own"),
    errno.EPERM: ("operation not permitted", "check the permissions of that path, or choose a folder you own"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EISDIR: ("this is a folder where a file was expected", "pass a file, not a folder"),
    errno.ENOTDIR: ("a part of this path is a file where a folder is needed",
                    "check the path: one of its parent names is a file, not a folder"),
    errno.EEXIST: ("it already exists", "choose another name, or remove it first"),
    errno.ENAMETOOLONG: ("the name is too long", "use a shorter file or folder name"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or close other programs"),
    errno.ENOMEM: ("out of memory", "close other programs, or work on a smaller file"),
    errno.EIO: ("an input/output error from the disk", "check the disk (dmesg) and try again"),
    errno.ELOOP: ("too many symbolic links (a link loop?)", "check the path's links"),
    errno.ENXIO: ("no such device", "pass a regular file"),
}


def from_os_error(exc: OSError, action: str | None = None) -> UserError:
    """An OSError as a located UserError: what could not be done, to which path, and what to do.

    `action` says what was being done ("write the run folder"); without it the error's own
    file name is the place.
    """
    what, fix = _OS_ERRORS.get(exc.errno or -1, (exc.strerror or type(exc).__name__, "check the path and try again"))
    where = exc.filename if exc.filename is not None else None
    if where is not None:
        where = str(where)
        if exc.filename2 is not None:
            where += f" -> {exc.filename2}"
    head = f"could not {action}: {what}" if action else what
    return UserError(head, where=where or "(no path given by the system)", fix=fix)
