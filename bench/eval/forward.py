"""The evaluation fast path: a compiled forward that survives AutoAttack's shrinking batches.

AutoAttack attacks only the points still robust, so every stage (and every restart or target inside it) sees a
new batch size. A plain `torch.compile` would recompile for each new size (tens of seconds each on a GPU) and
soon hit dynamo's recompile limit, falling back to eager. `BucketedForward` pads every batch up to one of a few
fixed sizes (powers of two from `min_bucket`, and the evaluation batch size itself), runs the compiled model,
and slices the padding off again: at most `len(buckets)` graphs per grad mode, reused across stages, attacks
and eps. Padding is harmless only because the model is in eval mode (BatchNorm uses running statistics, so
each image's logits and input gradient do not depend on its batch-mates); the wrapper refuses train mode.

On a CPU padding is real work: one image padded to the 32-image bucket costs what 32 do (a forward-backward of
the smoke study's sharp_small: 0.9 ms eager, 7.8 ms compiled and padded), and AutoAttack's last survivors run
thousands of such calls (Square's queries, FAB-T's iterations). So on a CPU a batch under `CPU_EAGER_BELOW`
images runs the model eagerly; on a GPU a small batch costs its launches, not its rows, and stays compiled.

Precision: the compiled model runs in fp32, exactly like the eager one. Attacks in the bench never run under
bf16 autocast, so robust/not-robust decisions and the gradients that attacks follow are fp32 (on CUDA,
PyTorch's default lets cuDNN convolutions use TF32; rows record this as `precision`).
"""
from __future__ import annotations

import sys

import torch
import torch.nn as nn


CPU_EAGER_BELOW = 8  # images; smaller batches skip the compiled graph on a CPU (see above)


def buckets_for(max_batch: int, min_bucket: int = 32) -> list[int]:
    """Powers of two from min_bucket below max_batch, then max_batch itself: padding at most doubles work."""
    sizes, b = [], min_bucket
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return sizes + [max_batch]


class BucketedForward(nn.Module):
    """model(x) through torch.compile with x padded to a fixed bucket size; logits of the real rows only.
    Batches of fewer than `eager_below` images run the model eagerly, unpadded."""

    def __init__(self, model: nn.Module, max_batch: int, backend: str = "inductor", channels_last: bool = False,
                 eager_below: int = 0):
        super().__init__()
        import torch._dynamo

        self.model = model
        self.buckets = buckets_for(max_batch)
        self.channels_last = channels_last
        self.eager_below = eager_below
        # one graph per (bucket, grad mode); dynamo's limit counts the graphs of every model compiled in this
        # process (a bench run evaluates many), so each forward adds room for its own, else the rest go to eager
        torch._dynamo.config.recompile_limit += 2 * len(self.buckets) + 4
        self.compiled = torch.compile(model, backend=backend, dynamic=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.model.training:
            raise RuntimeError("BucketedForward pads batches, which is only exact in eval mode; call .eval()")
        if sys.gettrace() is not None:
            # a trace function is watching (a debugger, coverage, or AutoAttack's check for dynamic defences,
            # which flags any call named `backward`/`grad` during a forward): show it the model's own code, not
            # the compiler's, which would make every compiled model look like a dynamic defence
            return self.model(x)
        n = len(x)
        if n < self.eager_below:
            return self.model(x)
        size = next((b for b in self.buckets if b >= n), None)
        if size is None:  # larger than any bucket: split, so no new shape is ever compiled
            return torch.cat([self(x[i:i + self.buckets[-1]]) for i in range(0, n, self.buckets[-1])])
        if size > n:
            x = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.compiled(x)[:n]


def prepare_for_eval(model: nn.Module, device: torch.device, *, compile_backend: str | None = None,
                     batch_size: int = 250) -> nn.Module:
    """Eval mode on `device`; channels_last on CUDA; optionally the bucketed compiled forward."""
    model = model.eval().to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_backend:
        return BucketedForward(model, batch_size, backend=compile_backend, channels_last=channels_last,
                               eager_below=CPU_EAGER_BELOW if device.type == "cpu" else 0).eval()
    return model


def eager(model: nn.Module) -> nn.Module:
    """The model itself, under the compiled forward prepare_for_eval may have put around it (for what changes its
    weights, as the sharpness measure does)."""
    return model.model if isinstance(model, BucketedForward) else model


def precision_note(device: torch.device) -> str:
    """What 'fp32' means on this device, for the row's provenance."""
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "fp32 (cuDNN convolutions may use TF32)"
    return "fp32"
