"""Snake for training on CPU: its forward and its backward are each one TorchInductor kernel (`torch.compile`),
instead of autograd through the five elementwise ops of `snake`, which store four intermediates for the backward.

With y = x + sin^2(a x) / (a + eps):
    dy/dx = 1 + a sin(2 a x) / (a + eps)
    dy/da = x sin(2 a x) / (a + eps) - sin^2(a x) / (a + eps)^2
"""

import warnings

import torch

from modeling_rvqgan.layers_rvqgan import Snake1d, inverse_alpha, snake


def snake_backward(grad: torch.Tensor, hidden_states: torch.Tensor, alpha: torch.Tensor):
    """Gradients of `snake` for (B, C, T) `grad` and `hidden_states`, (1, C, 1) `alpha`: (grad_x, grad_alpha)."""
    inverse = inverse_alpha(alpha)
    scaled = alpha * hidden_states
    sin_twice = torch.sin(2 * scaled)
    grad_input = grad * (1 + alpha * inverse * sin_twice)
    grad_alpha = grad * (hidden_states * sin_twice * inverse - torch.sin(scaled).pow(2) * inverse.pow(2))
    return grad_input, grad_alpha.sum(dim=(0, 2), keepdim=True)


# inputs are passed detached (plain tensors, not Parameters) so that the guards see one type; shapes are dynamic but
# for dynamo's 0/1 specialisation (a batch of 1 is a second graph); past the recompile limit dynamo runs them eager
compiled_forward = torch.compile(snake, dynamic=True)
compiled_backward = torch.compile(snake_backward, dynamic=True)


class FusedSnake(torch.autograd.Function):
    """`snake` with compiled forward and backward kernels; saves only its inputs."""

    @staticmethod
    def forward(ctx, hidden_states: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(hidden_states, alpha)
        return compiled_forward(hidden_states.detach(), alpha.detach())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden_states, alpha = ctx.saved_tensors
        return compiled_backward(grad.contiguous(), hidden_states.detach(), alpha.detach())


def use_fused_snake(model: torch.nn.Module) -> bool:
    """Plug `FusedSnake` into every `Snake1d` of `model` (on CPU); returns False, with a warning, where TorchInductor
    cannot compile (no C++ compiler, say), leaving the eager `snake`."""
    try:
        x, alpha = (
            torch.linspace(-2, 2, 30).view(2, 3, 5).requires_grad_(),
            torch.ones(1, 3, 1, requires_grad=True),
        )  # no RNG
        FusedSnake.apply(x, alpha).sum().backward()
    except Exception as error:
        warnings.warn(f"Snake activations train unfused (slower): TorchInductor failed with {error!r}", stacklevel=2)
        return False
    for module in model.modules():
        if isinstance(module, Snake1d):
            module.kernel = FusedSnake.apply
    return True
