"""The bad-input corpus: generated cases, each one real `ftwizard` call in a subprocess.

A case builds its files in a fresh folder, runs the CLI there with a time bound, and the
runner checks the contract every failure must keep (README "Exit codes and --json"):

- no traceback and no "internal error" on stdout or stderr;
- the documented exit code;
- under --json, stdout is JSON; for a failure it is one object with error, where, fix;
- every file that existed before is byte-for-byte unchanged (unless the case names it);
- no temporary or partial file is left behind;
- the message names the place (a file, a row, a field, an option).

CORPUS_SRC=/path/to/checkout runs the corpus against another checkout of ftwizard (used
to count how many cases failed on the code before the reliability work).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

TRACEBACK = "Traceback (most recent call last)"
# Python's own words leaking into a message mean an exception was printed as-is.
LEAKS = ("NoneType", "internal error", "please report", "error: unexpected ", "<class '", "Errno ", "ValidationError",
         "JSONDecodeError", "RecursionError", "SafetensorError", "holds a int", "holds a str", "holds a float")

ROWS = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": str(2 * i)}]} for i in range(12)]


@dataclass
class Case:
    id: str
    cls: int                       # the class (1-13)
    argv: list[str]                # "{d}" is replaced by the case folder
    code: int | tuple[int, ...]    # documented exit code(s)
    place: str | None = None       # text the output must contain (where it went wrong)
    setup: Callable[[Path], None] | None = None
    json: str = "auto"             # "error": the error object; "ok": any JSON; "lines": JSON lines; "none"; "auto"
    may_change: tuple[str, ...] = ()   # files the command may legitimately rewrite
    timeout: float = 40.0
    max_rss_mb: float | None = None
    wrap: list[str] = field(default_factory=list)  # a prefix such as unshare/setpriv
    shell_setup: str | None = None  # with wrap: shell run before the command (mounts)
    extra: Callable[[Path, "Result"], None] | None = None  # more checks

    def __post_init__(self):
        if self.json == "auto":
            codes = self.code if isinstance(self.code, tuple) else (self.code,)
            self.json = ("error" if 0 not in codes else "ok") if "--json" in self.argv else "none"


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float
    max_rss_mb: float


def env() -> dict[str, str]:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             COLUMNS="120", NO_COLOR="1", PYTHONWARNINGS="ignore")
    src = os.environ.get("CORPUS_SRC")
    if src:
        e["PYTHONPATH"] = src + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def snapshot(d: Path) -> dict[str, str]:
    """sha256 of every regular file under d (FIFOs and sockets skipped: reading them would block)."""
    import stat

    out = {}
    for p in sorted(d.rglob("*")):
        try:
            st = p.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            try:
                out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[str(p.relative_to(d))] = "(unreadable)"
    return out


def run_cli(case: Case, d: Path) -> Result:
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    cmd = [sys.executable, "-m", "ftwizard", *argv]
    rss_file = d.parent / (d.name + ".rss")
    if case.max_rss_mb is not None:  # this child's own peak, not the test process's children's
        cmd = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd]
    if case.wrap:
        import shlex

        inner = " ".join(shlex.quote(c) for c in cmd)
        script = (case.shell_setup.replace("{d}", str(d)) + " && " if case.shell_setup else "") + inner
        cmd = [*case.wrap, "sh", "-c", script]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=d, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=case.timeout)
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{case.id}: hang: no exit within {case.timeout:.0f} s\nstdout: {out[-2000:]!r}\n"
                             f"stderr: {err[-2000:]!r}") from None
    rss = 0.0
    if case.max_rss_mb is not None:
        try:
            rss = float(rss_file.read_text().split()[-1]) / 1024
        except (OSError, ValueError, IndexError):
            rss = float("inf")
    return Result(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                  time.monotonic() - t0, rss)


def check(case: Case, d: Path) -> Result:
    """Set up, run and check one case; raises AssertionError with everything needed to see why."""
    d.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(d)
    before = snapshot(d)
    r = run_cli(case, d)
    both = r.out + "\n" + r.err
    ctx = f"{case.id} (class {case.cls}): {' '.join(case.argv)}\nrc={r.rc}\nstdout:\n{r.out[-3000:]}\nstderr:\n{r.err[-3000:]}"
    assert TRACEBACK not in both, "traceback leaked\n" + ctx
    for leak in LEAKS:
        assert leak not in both, f"{leak!r} in the output (an exception shown as-is)\n" + ctx
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    assert r.rc in codes, f"exit code {r.rc}, documented {codes}\n" + ctx
    if case.json in ("error", "ok"):
        try:
            obj = json.loads(r.out)
        except ValueError:
            raise AssertionError("stdout is not one JSON document under --json\n" + ctx) from None
        if r.rc != 0 and case.json == "error":
            assert isinstance(obj, dict) and {"error", "where", "fix"} <= set(obj), "no {error, where, fix} object\n" + ctx
            assert obj["error"], "empty error\n" + ctx
    elif case.json == "lines":
        for line in r.out.splitlines():
            if line.strip():
                try:
                    json.loads(line)
                except ValueError:
                    raise AssertionError(f"a stdout line is not JSON: {line[:200]!r}\n" + ctx) from None
    if case.place is not None:
        place = case.place.replace("{d}", str(d))
        assert place in both, f"the message does not name the place {place!r}\n" + ctx
    after = snapshot(d)
    for name, digest in before.items():
        if name in case.may_change:
            continue
        assert after.get(name) == digest, f"input {name} was changed or removed\n" + ctx
    leftovers = [n for n in after if n not in before and (n.endswith(".tmp") or "/.tmp" in n or Path(n).name.startswith(".")
                                                          and n.endswith(".tmp"))]
    assert not leftovers, f"partial files left: {leftovers}\n" + ctx
    if case.max_rss_mb is not None:
        assert r.max_rss_mb < case.max_rss_mb, f"peak memory {r.max_rss_mb:.0f} MB > {case.max_rss_mb} MB\n" + ctx
    if case.extra is not None:
        case.extra(d, r)
    return r


# ---------------------------------------------------------------------------- builders
def write_rows(p: Path, rows=ROWS) -> Path:
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def good_config(d: Path, name: str = "config.yaml", **sections) -> Path:
    """A valid config (embedded model, a tiny train file beside it), with sections overridden."""
    write_rows(d / "train.jsonl")
    cfg = {"runs_dir": "runs", "model": {"base": "embedded", "method": "lora"},
           "data": {"train": "train.jsonl", "max_length": 64},
           "training": {"max_steps": 2, "batch_size": 2, "gradient_accumulation": 1, "save_every": 0, "eval_every": 0}}
    for k, v in sections.items():
        cfg[k] = v if not isinstance(v, dict) else {**cfg.get(k, {}), **v}
    p = d / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def fifo(p: Path) -> None:
    os.mkfifo(p)


def tool_available(*argv: str) -> str | None:
    """None if the command runs here, else why not (for skip reasons)."""
    try:
        r = subprocess.run(list(argv), capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{argv[0]} unavailable: {e}"
    return None if r.returncode == 0 else f"{' '.join(argv)} failed here: {r.stderr.decode(errors='replace')[:200]}"
