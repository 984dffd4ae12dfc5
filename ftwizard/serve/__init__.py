"""An OpenAI-compatible server for a run's model (`ftwizard serve`), also used by chat and the Try step.

Light modules: `target` (what to serve), `protocol` (request checks and response
shapes), `launch` (start the server process and wait until it listens). Heavy ones,
imported only inside the server process: `model` (torch, transformers, peft) and
`app` (starlette), run by `python -m ftwizard.serve.worker`.
"""
