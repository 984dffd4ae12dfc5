"""ftwizard: a terminal wizard for fine-tuning LLMs.

Kept import-light on purpose: `ftwizard --help` and the first screen must appear in
under a second, so nothing here (or in the CLI and TUI) imports torch, transformers,
peft, trl, datasets or bitsandbytes. Heavy work lives in subprocesses.
"""

__version__ = "0.1.0"
