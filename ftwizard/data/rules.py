"""The lint rules: stable ids, default severity, a title and a fix hint.

The ids are part of the JSON report's contract (scripts and the wizard filter on them),
so a rule may be added but never renamed. `ftwizard lint --rules` lists this table.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    hint: str


_RULES = [
    # reading the file
    Rule("file.empty", ERROR, "the file has no rows", "add examples; a fine-tune needs at least a few hundred (guidance)"),
    Rule("row.too_large", ERROR, "row far larger than any max length", "remove the row (`ftwizard data fix --drop-invalid`); binary or base64 data (images, files) cannot be trained as text"),
    Rule("json.too_deep", ERROR, "row nested too deeply", "flatten the row; no training example nests more than a few levels"),
    Rule("json.invalid", ERROR, "not valid JSON", "fix the syntax at the column shown, or drop the row with `ftwizard data fix --drop-invalid`"),
    Rule("row.not_object", ERROR, "row is not a JSON object", "each line must be one object such as {\"messages\": [...]}"),
    Rule("csv.columns", ERROR, "CSV row has the wrong number of cells", "quote cells that contain commas or newlines"),
    Rule("encoding.invalid_utf8", ERROR, "bytes that are not UTF-8", "re-save the file as UTF-8; `ftwizard data fix` replaces the bad bytes with U+FFFD"),
    Rule("encoding.bom", WARNING, "UTF-8 byte order mark", "re-save without BOM; `ftwizard data fix` writes the file without it"),
    # format and structure
    Rule("format.unknown", ERROR, "row matches no known format", "use messages, conversations (ShareGPT), instruction/output (Alpaca), prompt/completion or text"),
    Rule("format.mixed", ERROR, "row of a different format than the file", "use one format per file; `ftwizard data fix --to messages` converts every row"),
    Rule("format.preference", ERROR, "preference data needs a preference objective (dpo, orpo, kto)", "set training.objective: dpo (or orpo; kto for prompt/completion/label rows), or keep only prompt + chosen as prompt/completion for SFT"),
    Rule("format.text", INFO, "raw text rows", "text rows train as plain language modelling, without the chat template or assistant-only loss"),
    Rule("keys.missing", ERROR, "a required key is missing", "add the key, or rename the key shown to the one the format expects"),
    Rule("keys.unknown", INFO, "key ignored by training", "extra keys are harmless; they are not trained on"),
    Rule("roles.unknown", ERROR, "unknown role", "use the roles system, user and assistant"),
    Rule("roles.order", ERROR, "bad role order", "system only first, then user and assistant alternating, ending with assistant"),
    Rule("content.empty", ERROR, "empty or whitespace-only content", "write the missing text, or drop the row with --drop-invalid"),
    Rule("content.not_string", ERROR, "content is not text", "content must be a string (or a list of text parts)"),
    Rule("content.special_token", WARNING, "text contains a special token of the tokenizer", "remove control tokens such as <|im_end|> from the text; the template adds them"),
    # tool calling (ftwizard.data.tools)
    Rule("tools.unknown_name", ERROR, "call to a tool that is not in the row's tools", "add the tool's schema to `tools`, or fix the name of the call"),
    Rule("tools.args_invalid_json", ERROR, "tool-call arguments are not a JSON object", "write the arguments as a JSON object (or a string holding one)"),
    Rule("tools.args_schema", WARNING, "tool-call arguments do not match the tool's schema", "fix the arguments (or the schema); the model learns to call tools the way the data does"),
    Rule("tools.schema_invalid", WARNING, "a tool's parameters are not a valid JSON schema", "fix the schema; the arguments of calls to it are not checked"),
    Rule("tools.result_orphan", ERROR, "tool result with no call to answer", "put the assistant's call (tool_calls) before the result, and match tool_call_id to the call's id"),
    Rule("tools.call_unanswered", ERROR, "tool call never answered before the conversation goes on", "add the tool's result (role tool) after the call, or end the row at the call"),
    Rule("tools.template_unsupported", ERROR, "the chat template cannot render tool calls", "set data.chat_template: chatml (renders tools Hermes-style), a .jinja file that handles tools, or a model whose template does"),
    # preference data (DPO, ORPO, KTO; ftwizard.data.preference)
    Rule("pref.identical", ERROR, "chosen and rejected are the same", "fix or drop the pair; an identical pair teaches nothing"),
    Rule("pref.prompt_mismatch", ERROR, "chosen and rejected answer different prompts", "give both sides the same conversation up to the answer (or a shared `prompt`)"),
    Rule("pref.unpaired", ERROR, "unpaired rows under a paired objective", "DPO and ORPO need prompt/chosen/rejected pairs; train prompt/completion/label rows with training.objective: kto"),
    Rule("pref.duplicate", WARNING, "duplicate preference pair", "remove the repeated pairs; each copy weighs again in the loss"),
    Rule("pref.length_bias", WARNING, "chosen and rejected differ in length systematically", "add pairs where the shorter answer wins, or trim the longer side's filler, so that length does not predict the label (Park et al. 2024); TRL's DPO ld_alpha (LD-DPO) down-weights the extra tokens"),
    Rule("pref.kto_balance", WARNING, "desirable and undesirable rows out of balance", "set preference desirable_weight / undesirable_weight so that weight x count is about equal on both sides (KTO paper: ratio 1 to 4/3), or collect more of the rare side"),
    # tokens and template
    Rule("length.over_max", WARNING, "longer than the max length", "raise data.max_length, shorten the row, or drop it; the end (often the answer) is cut off"),
    Rule("template.no_eos", ERROR, "assistant turn does not end with the end-of-turn token", "use a chat template that closes assistant turns with the eos token, or the model may never stop talking"),
    Rule("template.error", ERROR, "the chat template cannot render the row", "check the roles; some templates reject a system message or a missing user turn"),
    Rule("tokens.skipped", INFO, "token counts skipped", "pass --model to count tokens exactly with the base model's tokenizer"),
    # duplicates and leakage
    Rule("dup.exact", WARNING, "exact duplicate", "remove duplicates with `ftwizard data fix --dedup exact`"),
    Rule("dup.near", WARNING, "near-duplicate", "review them; `ftwizard data fix --dedup` keeps the first of each group"),
    Rule("eval.overlap", WARNING, "eval row overlaps the training data", "remove the overlapping rows from one side; a leaked eval set overstates quality"),
    # personal data and secrets
    Rule("pii.email", WARNING, "e-mail address", "redact with `ftwizard data fix --redact-pii`"),
    Rule("pii.phone", WARNING, "phone number", "redact with `ftwizard data fix --redact-pii`"),
    Rule("pii.credit_card", WARNING, "credit card number", "redact with `ftwizard data fix --redact-pii`"),
    Rule("pii.iban", WARNING, "IBAN", "redact with `ftwizard data fix --redact-pii`"),
    Rule("pii.ssn", WARNING, "US social security number", "redact with `ftwizard data fix --redact-pii`"),
    Rule("pii.ip", WARNING, "public IP address", "redact with `ftwizard data fix --redact-pii`"),
    Rule("pii.secret", ERROR, "API key or secret", "revoke the key, then redact it with `ftwizard data fix --redact-pii`"),
    # the data set as a whole
    Rule("labels.imbalance", WARNING, "class labels out of balance", "add examples of the rare classes, or downsample the common ones"),
    Rule("output.json_invalid", WARNING, "assistant output is not valid JSON while most are", "fix the JSON of these outputs; the model copies what it sees"),
    Rule("system.inconsistent", WARNING, "different system prompts", "use the one system prompt you will send when serving (guidance)"),
    Rule("data.too_few", WARNING, "too few examples for the task type", "collect more examples; see the minimum / good / excellent table"),
    Rule("eval.size", INFO, "held-out set too small to resolve small differences", "hold out more rows (ftwizard data split --eval-fraction)"),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
