"""Corpus, run folders and the machine: corrupt runs, waits that must end, OS faults, dead workers.

Every corruption of a run folder x every command that reads runs (runs, monitor, stop,
resume, export, eval): no hang, no traceback, the damaged run named with what is wrong,
and the other runs still listed. Disk full and read-only file systems run for real in a
private mount namespace (`unshare -rm` + a tiny tmpfs); permission denied runs with the
DAC-override capability dropped (root otherwise reads everything). Real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from corpus import ROWS, Case, check, fifo, good_config, tool_available, write_rows

# ---------------------------------------------------------------------------- fabricated run folders
OLD = time.time() - 3600  # an hour ago: past any "still starting" grace period


def make_run(runs: Path, name: str, status=None, events=None, config: bool = True) -> Path:
    """A run folder as the trainer leaves it; `status`/`events` may be bytes, a dict, or a callable(path)."""
    r = runs / name
    r.mkdir(parents=True)
    if config:
        write_rows(runs.parent / "train.jsonl")
        write_rows(runs.parent / "eval.jsonl", ROWS[:4])
        (r / "config.yaml").write_text(yaml.safe_dump({"name": name, "runs_dir": str(runs), "data": {
            "train": str(runs.parent / "train.jsonl"), "eval": str(runs.parent / "eval.jsonl")}}))
    if status is None:
        status = {"state": "completed", "pid": None, "step": 4, "max_steps": 4, "started_at": OLD, "updated_at": OLD}
    for fname, spec in (("status.json", status), ("events.jsonl", events)):
        if spec is None:
            continue
        p = r / fname
        if callable(spec):
            spec(p)
        elif isinstance(spec, bytes):
            p.write_bytes(spec)
        else:
            p.write_bytes(json.dumps(spec).encode())
    for p in [r, *r.iterdir()]:
        os.utime(p, (OLD, OLD), follow_symlinks=False)  # FIFOs too: utime does not open them
    return r


GOOD_EVENTS = b"".join(json.dumps({"kind": "train", "step": s, "loss": 2.0 / s, "time": OLD}).encode() + b"\n"
                       for s in range(1, 5))
DONE = {"state": "completed", "step": 4, "max_steps": 4, "started_at": OLD, "updated_at": OLD}

# name: (status spec, events spec, config?, what the runs listing / errors must say)
CORRUPTIONS = {
    "status-list": (b"[1, 2]", GOOD_EVENTS, True, "list"),
    "status-folder": (lambda p: p.mkdir(), GOOD_EVENTS, True, "folder"),
    "status-empty": (b"", GOOD_EVENTS, True, "empty"),
    "status-truncated": (b'{"state": "runn', GOOD_EVENTS, True, "not valid JSON"),
    "status-null-state": ({"state": None}, GOOD_EVENTS, True, "no state"),
    "status-unknown-state": ({"state": "exploded"}, GOOD_EVENTS, True, "exploded"),
    "status-state-number": ({"state": 7}, GOOD_EVENTS, True, "7"),
    "status-missing": (lambda p: None, GOOD_EVENTS, True, "missing"),
    "status-binary": (os.urandom(200), GOOD_EVENTS, True, "status.json"),
    "status-huge": (b'{"state": "completed", "pad": "' + b"x" * (2 << 20) + b'"}', GOOD_EVENTS, True, "bytes"),
    "status-fifo": (fifo, GOOD_EVENTS, True, "regular file"),
    "status-step-string": (dict(DONE, step="abc", max_steps=[1]), GOOD_EVENTS, True, "step"),
    "status-running-dead-pid": (dict(DONE, state="running", pid=999_999_9), GOOD_EVENTS, True, "gone"),
    "status-running-pid-string": (dict(DONE, state="running", pid="abc"), GOOD_EVENTS, True, "pid"),
    "events-folder": (DONE, lambda p: p.mkdir(), True, "events.jsonl"),
    "events-fifo": (DONE, fifo, True, "events.jsonl"),
    "events-loss-string": (DONE, b'{"kind": "train", "step": 1, "loss": "high"}\n{"kind": "eval", "step": "two", '
                           b'"eval_loss": {"a": 1}}\n', True, None),
    "events-garbage": (DONE, os.urandom(5000) + b"\n", True, None),
    "events-not-objects": (DONE, b"[1]\n2\n\"x\"\nnull\n", True, None),
    "config-garbage": (DONE, GOOD_EVENTS, lambda r: (r / "config.yaml").write_bytes(b"\x00\xff: [\n"), None),
}
# The corruptions after which the run is "corrupt" (a final state): followers end with exit 1.
CORRUPT = {k for k in CORRUPTIONS if k.startswith("status-") and k not in ("status-step-string",
                                                                            "status-running-dead-pid",
                                                                            "status-running-pid-string")}


def _setup_runs(kind: str):
    status, events, config, _ = CORRUPTIONS[kind]

    def setup(d: Path):
        runs = d / "runs"
        make_run(runs, "good", DONE, GOOD_EVENTS)
        r = make_run(runs, "bad", status, events, config=config is True)
        if callable(config):
            (r / "config.yaml").write_text("name: bad\n")
            config(r)
    return setup


def _lists_both(d: Path, r) -> None:
    data = json.loads(r.out)
    names = {x["name"]: x for x in data}
    assert "good" in names and "bad" in names, data
    assert names["good"]["state"] == "completed", names["good"]


def run_cases() -> list[Case]:
    cases = []
    for kind, (_, _, _, says) in CORRUPTIONS.items():
        setup = _setup_runs(kind)
        corrupt = kind in CORRUPT
        bad_state = corrupt or kind in ("status-running-dead-pid", "status-running-pid-string")
        cases += [
            Case(f"run-{kind}-runs-json", 7, ["runs", "--runs-dir", "runs", "--json"], 0, says if corrupt else "bad",
                 setup=setup, json="ok", extra=_lists_both, timeout=20),
            Case(f"run-{kind}-runs-table", 7, ["runs", "--runs-dir", "runs"], 0, "good", setup=setup, timeout=20),
            Case(f"run-{kind}-monitor-plain", 2, ["monitor", "bad", "--runs-dir", "runs", "--plain"],
                 1 if bad_state else (0, 1), says if corrupt else None, setup=setup, timeout=25),
            Case(f"run-{kind}-monitor-json", 2, ["monitor", "bad", "--runs-dir", "runs", "--json"],
                 1 if bad_state else (0, 1), None, setup=setup, json="lines", timeout=25),
            Case(f"run-{kind}-stop", 7, ["stop", "bad", "--runs-dir", "runs", "--json"], 1, "bad", setup=setup,
                 timeout=20),
            Case(f"run-{kind}-resume", 7, ["resume", "bad", "--runs-dir", "runs", "--json"], 1, "bad", setup=setup,
                 timeout=30),
            Case(f"run-{kind}-export", 7, ["export", "bad", "--runs-dir", "runs", "--json"], 1, "bad", setup=setup,
                 timeout=30),
        ]
        if corrupt:  # an intact run without results would be evaluated for real (the base model): not here
            cases.append(Case(f"run-{kind}-eval", 7, ["eval", "bad", "--runs-dir", "runs", "--json"], 1, "bad",
                              setup=setup, timeout=30))
    # a runs folder that is itself damaged
    cases += [
        Case("runs-dir-holds-files-and-links", 7, ["runs", "--runs-dir", "runs", "--json"], 0, None,
             setup=lambda d: (make_run(d / "runs", "good", DONE, GOOD_EVENTS), (d / "runs" / "note.txt").write_text("x"),
                              os.symlink("/nonexistent", d / "runs" / "dangling"),
                              os.symlink(d / "runs", d / "runs" / "loop")), extra=lambda d, r: _only_good(r)),
        Case("run-status-appears-late", 2, ["monitor", "late", "--runs-dir", "runs", "--plain"], 1, "late",
             setup=lambda d: _fresh_run_without_status(d), timeout=40),
    ]
    return cases


def _only_good(r) -> None:
    names = [x["name"] for x in json.loads(r.out)]
    assert "good" in names, names


def _fresh_run_without_status(d: Path) -> None:
    """A run folder just made (config, no status yet, no trainer): followed for the grace period, then corrupt."""
    make_run(d / "runs", "late", status=lambda p: None)
    now = time.time()
    for p in (d / "runs" / "late", d / "runs" / "late" / "config.yaml"):
        os.utime(p, (now, now))


# ---------------------------------------------------------------------------- class 4: the machine says no
def _unshare_reason() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    return tool_available("unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                          "mount -t tmpfs -o size=64k tmpfs /tmp")


def _setpriv_reason() -> str | None:
    if shutil.which("setpriv") is None:
        return "setpriv is not installed"
    if os.geteuid() != 0:
        return "needs root: as another user a chmod 000 folder already denies, but this test drops root's override"
    return tool_available("setpriv", "--bounding-set=-dac_override,-dac_read_search", "true")


UNSHARE = ["unshare", "-rm"]
TINY = "mkdir -p {d}/full && mount -t tmpfs -o size=64k tmpfs {d}/full"
RO = "mkdir -p {d}/ro && mount -t tmpfs -o size=1m,ro tmpfs {d}/ro"
NOPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _big_rows(d: Path) -> None:
    write_rows(d / "d.jsonl", [{"messages": [{"role": "user", "content": f"question {i} " + "x" * 400},
                                             {"role": "assistant", "content": f"answer {i} " + "y" * 400}]}
                               for i in range(600)])


def _locked(d: Path, what: str) -> None:
    (d / what).mkdir()
    os.chmod(d / what, 0o500)


def os_cases() -> list[tuple[Case, str | None]]:
    """(case, reason to skip or None)."""
    un, sp = _unshare_reason(), _setpriv_reason()
    c = []
    for cmd, argv, place in [
        ("fix", ["data", "fix", "d.jsonl", "-o", "{d}/full/out.jsonl", "--json"], "full/out.jsonl"),
        ("split", ["data", "split", "d.jsonl", "-o", "{d}/full", "--json"], "full"),
        ("init", ["init", "-o", "{d}/full/" + "c" * 50 + ".yaml", "--json", "--train", "d.jsonl"], None),
        ("check-fix", ["check", "config.yaml", "--fix", "-o", "{d}/full/fixed.yaml", "--json"], None),
        ("train", ["train", "config.yaml", "--runs-dir", "{d}/full/runs", "--json"], "full"),
    ]:
        def setup(d, cmd=cmd):
            _big_rows(d)
            good_config(d)
            if cmd == "init" or cmd == "check-fix":  # fill the disk first, so a small file cannot fit
                pass
        fill = TINY + " && head -c 65536 /dev/zero > {d}/full/filler 2>/dev/null; true" if cmd in ("init", "check-fix", "train") \
            else TINY
        c.append((Case(f"disk-full-{cmd}", 4, argv, 1, place or "full", setup=setup, wrap=UNSHARE, shell_setup=fill,
                       timeout=90, extra=lambda d, r: _says(r, "disk is full")), un))
    for cmd, argv in [
        ("fix", ["data", "fix", "d.jsonl", "-o", "{d}/ro/out.jsonl", "--json"]),
        ("split", ["data", "split", "d.jsonl", "-o", "{d}/ro", "--json"]),
        ("init", ["init", "-o", "{d}/ro/c.yaml", "--json"]),
        ("check-fix", ["check", "config.yaml", "--fix", "-o", "{d}/ro/fixed.yaml", "--json"]),
        ("train", ["train", "config.yaml", "--runs-dir", "{d}/ro/runs", "--json"]),
    ]:
        def setup(d):
            _big_rows(d)
            good_config(d)
            make_run(d / "runs", "good", DONE, GOOD_EVENTS)
        c.append((Case(f"read-only-{cmd}", 4, argv, 1, "ro", setup=setup, wrap=UNSHARE, shell_setup=RO, timeout=90,
                       extra=lambda d, r: _says(r, "read-only")), un))
    for cmd, argv, place in [
        ("fix", ["data", "fix", "d.jsonl", "-o", "locked/out.jsonl", "--json"], "locked"),
        ("split", ["data", "split", "d.jsonl", "-o", "locked", "--json"], "locked"),
        ("init", ["init", "-o", "locked/c.yaml", "--json"], "locked"),
        ("train-runs-dir", ["train", "config.yaml", "--runs-dir", "locked", "--json"], "locked"),
        ("runs", ["runs", "--runs-dir", "locked", "--json"], "locked"),
        ("lint-unreadable", ["lint", "locked/d.jsonl", "--no-tokens", "--json"], "locked"),
    ]:
        def setup(d, cmd=cmd):
            _big_rows(d)
            good_config(d)
            if cmd == "lint-unreadable":
                (d / "locked").mkdir()
                write_rows(d / "locked" / "d.jsonl")
                os.chmod(d / "locked" / "d.jsonl", 0)
            elif cmd == "runs":
                make_run(d / "locked", "good", DONE, GOOD_EVENTS)
                os.chmod(d / "locked", 0)
            else:
                _locked(d, "locked")
        c.append((Case(f"permission-{cmd}", 4, argv, 1, place, setup=setup, wrap=NOPRIV, timeout=90,
                       extra=lambda d, r: _says(r, "permission denied")), sp))
    # a file where a folder is needed: no special machine needed
    for cmd, argv in [
        ("fix", ["data", "fix", "d.jsonl", "-o", "afile/out.jsonl", "--json"]),
        ("split", ["data", "split", "d.jsonl", "-o", "afile", "--json"]),
        ("init", ["init", "-o", "afile/c.yaml", "--json"]),
        ("check-fix", ["check", "config.yaml", "--fix", "-o", "afile/fixed.yaml", "--json"]),
        ("train", ["train", "config.yaml", "--runs-dir", "afile/runs", "--json"]),
    ]:
        def setup(d):
            _big_rows(d)
            good_config(d)
            make_run(d / "runs", "good", DONE, GOOD_EVENTS)
            (d / "afile").write_text("I am a file\n")
        c.append((Case(f"file-not-folder-{cmd}", 4, argv, 1, "afile", setup=setup, timeout=90), None))
    return c


def _says(r, text: str) -> None:
    assert text in (r.out + r.err).lower(), f"{text!r} not said:\n{r.out[-1500:]}\n{r.err[-1500:]}"


# ---------------------------------------------------------------------------- class 8 and 1: damaged model files
def _ckpt(r: Path, step: int, weights: bytes, state: bytes = b'{"global_step": 1}') -> None:
    c = r / "checkpoints" / f"checkpoint-{step}"
    c.mkdir(parents=True)
    (c / "trainer_state.json").write_bytes(state)
    (c / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    (c / "adapter_model.safetensors").write_bytes(weights)


GOOD_ST = (lambda h: len(h).to_bytes(8, "little") + h)(b'{"__metadata__": {"format": "pt"}}')
DAMAGED = {
    "header-too-large": b"\xff" * 8 + b"garbage",
    "truncated": GOOD_ST[:5],
    "text": b"this is not a tensor file at all, just text that someone saved here\n",
    "header-not-json": (20).to_bytes(8, "little") + b"x" * 40,
}


def damaged_cases() -> list[Case]:
    cases = []
    for kind, blob in DAMAGED.items():
        for older in (True, False):
            def setup(d: Path, blob=blob, older=older):
                r = make_run(d / "runs", "bad", dict(DONE, state="stopped"), GOOD_EVENTS)
                if older:
                    _ckpt(r, 2, GOOD_ST)
                _ckpt(r, 4, blob)
            cases.append(Case(f"resume-damaged-{kind}{'-with-older' if older else ''}", 8,
                              ["resume", "bad", "--runs-dir", "runs", "--json"], 1,
                              "checkpoint-2" if older else "adapter_model.safetensors", setup=setup, timeout=30))
    cases.append(Case("resume-trainer-state-garbage", 8, ["resume", "bad", "--runs-dir", "runs", "--json"], 1,
                      "trainer_state.json", setup=lambda d: _ckpt(make_run(d / "runs", "bad", dict(DONE, state="failed"),
                                                                           GOOD_EVENTS), 3, GOOD_ST, b"{not json"),
                      timeout=30))
    return cases


def _not_running(run: Path) -> None:
    """No manifest or status of an export or eval may stay 'running' after its worker has ended."""
    for p in list(run.rglob("manifest.json")) + list((run / "eval").glob("status.json")):
        st = json.loads(p.read_text()).get("state")
        assert st not in ("running", "starting"), f"{p} still says {st}"


RUN_CASES = run_cases() + damaged_cases()
OS_CASES = os_cases()


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_corpus_runs(case: Case, tmp_path: Path):
    check(case, tmp_path / "case")


@pytest.mark.parametrize("case,skip", OS_CASES, ids=[c.id for c, _ in OS_CASES])
def test_corpus_os(case: Case, skip: str | None, tmp_path: Path):
    if skip:
        pytest.skip(skip)
    d = tmp_path / "case"
    try:
        check(case, d)
    finally:  # chmod 000 folders must be removable by pytest's cleanup
        for p in [d, *d.rglob("*")] if d.exists() else []:
            try:
                if not p.is_symlink():
                    os.chmod(p, 0o700 if p.is_dir() else 0o600)
            except OSError:
                pass


# ---------------------------------------------------------------------------- class 1: a worker that dies
def _bad_model_config(d: Path) -> None:
    good_config(d, model={"base": "badmodel", "method": "lora"})
    (d / "badmodel").mkdir()
    (d / "badmodel" / "config.json").write_text("{garbage")


def _failed_not_running(d: Path, r) -> None:
    runs = list((d / "runs").iterdir())
    assert len(runs) == 1, runs
    st = json.loads((runs[0] / "status.json").read_text())
    assert st["state"] == "failed" and "config.json" in st["message"], st
    assert "Traceback" in (runs[0] / "train.log").read_text(), "the worker's traceback belongs in train.log"


def _adapter_cases() -> list[Case]:
    cases = []
    for cmd in ("export", "eval"):
        def setup(d: Path):
            r = make_run(d / "runs", "bad", DONE, GOOD_EVENTS)
            (r / "adapter").mkdir()
            (r / "adapter" / "adapter_config.json").write_text("{this is not json")
            (r / "adapter" / "adapter_model.safetensors").write_bytes(GOOD_ST)
        cases.append(Case(f"{cmd}-adapter-config-not-json", 1, [cmd, "bad", "--runs-dir", "runs", "--json"], 1,
                          "adapter_config.json", setup=setup, timeout=120,
                          extra=lambda d, r: _not_running(d / "runs" / "bad")))
    return cases


def _export_crash_setup(d: Path) -> None:
    """A finished run whose adapter files are intact but whose base model cannot load: the worker crashes."""
    r = make_run(d / "runs", "bad", DONE, GOOD_EVENTS)
    cfg = yaml.safe_load((r / "config.yaml").read_text())
    cfg["model"] = {"base": str(d / "nomodel"), "method": "lora"}
    (r / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "nomodel").mkdir()
    (d / "nomodel" / "config.json").write_text('{"model_type": "llama"}')
    (r / "adapter").mkdir()
    (r / "adapter" / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    (r / "adapter" / "adapter_model.safetensors").write_bytes(GOOD_ST)


WORKER_CASES = _adapter_cases() + [
    Case("export-worker-crashes", 1, ["export", "bad", "--runs-dir", "runs", "--format", "adapter", "--json"], 1,
         "export.log", setup=_export_crash_setup, timeout=400, extra=lambda d, r: _not_running(d / "runs" / "bad")),

    Case("train-worker-dies-on-bad-model", 1, ["train", "config.yaml", "--force", "--json"], 1, "config.json",
         setup=_bad_model_config, json="lines", timeout=400, extra=_failed_not_running),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", WORKER_CASES, ids=[c.id for c in WORKER_CASES])
def test_corpus_worker(case: Case, tmp_path: Path):
    check(case, tmp_path / "case")


# ---------------------------------------------------------------------------- class 2: a wait with a bound
def test_stop_wait_has_a_bound(tmp_path: Path):
    """A trainer that ignores the stop request: `stop --wait` gives up after --timeout with the pid to kill."""
    import subprocess
    import sys

    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
                                stdout=subprocess.PIPE, text=True)
    try:
        stubborn.stdout.readline()
        d = tmp_path / "case"

        def setup(d: Path):
            make_run(d / "runs", "busy", {"state": "running", "pid": stubborn.pid, "step": 3, "started_at": OLD})

        case = Case("stop-wait-timeout", 2, ["stop", "busy", "--runs-dir", "runs", "--wait", "--timeout", "2", "--json"],
                    1, str(stubborn.pid), setup=setup, may_change=("runs/busy/STOP",), timeout=30)
        check(case, d)
        assert stubborn.poll() is None  # asked, not killed
    finally:
        stubborn.kill()
        stubborn.wait()
