"""What an export starts from: a finished run folder, its config, its result, and the
prompts used to check every exported file. Light: no torch here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftwizard.config import EMBEDDED, RunConfig, load_config
from ftwizard.errors import UserError
from ftwizard.rundir import RunDir

N_PROBES = 3


@dataclass
class RunSource:
    run: RunDir
    cfg: RunConfig

    @property
    def method(self) -> str:
        return self.cfg.model.method

    @property
    def artifact(self) -> Path:
        """The trained result: adapter/ for LoRA and QLoRA, model/ for full fine-tuning."""
        return self.run.adapter if self.method in ("lora", "qlora") else self.run.model

    @property
    def base_display(self) -> str:
        if self.cfg.model.base == EMBEDDED:
            from ftwizard.models.embedded import HUB_ID

            return HUB_ID
        return self.cfg.model.base

    def base_path(self, log=print) -> str:
        from ftwizard.models.resolve import resolve_base

        return resolve_base(self.cfg.model.base, log=log)

    def training_system_prompt(self) -> str | None:
        """The system prompt training used: the config's, else one shared by every row that has one."""
        if self.cfg.data.system_prompt:
            return self.cfg.data.system_prompt
        seen: set[str] = set()
        for msgs in self._conversations(limit=200):
            sys_ = [m["content"] for m in msgs if m["role"] == "system"]
            if sys_:
                seen.add(sys_[0])
            if len(seen) > 1:
                return None
        return seen.pop() if len(seen) == 1 else None

    def probe_prompts(self, n: int = N_PROBES) -> list[list[dict]]:
        """The first `n` conversations of the eval file (else train), cut before the last assistant turn."""
        return self.check_prompts(n)[0]

    def check_prompts(self, n: int = N_PROBES) -> tuple[list[list[dict]], list[str]]:
        """The first `n` conversations of the eval file (else train), cut before the last assistant turn,
        and the assistant answers they were cut from (to size the generation limit from the data)."""
        convs, answers = [], []
        for msgs in self._conversations(limit=50, prefer_eval=True):
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None or last == 0:
                continue
            convs.append(msgs[:last])
            answers.append(str(msgs[last]["content"]))
            if len(convs) >= n:
                break
        # more answers than prompts size the limit better: the eval rows' answers, up to 50
        for msgs in self._conversations(limit=50, prefer_eval=True):
            for m in msgs:
                if m["role"] == "assistant" and len(answers) < 50:
                    answers.append(str(m["content"]))
        return convs, answers

    def probe_check_prompts(self, n: int) -> list[list[dict]]:
        """`n` prompts of the regression probe, as plain user turns (general behaviour, not the task)."""
        from ftwizard.evaluation.probe import load_probe, probe_subset

        try:
            items = probe_subset(load_probe(), n)
        except (OSError, ValueError):
            return []
        return [[{"role": "user", "content": it["prompt"]}] for it in items[:n]]

    def _conversations(self, limit: int, prefer_eval: bool = False):
        from ftwizard.data.formats import ConversionError, detect_format, to_messages
        from ftwizard.training.dataset import iter_rows

        files = [self.cfg.data.train]
        if prefer_eval and self.cfg.data.eval:
            files.insert(0, self.cfg.data.eval)
        count = 0
        for path in files:
            if not Path(path).is_file():
                continue
            for _, rec in iter_rows(Path(path)):
                fmt = None if self.cfg.data.format == "auto" else self.cfg.data.format
                try:
                    row_fmt = fmt or detect_format(rec)
                    if row_fmt == "text":
                        continue
                    if row_fmt in ("preference", "kto"):  # a preference run: the prompt and its good answer (h14a)
                        from ftwizard.data.preference import PairError, normalise_row

                        try:
                            kind, norm = normalise_row(rec, row_fmt, self.cfg.data.system_prompt)
                        except PairError:
                            continue
                        if kind == "unpaired" and not norm["label"]:
                            continue
                        yield norm["prompt"] + (norm["chosen"] if kind == "pairs" else norm["completion"])
                    else:
                        yield to_messages(rec, fmt, system_prompt=self.cfg.data.system_prompt)
                except (ConversionError, KeyError, TypeError):
                    continue
                count += 1
                if count >= limit:
                    return
            if prefer_eval and count:
                return


def open_run(run_path: Path) -> RunSource:
    """The run at `run_path`, checked to be finished with a result to export (the path made absolute:
    it crosses into the converter and llama.cpp processes, which run in other folders)."""
    run = RunDir(Path(run_path).resolve())
    if not run.config.is_file():
        raise UserError(f"{run_path} is not a run folder (no config.yaml)", where=str(run_path),
                        fix="pass a folder made by `ftwizard train`; `ftwizard runs` lists them")
    cfg = load_config(run.config)
    src = RunSource(run, cfg)
    state = run.require_readable().get("state")  # a corrupt run folder: said once, with its file
    if state in ("starting", "running", "stopping"):
        raise UserError(f"run {run.name} is still {state}", where=str(run.path),
                        fix=f"wait for it to finish (`ftwizard monitor {run.name}`), then export")
    marker = "adapter_config.json" if src.method in ("lora", "qlora") else "config.json"
    if not (src.artifact / marker).is_file():
        raise UserError(f"run {run.name} has no final {src.artifact.name}/ (state: {state})", where=str(src.artifact),
                        fix=f"finish the run first (`ftwizard resume {run.name}`); a stopped run has only checkpoints")
    from ftwizard.rundir import damaged_model_file

    bad = damaged_model_file(src.artifact)  # before a worker starts: a garbled file named, not a traceback
    if bad is not None:
        raise UserError(f"the result of run {run.name} is damaged: {bad[0].name} {bad[1]}", where=str(bad[0]),
                        fix="train it again, or resume from a checkpoint whose files are intact")
    return src
