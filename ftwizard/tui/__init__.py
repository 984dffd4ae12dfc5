"""The wizard: a Textual app over the domain layer.

Nothing is imported here on purpose: `import ftwizard.tui` must stay cheap, and the
app itself (`ftwizard.tui.app`) never imports torch, transformers, peft, trl or
datasets; long work runs in subprocesses that write a run folder the app reads.
"""
