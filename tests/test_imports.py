"""Start-up stays light: the CLI must not import the ML stack (harlequin's test)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes")


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())


def test_cli_import_loads_no_ml_stack():
    mods = modules_after("import ftwizard.cli")
    assert not [m for m in HEAVY if m in mods]


def test_help_builds_every_command_without_ml_stack():
    mods = modules_after("import ftwizard.cli as c\nc.build_parser()")
    assert not [m for m in HEAVY if m in mods]


def test_run_commands_helpers_are_light():
    mods = modules_after("import ftwizard.training.launch, ftwizard.monitoring, ftwizard.rundir, ftwizard.config")
    assert not [m for m in HEAVY if m in mods]
