"""Hardware and estimates: detected GPUs, model shapes, peak training memory, time and cost.

Everything here except `gpus` (NVML), `datatokens` (a tokenizer) and `probe` (real
training steps) is plain arithmetic that imports nothing heavy, so the wizard can
re-estimate on every keystroke. Start at `estimate.estimate()`.
"""
