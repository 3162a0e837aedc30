"""Snake for training: its forward and its backward are each one compiled TorchInductor kernel
(`kernels_rvqgan.compiled`, checked on a probe input), instead of autograd through the five elementwise ops of `snake`,
which store four intermediates for the backward.

With y = x + sin^2(a x) / (a + eps):
    dy/dx = 1 + a sin(2 a x) / (a + eps)
    dy/da = x sin(2 a x) / (a + eps) - sin^2(a x) / (a + eps)^2
"""

import functools

import torch
from rvqgan.modeling.kernels_rvqgan import compiled
from rvqgan.modeling.layers_rvqgan import Snake1d, inverse_alpha, snake


def snake_backward(grad: torch.Tensor, hidden_states: torch.Tensor, alpha: torch.Tensor):
    """Gradients of `snake` for (B, C, T) `grad` and `hidden_states`, (1, C, 1) `alpha`: (grad_x, grad_alpha)."""
    inverse = inverse_alpha(alpha)
    scaled = alpha * hidden_states
    sin_twice = torch.sin(2 * scaled)
    grad_input = grad * (1 + alpha * inverse * sin_twice)
    grad_alpha = grad * (hidden_states * sin_twice * inverse - torch.sin(scaled).pow(2) * inverse.pow(2))
    return grad_input, grad_alpha.sum(dim=(0, 2), keepdim=True)


@functools.cache
def kernels(device: torch.device, dtype: torch.dtype, alpha_dtype: torch.dtype) -> tuple:
    """The forward and backward of `snake` for (B, C, T) `dtype` inputs and (1, C, 1) `alpha_dtype` alphas on
    `device`, compiled, or the eager functions where compiling fails or gives wrong results (`compiled`)."""
    generator = torch.Generator().manual_seed(0)
    x, grad = (3 * torch.randn(2, 24, 101, generator=generator) for _ in range(2))  # vectors and a tail
    alpha = torch.rand(1, 24, 1, generator=generator) + 0.1
    out_dtype = torch.promote_types(dtype, alpha_dtype)  # the output's, and so the gradient's
    probe = x.to(device, dtype), alpha.to(device, alpha_dtype)
    example = torch.zeros(2, 3, 5, device=device, dtype=dtype), torch.ones(1, 3, 1, device=device, dtype=alpha_dtype)
    forward = compiled(snake, example, probe, "Snake activations (training)")
    grad_example = torch.zeros(2, 3, 5, device=device, dtype=out_dtype)  # its own tensor: inputs must not alias
    probe_grad = grad.to(device, out_dtype)
    backward = compiled(snake_backward, (grad_example, *example), (probe_grad, *probe), "Snake gradients")
    return forward, backward


class FusedSnake(torch.autograd.Function):
    """`snake` with compiled forward and backward kernels; saves only its inputs."""

    @staticmethod
    def forward(ctx, hidden_states: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(hidden_states, alpha)
        forward, _ = kernels(hidden_states.device, hidden_states.dtype, alpha.dtype)
        return forward(hidden_states.detach().contiguous(), alpha.detach().contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden_states, alpha = ctx.saved_tensors
        _, backward = kernels(hidden_states.device, hidden_states.dtype, alpha.dtype)
        return tuple(backward(grad.contiguous(), hidden_states.detach().contiguous(), alpha.detach().contiguous()))


def use_fused_snake(model: torch.nn.Module) -> bool:
    """Plug `FusedSnake` into every `Snake1d` of `model`, where both kernels compile and pass their check on the
    model's device; otherwise (with a warning, from `compiled`) leave the eager `snake`. Returns whether it did."""
    parameter = next(model.parameters())
    forward, backward = kernels(parameter.device, parameter.dtype, parameter.dtype)
    if forward is snake or backward is snake_backward:
        return False
    for module in model.modules():
        if isinstance(module, Snake1d):
            module.kernel = FusedSnake.apply
    return True
