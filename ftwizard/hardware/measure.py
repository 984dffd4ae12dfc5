"""Measure what the memory model predicts: saved-for-backward bytes and peak memory.

`saved_activation_bytes` runs one forward pass under
`torch.autograd.graph.saved_tensors_hooks` and adds up, per decoder layer, the distinct
storages autograd keeps for backward (parameters excluded). Autograd saves the same
tensors on CPU as on CUDA for the same ops and dtypes, so this checks the activation
formula exactly on a machine without a GPU; only the dropout mask differs (CUDA's fused
dropout keeps a bool mask, CPU keeps the scaled noise in the input dtype), which the
formula takes as a device setting. Imports torch: tests, the probe and the bench only.
"""

from __future__ import annotations

from contextlib import nullcontext


def decoder_layers(model):
    m = model
    for attr in ("base_model", "model"):
        while hasattr(m, attr) and not hasattr(m, "layers"):
            nxt = getattr(m, attr)
            if nxt is m:
                break
            m = nxt
    if hasattr(m, "layers"):
        return m.layers
    for mod in model.modules():
        if mod.__class__.__name__.endswith("Model") and hasattr(mod, "layers"):
            return mod.layers
    raise ValueError("cannot find the decoder layers")


def saved_activation_bytes(model, input_ids, *, autocast_dtype=None, device_type="cpu") -> dict[str, int]:
    """Bytes saved for backward: {"L0": .., "L1": .., ..., "outside": ..} for one forward."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[str, int]] = {}
    where = ["outside"]

    def pack(t):
        try:
            st = t.untyped_storage()
            ptr, n = st.data_ptr(), st.nbytes()
        except Exception:  # tensors without storage (e.g. some wrapper subclasses)
            return t
        if ptr and ptr not in params and ptr not in seen:
            seen[ptr] = (where[0], n)
        return t

    hooks = []
    for i, layer in enumerate(decoder_layers(model)):
        hooks.append(layer.register_forward_pre_hook(lambda m, a, i=i: where.__setitem__(0, f"L{i}")))
        hooks.append(layer.register_forward_hook(lambda m, a, o: where.__setitem__(0, "outside")))
    ctx = torch.autocast(device_type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), ctx:
            out = model(input_ids=input_ids, labels=input_ids)
        out.loss.backward()
    finally:
        for h in hooks:
            h.remove()
    agg: dict[str, int] = {}
    for w, n in seen.values():
        agg[w] = agg.get(w, 0) + n
    return agg
