"""The paper's MNIST beta-VAE ("VAE1" of the authors' code), its configs and checkpoints.

The architecture is the one of the authors' TensorFlow code (see ``docs/vae.md``)::

    encoder: Conv(32, 3, stride 2, valid, ReLU) -> Conv(64, 3, stride 2, valid, ReLU)
             -> flatten in NHWC order -> Dense(2 * latent_dim) = [mean, logvar]
    decoder: Dense(7 * 7 * 32, ReLU) -> reshape NHWC -> ConvT(64, 3, stride 2, 'same', ReLU)
             -> ConvT(32, 3, stride 2, 'same', ReLU) -> ConvT(1, 3, stride 1, 'same')

The decoder output is raw (no sigmoid), as in the authors' training and evaluation. The
stride-2 transposed convolutions follow TensorFlow's 'same' alignment, so that the authors'
released weights give the same outputs here (:func:`~stftblur.models.load_author_checkpoint`).
Saving and loading weights is :mod:`stftblur.models.checkpoints`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VAE", "VAE_CONFIGS", "VAEConfig", "VAEOutput", "create_vae"]


@dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a :class:`VAE`, so that ``VAE(model.config)`` rebuilds it.

    Args:
        name: a label, e.g. the registry name it came from.
        image_size: side of the square input images; a multiple of 4, at least 8.
        in_channels: channels of the input and output images.
        latent_dim: size of the latent code z.
        encoder_channels: output channels of the two stride-2 encoder convolutions.
        decoder_channels: output channels of the two stride-2 decoder transposed convolutions;
            the second also sets the channels of the decoder's dense layer output (7x7xC with
            C = ``decoder_channels[1]``: 7x7x32 in the authors' code).
        init: ``"keras"`` (Glorot-uniform kernels, zero biases: what the authors' TensorFlow
            code starts from) or ``"torch"`` (PyTorch's layer defaults).

    Examples:
        >>> VAEConfig().latent_dim
        2
        >>> VAEConfig(latent_dim=8).encoded_size
        6
    """

    name: str = "mnist-vae"
    image_size: int = 28
    in_channels: int = 1
    latent_dim: int = 2
    encoder_channels: Tuple[int, int] = (32, 64)
    decoder_channels: Tuple[int, int] = (64, 32)
    init: str = "keras"

    def __post_init__(self) -> None:
        for field in ("image_size", "in_channels", "latent_dim"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VAEConfig.{field} must be a positive int, got {value!r}")
        if self.image_size % 4 or self.image_size < 8:
            raise ValueError(f"VAEConfig.image_size must be a multiple of 4 and >= 8, got {self.image_size}")
        for field in ("encoder_channels", "decoder_channels"):
            value = tuple(getattr(self, field))
            if len(value) != 2 or not all(isinstance(c, int) and c >= 1 for c in value):
                raise ValueError(f"VAEConfig.{field} must be two positive ints, got {getattr(self, field)!r}")
            object.__setattr__(self, field, value)
        if self.init not in ("keras", "torch"):
            raise ValueError(f"VAEConfig.init must be 'keras' or 'torch', got {self.init!r}")

    @property
    def encoded_size(self) -> int:
        """Side of the encoder's last feature map (6 for 28x28 inputs)."""
        s = self.image_size
        for _ in range(2):
            s = (s - 3) // 2 + 1
        return s

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VAEConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown VAEConfig keys {unknown}; expected a subset of {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


VAE_CONFIGS: Dict[str, VAEConfig] = {
    # The paper's model: MNIST 28x28, latent size 2.
    "mnist-vae": VAEConfig(),
}


class VAEOutput(NamedTuple):
    """What :meth:`VAE.forward` returns: raw reconstruction, posterior parameters and the z used.

    Examples:
        >>> import torch
        >>> out = VAE()(torch.rand(2, 1, 28, 28), sample=False)
        >>> torch.equal(out.z, out.mean), out._fields
        (True, ('recon', 'mean', 'logvar', 'z'))
    """

    recon: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


# Tap k of a 3-tap stride-2 transposed convolution with TensorFlow's 'same' alignment writes
# input position i to output 2 * i + k; rows 2 * i + 2 land in the next pair of output rows.
# As (output phase, shift of the input index): k=0 -> (0, 0), k=1 -> (1, 0), k=2 -> (0, +1).
_TAPS = ((0, 0), (1, 0), (0, 1))


class _ConvTransposeSame2(torch.autograd.Function):
    """3x3 stride-2 transposed convolution, TensorFlow 'same' (output 2H x 2W), as GEMMs in NHWC.

    Forward: one (B*H*W, Cin) x (Cin, 9*Cout) matrix product gives every tap's contribution,
    which is added into the four output phases (col2im without the cropped 15th row and column).
    Backward: the inverse gather (im2col of the output gradient) and two matrix products. On a
    CPU this is about twice as fast as ``F.conv_transpose2d`` followed by the crop (the crop's
    copies and the oneDNN deconvolution are the slow parts); the result is the same to float
    rounding. Output and input gradients are channels-last tensors.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b, cin, h, w = x.shape
        cout = weight.shape[1]
        xm = x.permute(0, 2, 3, 1).reshape(b * h * w, cin)
        wm = weight.permute(0, 2, 3, 1).reshape(cin, 9 * cout)
        cols = torch.mm(xm, wm).view(b, h, w, 3, 3, cout)
        out = x.new_empty(b, h, 2, w, 2, cout)  # (B, 2H, 2W, C) with rows 2i + a, columns 2j + c
        for kr, (a, dr) in enumerate(_TAPS):
            for ks, (c, dc) in enumerate(_TAPS):
                src = cols[:, : h - dr, : w - dc, kr, ks]
                dst = out[:, dr:, a, dc:, c]
                if dr == 0 and dc == 0:
                    torch.add(src, bias, out=dst)
                else:
                    dst.add_(src)
        ctx.save_for_backward(xm, wm)
        ctx.dims = (b, cin, h, w, cout)
        return out.view(b, 2 * h, 2 * w, cout).permute(0, 3, 1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        xm, wm = ctx.saved_tensors
        b, cin, h, w, cout = ctx.dims
        g = grad.permute(0, 2, 3, 1).contiguous().view(b, h, 2, w, 2, cout)
        gc = g.new_empty(b, h, w, 3, 3, cout)
        for kr, (a, dr) in enumerate(_TAPS):
            for ks, (c, dc) in enumerate(_TAPS):
                dst = gc[:, :, :, kr, ks]
                dst[:, : h - dr, : w - dc] = g[:, dr:, a, dc:, c]
                if dr:
                    dst[:, h - dr :].zero_()
                if dc:
                    dst[:, : h - dr, w - dc :].zero_()
        gm = gc.view(b * h * w, 9 * cout)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.mm(gm, wm.t()).view(b, h, w, cin).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            gw = torch.mm(xm.t(), gm).view(cin, 3, 3, cout).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[2]:
            gb = g.sum(dim=(0, 1, 2, 3, 4))
        return gx, gw, gb


class _SameConvTranspose2d(nn.ConvTranspose2d):
    """3x3 transposed convolution with TensorFlow's 'same' output alignment.

    For stride 2, TensorFlow keeps the FIRST ``stride * H`` rows and columns of the full
    ``(H - 1) * stride + 3`` output (all of its padding goes to the end); PyTorch's
    ``padding=1, output_padding=1`` would keep rows 1.. instead, a one-pixel shift. For
    stride 1 both are ``padding=1``. Parameters are those of ``nn.ConvTranspose2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=1 if stride == 1 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.stride[0] == 1:
            return F.conv_transpose2d(x, self.weight, self.bias, padding=1)
        if x.dtype in (torch.float16, torch.bfloat16) or x.device.type != "cpu":
            # Accelerators have fast transposed convolutions; keep their kernels.
            y = F.conv_transpose2d(x, self.weight, self.bias, stride=2)
            return y[..., : 2 * x.shape[-2], : 2 * x.shape[-1]]
        return _ConvTransposeSame2.apply(x, self.weight, self.bias)


class VAE(nn.Module):
    r"""The paper's convolutional beta-VAE (raw decoder output, no sigmoid).

    Convention:
        Inputs are (B, C, H, W) in [0, 1] (binarized MNIST in the paper). :meth:`encode` gives
        the posterior mean and log-variance, :meth:`decode` the RAW decoder output (it can leave
        [0, 1]; the paper trains and evaluates it unclamped), and :meth:`forward` samples
        :math:`z = \mu + e^{\log\sigma^2 / 2}\,\epsilon` with :math:`\epsilon` drawn from
        ``generator`` (``sample=False`` uses :math:`z = \mu`). Flatten and reshape use
        TensorFlow's NHWC order, so dense weights are laid out as in the authors' code.

    Args:
        config: a :class:`VAEConfig`; the model keeps it as ``model.config``.

    Examples:
        >>> import torch
        >>> model = VAE(VAEConfig())
        >>> out = model(torch.rand(4, 1, 28, 28), generator=torch.Generator().manual_seed(0))
        >>> out.recon.shape, out.mean.shape
        (torch.Size([4, 1, 28, 28]), torch.Size([4, 2]))
        >>> model.sample(3).shape
        torch.Size([3, 1, 28, 28])
    """

    def __init__(self, config: Optional[VAEConfig] = None) -> None:
        super().__init__()
        config = VAEConfig() if config is None else config
        if not isinstance(config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(config).__name__}")
        self.config = config
        c = config
        e1, e2 = c.encoder_channels
        d1, d2 = c.decoder_channels
        s = c.encoded_size
        self.seed_size = c.image_size // 4
        self.encoder = nn.ModuleList(
            [
                nn.Conv2d(c.in_channels, e1, 3, stride=2),
                nn.Conv2d(e1, e2, 3, stride=2),
                nn.Linear(s * s * e2, 2 * c.latent_dim),
            ]
        )
        self.decoder = nn.ModuleList(
            [
                nn.Linear(c.latent_dim, self.seed_size * self.seed_size * d2),
                _SameConvTranspose2d(d2, d1, 2),
                _SameConvTranspose2d(d1, d2, 2),
                _SameConvTranspose2d(d2, c.in_channels, 1),
            ]
        )
        if c.init == "keras":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each of shape (B, latent_dim)."""
        c = self.config
        if x.dim() != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"x must have shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), got {tuple(x.shape)}"
            )
        # Channels-last (NHWC) activations: oneDNN's fast path on CPU, and the layout TensorFlow used.
        h = F.relu(self.encoder[0](x.contiguous(memory_format=torch.channels_last)))
        h = F.relu(self.encoder[1](h))
        h = h.permute(0, 2, 3, 1).flatten(1)  # NHWC flatten, as TensorFlow
        mean, logvar = self.encoder[2](h).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output of shape (B, C, H, W) for latent codes z of shape (B, latent_dim)."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must have shape (B, {self.config.latent_dim}), got {tuple(z.shape)}")
        s = self.seed_size
        h = F.relu(self.decoder[0](z))
        h = h.view(-1, s, s, self.config.decoder_channels[1]).permute(0, 3, 1, 2)  # NHWC reshape
        h = F.relu(self.decoder[1](h))
        h = F.relu(self.decoder[2](h))
        return self.decoder[3](h)

    @staticmethod
    def reparameterize(
        mean: torch.Tensor, logvar: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) drawn from ``generator``."""
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * eps

    def forward(
        self, x: torch.Tensor, generator: Optional[torch.Generator] = None, sample: bool = True
    ) -> VAEOutput:
        """Encode, draw z (or take the mean with ``sample=False``) and decode."""
        mean, logvar = self.encode(x)
        z = self.reparameterize(mean, logvar, generator) if sample else mean
        return VAEOutput(self.decode(z), mean, logvar, z)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Raw decoder outputs for ``n`` codes drawn from the prior N(0, I)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        p = next(self.parameters())
        z = torch.randn((n, self.config.latent_dim), generator=generator, dtype=p.dtype, device=p.device)
        return self.decode(z)

    def extra_repr(self) -> str:
        return f"config={self.config!r}"


def create_vae(name_or_config: Union[str, VAEConfig, Mapping[str, Any]] = "mnist-vae", **overrides: Any) -> VAE:
    """Build a :class:`VAE` from a registered name, a :class:`VAEConfig` or a config dict (timm-style).

    Args:
        name_or_config: a key of :data:`VAE_CONFIGS`, a config, or a dict as written by
            :meth:`VAEConfig.to_dict`.
        overrides: single config fields to change, e.g. ``latent_dim=8``.

    Returns:
        A freshly initialised model (seed it with :func:`torch.manual_seed` first).

    Examples:
        >>> create_vae().config.latent_dim
        2
        >>> create_vae("mnist-vae", latent_dim=16).config.latent_dim
        16
    """
    if isinstance(name_or_config, str):
        if name_or_config not in VAE_CONFIGS:
            raise ValueError(f"unknown VAE name {name_or_config!r}; expected one of {sorted(VAE_CONFIGS)}")
        config = VAE_CONFIGS[name_or_config]
    elif isinstance(name_or_config, VAEConfig):
        config = name_or_config
    elif isinstance(name_or_config, Mapping):
        config = VAEConfig.from_dict(name_or_config)
    else:
        raise TypeError(f"name_or_config must be a str, VAEConfig or dict, got {type(name_or_config).__name__}")
    if overrides:
        config = dataclasses.replace(config, **overrides)
    return VAE(config)
