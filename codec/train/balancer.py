"""Loss balancer (EnCodec, Défossez et al. 2022, section 3.4).

Every loss that depends on the generated waveform ``y_hat`` contributes a gradient with respect
to it; the balancer rescales each so that its share of the total gradient equals its weight's
share, whatever the loss's scale: ``g = R * sum_i w_i / sum_j w_j * g_i / ||g_i||``, with
``||g_i||`` a running average (EMA). Weights thus mean "fraction of the gradient", which keeps
adversarial and reconstruction terms from drowning each other.
"""

import torch


class Balancer:
    def __init__(self, weights: dict[str, float], total_norm: float = 1.0, ema_decay: float = 0.999):
        self.weights = weights
        self.total_norm = total_norm
        self.ema_decay = ema_decay
        self.norms: dict[str, float] = {}

    def gradient(self, losses: dict[str, torch.Tensor], y_hat: torch.Tensor) -> torch.Tensor:
        """The balanced gradient with respect to ``y_hat``, to backpropagate with
        ``torch.autograd.backward([y_hat, ...], [gradient, ...])`` (one backward pass, as DDP wants)."""
        total_weight = sum(self.weights[name] for name in losses)
        gradient = torch.zeros_like(y_hat)
        for name, loss in losses.items():
            (g,) = torch.autograd.grad(loss, [y_hat], retain_graph=True)
            norm = float(g.norm())
            previous = self.norms.get(name, norm)
            self.norms[name] = self.ema_decay * previous + (1 - self.ema_decay) * norm
            gradient += self.total_norm * self.weights[name] / total_weight * g / (self.norms[name] + 1e-12)
        return gradient
