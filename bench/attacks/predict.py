"""Predictions in batches, refusing non-finite logits: what clean accuracy and every attack's check read."""
from __future__ import annotations

import torch


class EvaluationError(RuntimeError):
    """The model or the attack misbehaved (NaN logits, a perturbation outside the ball)."""


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size]).float()
        if not torch.isfinite(logits).all():
            raise EvaluationError("model returns NaN/inf logits; check the checkpoint (was training diverging?)")
        out.append(logits.argmax(1))
    return torch.cat(out)
