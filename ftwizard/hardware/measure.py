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


def live_tensor_bytes(model, optimizer=None) -> int:
    """Bytes of the model's parameters, buffers and the optimizer's state tensors (deduplicated)."""
    import torch

    seen: dict[int, int] = {}
    tensors = list(model.parameters()) + list(model.buffers())
    if optimizer is not None:
        for st in optimizer.state.values():
            tensors += [v for v in st.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        if t.device.type == "cpu":
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def cpu_peak_tensor_bytes(step_fn, baseline_bytes: int = 0) -> int:
    """Peak bytes of live CPU tensors while `step_fn()` runs: the CPU analogue of
    `torch.cuda.max_memory_allocated` (RSS would also count the allocator's cached pages,
    mapped files and Python objects).

    torch.profiler with profile_memory records every op's own net allocation and every
    free outside an op; replaying them in time order gives the live bytes after each op.
    A temporary allocated and freed inside one op is missed, so this is a lower bound at
    op granularity; at equal times allocations are replayed before frees. `baseline_bytes`: what was alive before (parameters, optimizer state).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step_fn()
    points = []
    for e in prof.events():
        d = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if d:
            # An op's own net allocation is settled when it ends (its frees of inputs it
            # consumed, e.g. autograd releasing saved tensors, come after its children).
            points.append((e.time_range.end, -d, d))
    points.sort()
    cur = peak = 0
    for _, _, d in points:
        cur += d
        peak = max(peak, cur)
    return baseline_bytes + peak
