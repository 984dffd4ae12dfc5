"""Pre-flight: catch a doomed run before its first training step.

`run_check(cfg)` reads the config, the base model's tokenizer and config.json (never its
weights), lints the train and eval files with that tokenizer, estimates memory, time and
cost against the GPU (or CPU), and applies the guardrails from the guidance. The result
is a `Report` of findings ranked by severity, each with its rule id, what is wrong, why it
matters and the concrete change; `fix_config` applies the changes that are config edits.
`ftwizard check` prints it, `ftwizard train` refuses to start on its errors, and the
wizard's hyperparameter screen shows it (with data="cached" on keystrokes).
"""

from ftwizard.preflight.check import run_check
from ftwizard.preflight.fix import fix_config, planned_edits
from ftwizard.preflight.report import SCHEMA, Finding, Report
from ftwizard.preflight.rules import ERROR, INFO, RULES, WARNING, Rule

__all__ = ["run_check", "fix_config", "planned_edits", "Report", "Finding", "Rule", "RULES", "SCHEMA",
           "ERROR", "WARNING", "INFO"]
