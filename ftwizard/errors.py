"""User-facing failures.

Every failure a person can cause (a bad config, a missing file, a run that does not
exist) is raised as a `UserError` carrying what went wrong, where, and what to do.
The CLI prints it as a few plain lines and exits with its code: never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix: what went wrong, where, and what to do."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, code: int = 1):
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
