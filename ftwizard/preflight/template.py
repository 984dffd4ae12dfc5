"""Pre-flight note on the chat template (data.chat_template): which one a base model gets, and what training the
rows of its tokens costs. Kept beside the guardrails; the decision itself is ftwizard.data.chat_templates."""

from __future__ import annotations

from ftwizard.preflight.rules import INFO


def chat_template(ctx) -> None:
    from ftwizard.data.chat_templates import AUTO, planned

    cfg = ctx.cfg
    try:
        tpl = planned(cfg.model.base, cfg.data.chat_template, cfg.data.train, cfg.data.format)
    except Exception:  # noqa: BLE001 - an unreadable data file or model folder has its own finding
        return
    if tpl is None:
        return
    why = "the base model has no chat template, so" if cfg.data.chat_template == AUTO else "data.chat_template:"
    msg = f"{why} chat rows use the {tpl.title} template"
    if tpl.special_tokens:
        msg += (f"; the embedding rows of its tokens ({', '.join(tpl.special_tokens)}) train (missing ones are "
                "added)")
        rows = ctx.estimate.parts.get("template_token_rows") if ctx.estimate is not None else None
        if rows:
            from ftwizard.preflight.guardrails import _gib

            msg += f", about {_gib(rows)} more at the peak (in the estimate)"
    msg += "; the tuned model saves it with its tokenizer"
    ctx.add("model.chat_template", INFO, msg,
            "nothing to do; set data.chat_template to chatml, llama3, gemma, mistral, alpaca or a .jinja file to "
            "choose another", field="data.chat_template")
