"""The adversarial stage: discriminators, their optimizer, and the balanced generator gradient."""

import torch

from codec.train.balancer import Balancer
from codec.train.discriminators import (
    Discriminators,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from codec.train.recipe import GanConfig, LossConfig, reconstruction_weights


class GanStage:
    """``discriminator_step`` then ``generator_losses``; the discriminators' weights change only
    in their own step, and the generator's backward pass leaves their gradients untouched."""

    def __init__(self, config: GanConfig, loss: LossConfig, wrap=lambda module: module, device="cpu"):
        self.config = config
        self.discriminators = Discriminators(config.periods, config.stft_windows, config.channels).to(device)
        self.replica = wrap(self.discriminators)
        self.optimizer = torch.optim.AdamW(self.discriminators.parameters(), lr=config.lr,
                                           betas=tuple(config.betas))
        gan_weights = {"adversarial": config.adversarial_weight, "feature": config.feature_weight}
        # with the balancer, shares of the gradient; without, the reconstruction losses keep their weights
        self.weights = {**reconstruction_weights(config if config.balancer else loss), **gan_weights}
        self.balancer = Balancer(self.weights) if config.balancer else None

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        real_logits, _ = self.replica(real)
        fake_logits, _ = self.replica(fake.detach())
        loss = discriminator_hinge_loss(real_logits, fake_logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def generator_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        self.discriminators.requires_grad_(False)
        try:
            fake_logits, fake_features = self.replica(fake)
            with torch.no_grad():
                _, real_features = self.replica(real)
        finally:
            self.discriminators.requires_grad_(True)
        return {"adversarial": generator_adversarial_loss(fake_logits),
                "feature": feature_matching_loss(real_features, fake_features)}

    def audio_gradient(self, losses: dict[str, torch.Tensor], fake: torch.Tensor) -> torch.Tensor:
        """The gradient to push into the generated audio: balanced, or the plain weighted sum's."""
        if self.balancer is not None:
            return self.balancer.gradient(losses, fake)
        total = sum(self.weights[name] * loss for name, loss in losses.items())
        (gradient,) = torch.autograd.grad(total, [fake], retain_graph=True)
        return gradient

    def state_dict(self) -> dict:
        """The discriminators, their optimizer and the balancer's running gradient norms: a resumed
        run continues as if it had not stopped."""
        state = {"discriminators": self.discriminators.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.balancer is not None:
            state["balancer_norms"] = dict(self.balancer.norms)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.discriminators.load_state_dict(state["discriminators"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.balancer is not None:   # (a checkpoint from before they were kept: they start again)
            self.balancer.norms = dict(state.get("balancer_norms", {}))
