"""Chat, serve, the Try step and the judge stay light where they must: the CLI start-up path
loads no server or HTTP library, and the modules the wizard and CLI import load no ML stack
(the model lives in the server process)."""

from __future__ import annotations

from test_imports import HEAVY, modules_after

SERVER_LIBS = ("starlette", "uvicorn", "httpx")


def test_cli_start_up_loads_no_server_or_http_library():
    mods = modules_after("import ftwizard.cli as c\nc.build_parser()")
    assert not [m for m in SERVER_LIBS if m in mods]


def test_chat_try_and_judge_modules_load_no_ml_stack():
    mods = modules_after("import ftwizard.serve.launch, ftwizard.serve.target, ftwizard.serve.protocol, "
                         "ftwizard.chat.client, ftwizard.chat.terminal, ftwizard.evaluation.judge, "
                         "ftwizard.commands.chat_cmds, ftwizard.tui.screens.try_")
    assert not [m for m in HEAVY if m in mods]
    assert not [m for m in ("starlette", "uvicorn") if m in mods]  # the server library only in the server
