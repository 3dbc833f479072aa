"""A small deblurring benchmark: a timm encoder with a light decoder, trained on skimage photographs.

The library behind ``evals/restoration.py``. Sharp grayscale crops of scikit-image's bundled
photographs are degraded with a Gaussian blur (kornia) and mild Gaussian noise; a residual
U-Net-like network (:class:`RestorationNet`, a ``timm`` encoder created with
``features_only=True, pretrained=False`` and a light upsampling decoder) learns to undo it with
one of :data:`LOSSES`; the restored held-out photographs are written as PNG files and scored
with :func:`stftblur.evaluate.evaluate_folder`, the code path of ``stftblur eval``.

Nothing here downloads anything: the encoder is randomly initialised and the photographs ship
with scikit-image. ``timm`` and ``focal_frequency_loss`` are imported only when needed (they
are the ``vision`` and ``bench`` extras).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stftblur.losses import LocalPhaseLoss, SSIMLoss

PathLike = Union[str, Path]

#: Photographs of ``skimage.data`` used for training crops (all load without a download).
TRAIN_PHOTOS: Tuple[str, ...] = (
    "astronaut",
    "brick",
    "chelsea",
    "coffee",
    "grass",
    "gravel",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
)
#: Photographs held out for testing; never seen in training or weight calibration.
TEST_PHOTOS: Tuple[str, ...] = ("camera", "clock", "coins", "text")
#: The training objectives compared by the benchmark: L1 alone, and L1 plus one other term.
LOSSES: Tuple[str, ...] = ("l1", "l1_ssim", "l1_ffl", "l1_local_phase")
#: What each auxiliary term is (its weight comes from :func:`calibrate_weights`).
AUX_TERMS: Dict[str, str] = {
    "l1_ssim": "stftblur.SSIMLoss() (1 - SSIM, Gaussian 11x11, sigma 1.5, valid padding)",
    "l1_ffl": "focal_frequency_loss.FocalFrequencyLoss() (loss_weight=1, alpha=1)",
    "l1_local_phase": "stftblur.LocalPhaseLoss() (default config: 16x16 periodic Hann, stride 4, wrapped phase, 3:1)",
}


@dataclasses.dataclass
class RestorationConfig:
    """Everything that defines one benchmark run except the loss, the seed and the device.

    Convention:
        Images are grayscale in [0, 1], shape (B, 1, H, W): RGB photographs are converted with
        ``skimage.color.rgb2gray`` (ITU-R BT.709 luma) and every image is quantised to 8 bits,
        so a PNG written and read back is exactly the tensor. A degraded image is
        ``quantise(clip(blur(x, sigma) + noise_std * N(0, 1)))`` with ``sigma`` uniform in
        ``sigma_range`` and ``noise_std`` uniform in ``noise_range``, drawn per image.
    """

    encoder: str = "mobilenetv3_small_100"
    decoder_width: int = 32
    crop_size: int = 64
    batch_size: int = 16
    steps: int = 300
    lr: float = 2e-3
    sigma_range: Tuple[float, float] = (0.5, 2.5)
    noise_range: Tuple[float, float] = (0.0, 0.02)
    test_size: int = 128
    test_crops_per_photo: int = 4
    test_seed: int = 1234
    calibration_crops: int = 64
    train_photos: Tuple[str, ...] = TRAIN_PHOTOS
    test_photos: Tuple[str, ...] = TEST_PHOTOS
    weights: Optional[Dict[str, float]] = None

    @property
    def kernel_size(self) -> int:
        """Side of the Gaussian kernel: 2 * ceil(3 * max sigma) + 1 (17 for sigma up to 2.5)."""
        return 2 * math.ceil(3 * self.sigma_range[1]) + 1

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly (tuples as lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RestorationConfig":
        """Inverse of :meth:`to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
        return cls(**kw)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_photo(name: str) -> torch.Tensor:
    """A photograph of ``skimage.data`` as a float32 (1, H, W) tensor in [0, 1], 8-bit exact.

    RGB is converted to gray with ``skimage.color.rgb2gray`` (BT.709 luma), alpha dropped,
    boolean images mapped to {0, 1}; the result is rounded to multiples of 1/255.

    Examples:
        >>> x = load_photo("camera")
        >>> x.shape, x.dtype, bool((x * 255 == (x * 255).round()).all())
        (torch.Size([1, 512, 512]), torch.float32, True)
    """
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):  # e.g. stereo pairs
        arr = arr[0]
    arr = img_as_float(arr)
    if arr.ndim == 3:
        arr = rgb2gray(arr[..., :3])
    arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0) / 255.0
    return torch.from_numpy(arr.astype(np.float32))[None]


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to multiples of 1/255 (what an 8-bit PNG stores).

    Examples:
        >>> quantize(torch.tensor([-0.1, 0.5, 1.2]))
        tensor([0.0000, 0.5020, 1.0000])
    """
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


def degrade(
    sharp: torch.Tensor, sigma: torch.Tensor, noise_std: torch.Tensor, noise: Optional[torch.Tensor] = None, kernel_size: int = 17
) -> torch.Tensor:
    """Gaussian blur (per-image sigma, reflect borders) plus Gaussian noise, clipped and quantised.

    Convention:
        ``kornia.filters.gaussian_blur2d`` with an isotropic ``sigma`` per image and a
        ``kernel_size`` x ``kernel_size`` kernel, then ``noise_std * noise`` added (``noise``
        standard normal, drawn with ``torch.randn`` when None), then :func:`quantize`.

    Args:
        sharp: (B, C, H, W) images in [0, 1].
        sigma: (B,) blur standard deviations in pixels.
        noise_std: (B,) noise standard deviations.
        noise: optional (B, C, H, W) standard normal samples.
        kernel_size: odd side of the blur kernel.

    Examples:
        >>> x = torch.zeros(1, 1, 9, 9); x[..., 4, 4] = 1.0
        >>> y = degrade(x, torch.tensor([1.0]), torch.tensor([0.0]), kernel_size=9)
        >>> y[0, 0, 4, 4] * 255  # the blurred impulse's peak (0.161) in 8-bit steps
        tensor(41.)
    """
    import kornia

    b = sharp.shape[0]
    s = sigma.to(sharp).view(b, 1).expand(b, 2).contiguous()
    blurred = kornia.filters.gaussian_blur2d(sharp, (kernel_size, kernel_size), s, border_type="reflect")
    if noise is None:
        noise = torch.randn_like(sharp)
    return quantize(blurred + noise_std.to(sharp).view(b, 1, 1, 1) * noise)


def _random_crops(photo: torch.Tensor, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` crops of ``size`` x ``size`` at positions drawn with ``generator`` (no augmentation)."""
    _, h, w = photo.shape
    ys = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([photo[:, y : y + size, x : x + size] for y, x in zip(ys, xs)])


def _draw_degradation(n: int, config: RestorationConfig, generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
    lo, hi = config.sigma_range
    nlo, nhi = config.noise_range
    sigma = lo + (hi - lo) * torch.rand(n, generator=generator)
    noise_std = nlo + (nhi - nlo) * torch.rand(n, generator=generator)
    return sigma, noise_std


@dataclasses.dataclass
class HeldOutSet:
    """The held-out images: sharp references, their degraded versions and how they were made."""

    names: List[str]
    sharp: torch.Tensor
    blurry: torch.Tensor
    sigma: List[float]
    noise_std: List[float]

    def describe(self) -> Dict[str, Any]:
        """Name, sigma and noise std of every test image (for the JSON report)."""
        return {n: {"sigma": s, "noise_std": v} for n, s, v in zip(self.names, self.sigma, self.noise_std)}


def make_test_set(config: RestorationConfig) -> HeldOutSet:
    """``test_crops_per_photo`` fixed crops of every test photograph, and their degraded versions.

    Everything is drawn from a generator seeded with ``config.test_seed``, so the test set does
    not depend on the training seed. Image names are ``<photo>_<k>.png``.

    Examples:
        >>> cfg = RestorationConfig(test_size=32, test_crops_per_photo=1, test_photos=("camera",))
        >>> ts = make_test_set(cfg)
        >>> ts.names, tuple(ts.blurry.shape)
        (['camera_0.png'], (1, 1, 32, 32))
    """
    g = torch.Generator().manual_seed(config.test_seed)
    names: List[str] = []
    crops: List[torch.Tensor] = []
    for photo in config.test_photos:
        c = _random_crops(load_photo(photo), config.test_crops_per_photo, config.test_size, g)
        crops.append(c)
        names += [f"{photo}_{k}.png" for k in range(c.shape[0])]
    sharp = torch.cat(crops)
    sigma, noise_std = _draw_degradation(sharp.shape[0], config, g)
    noise = torch.randn(sharp.shape, generator=g)
    blurry = degrade(sharp, sigma, noise_std, noise, config.kernel_size)
    return HeldOutSet(names, sharp, blurry, sigma.tolist(), noise_std.tolist())


class TrainSampler:
    """Random training batches: crops, flips (kornia.augmentation), then :func:`degrade`.

    Uses the global torch random generator (seed it with ``torch.manual_seed``): photograph
    choice, ``kornia.augmentation.RandomCrop`` (exact slicing), random horizontal and vertical
    flips, blur sigma, noise level and noise.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> sampler = TrainSampler(RestorationConfig(crop_size=32, batch_size=2, train_photos=("moon",)))
        >>> blurry, sharp = sampler.sample()
        >>> tuple(blurry.shape), tuple(sharp.shape)
        ((2, 1, 32, 32), (2, 1, 32, 32))
    """

    def __init__(self, config: RestorationConfig, photos: Optional[Sequence[torch.Tensor]] = None) -> None:
        import kornia.augmentation as K

        self.config = config
        self.photos = list(photos) if photos is not None else [load_photo(p) for p in config.train_photos]
        size = (config.crop_size, config.crop_size)
        self.crop = K.RandomCrop(size, cropping_mode="slice")
        self.flips = K.AugmentationSequential(K.RandomHorizontalFlip(p=0.5), K.RandomVerticalFlip(p=0.5))

    def sharp_batch(self, n: Optional[int] = None) -> torch.Tensor:
        """``n`` (default ``batch_size``) augmented sharp crops, shape (n, 1, crop, crop)."""
        n = self.config.batch_size if n is None else n
        idx = torch.randint(0, len(self.photos), (n,))
        parts = []
        for i in idx.unique().tolist():
            k = int((idx == i).sum())
            p = self.photos[i]
            parts.append(self.crop(p[None].expand(k, *p.shape)))
        return self.flips(torch.cat(parts))

    def sample(self, n: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(degraded, sharp) batch."""
        sharp = self.sharp_batch(n)
        sigma, noise_std = _draw_degradation(sharp.shape[0], self.config, None)
        return degrade(sharp, sigma, noise_std, None, self.config.kernel_size), sharp


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RestorationNet(nn.Module):
    r"""A timm encoder and a light decoder with skip connections that predicts a residual.

    ``output = input + decoder(encoder(input))``. The encoder is
    ``timm.create_model(encoder, features_only=True, pretrained=False, in_chans=C)`` (random
    initialisation; nothing is downloaded). The decoder starts from a 1x1 projection of the
    deepest feature map and, for every shallower feature map and finally the input itself,
    upsamples bilinearly to its size, concatenates it and applies a 3x3 conv + BatchNorm + ReLU
    (``width`` channels, twice that at the two deepest levels); a last 3x3 conv, initialised
    to zero, gives the residual, so an untrained network is the identity.

    Convention:
        Inputs in [0, 1]; the encoder sees ``(x - 0.5) / 0.25``. Any spatial size works (the
        decoder resizes to each skip's size); multiples of 32 avoid uneven resampling. The
        output is not clipped (clip before saving).

    Args:
        encoder: a timm model name that supports ``features_only``.
        in_channels: image channels.
        width: decoder channels.

    Examples:
        >>> net = RestorationNet("mobilenetv3_small_100")
        >>> x = torch.rand(2, 1, 32, 32)
        >>> torch.equal(net(x), x)  # zero-initialised residual
        True
    """

    def __init__(self, encoder: str = "mobilenetv3_small_100", in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model(encoder, features_only=True, pretrained=False, in_chans=in_channels)
        channels: List[int] = list(self.encoder.feature_info.channels())
        widths = [width * 2 if i >= len(channels) - 2 else width for i in range(len(channels))]
        self.project = nn.Conv2d(channels[-1], widths[-1], 1)
        blocks = []
        prev = widths[-1]
        for i in range(len(channels) - 2, -1, -1):
            blocks.append(_ConvBlock(prev + channels[i], widths[i]))
            prev = widths[i]
        self.blocks = nn.ModuleList(blocks)
        self.final = _ConvBlock(prev + in_channels, width)
        self.head = nn.Conv2d(width, in_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder((x - 0.5) / 0.25)
        y = self.project(features[-1])
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        y = self.final(torch.cat([y, x], 1))
        return x + self.head(y)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def aux_loss(name: str) -> Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The term added to L1 by loss ``name`` (None for ``"l1"``); see :data:`AUX_TERMS`.

    Examples:
        >>> aux_loss("l1_local_phase")
        LocalPhaseLoss(window_size=16, stride=4, phase_weight=3.0, amplitude_weight=1.0, frequency_weighting='linear', phase_distance='wrapped', window='hann', reduction='mean', aggregate='mean', normalized=True, transform='2d', phase_offset=0.0, eps=0.0001)
    """
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    if name == "l1":
        return None
    if name == "l1_ssim":
        return SSIMLoss()
    if name == "l1_ffl":
        from focal_frequency_loss import FocalFrequencyLoss

        return FocalFrequencyLoss()
    return LocalPhaseLoss()


class RestorationLoss(nn.Module):
    """``L1 + weight * aux``, with the value of each term kept for logging.

    Examples:
        >>> crit = RestorationLoss("l1_ssim", weight=0.5)
        >>> x = torch.rand(2, 1, 32, 32)
        >>> crit(x, x).item(), sorted(crit.last_terms)
        (0.0, ['aux', 'l1'])
    """

    def __init__(self, name: str, weight: float = 0.0) -> None:
        super().__init__()
        self.name = name
        self.weight = float(weight)
        self.aux = aux_loss(name)
        self.last_terms: Dict[str, float] = {}

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        l1 = F.l1_loss(output, target)
        terms = {"l1": l1}
        total = l1
        if self.aux is not None:
            terms["aux"] = self.aux(output, target)
            total = total + self.weight * terms["aux"]
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return total


def _round_sig(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits}g}")


def calibrate_weights(config: RestorationConfig, losses: Sequence[str] = LOSSES) -> Dict[str, float]:
    """The weight of each auxiliary term: L1 / aux on degraded vs sharp training crops.

    Convention:
        ``config.calibration_crops`` crops of the training photographs (drawn with a generator
        seeded with ``config.test_seed + 1``, so the weights do not depend on the training
        seed) are degraded as in training; each weight is mean L1 divided by the mean
        auxiliary loss between degraded and sharp crops, rounded to two significant digits.
        At the start of training (the network is the identity) every auxiliary term therefore
        contributes as much as L1 to the loss value. ``config.weights`` entries, when given,
        are used instead.

    Examples:
        >>> cfg = RestorationConfig(crop_size=32, calibration_crops=2, train_photos=("moon",))
        >>> sorted(calibrate_weights(cfg, ["l1", "l1_ssim"]))
        ['l1_ssim']
    """
    fixed = dict(config.weights or {})
    need = [n for n in losses if n != "l1" and n not in fixed]
    out = {n: float(fixed[n]) for n in losses if n in fixed}
    if not need:
        return out
    blurry, sharp = _calibration_batch(config)
    l1 = float(F.l1_loss(blurry, sharp))
    for n in need:
        aux = aux_loss(n)
        assert aux is not None
        out[n] = _round_sig(l1 / float(aux(blurry, sharp)))
    return out


def _calibration_batch(config: RestorationConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """(degraded, sharp) calibration crops of the training photographs, from a fixed generator."""
    g = torch.Generator().manual_seed(config.test_seed + 1)
    photos = [load_photo(p) for p in config.train_photos]
    idx = torch.randint(0, len(photos), (config.calibration_crops,), generator=g).tolist()
    sharp = torch.cat([_random_crops(photos[i], 1, config.crop_size, g) for i in idx])
    sigma, noise_std = _draw_degradation(sharp.shape[0], config, g)
    blurry = degrade(sharp, sigma, noise_std, torch.randn(sharp.shape, generator=g), config.kernel_size)
    return blurry, sharp


def gradient_ratios(config: RestorationConfig, weights: Dict[str, float]) -> Dict[str, float]:
    """||grad of weight * aux|| / ||grad of L1|| with respect to the output, at output = degraded input.

    On the calibration crops of :func:`calibrate_weights`, i.e. where training starts (the
    network is the identity): how strongly each weighted auxiliary term pulls on the output
    compared with L1, whereas the weights equalise the loss values.

    Examples:
        >>> cfg = RestorationConfig(crop_size=32, calibration_crops=2, train_photos=("moon",))
        >>> r = gradient_ratios(cfg, {"l1_ssim": 1.0})
        >>> list(r), r["l1_ssim"] > 0
        (['l1_ssim'], True)
    """
    blurry, sharp = _calibration_batch(config)

    def grad_norm(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
        x = blurry.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(x, sharp), x)
        return float(g.norm())

    base = grad_norm(F.l1_loss)
    out: Dict[str, float] = {}
    for name, w in weights.items():
        aux = aux_loss(name)
        if aux is not None:
            out[name] = w * grad_norm(aux) / base
    return out


# --------------------------------------------------------------------------------------------
# Training and restoration
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RestorationResult:
    """A trained model and how its training went."""

    model: RestorationNet
    loss: str
    seed: int
    weight: float
    seconds: float
    history: List[Dict[str, float]]


def train_restoration(
    config: RestorationConfig,
    loss: str,
    seed: int,
    weight: float = 0.0,
    device: Union[str, torch.device] = "cpu",
    log_every: int = 50,
    progress: Optional[Callable[[Dict[str, float]], None]] = None,
) -> RestorationResult:
    """Train a :class:`RestorationNet` for ``config.steps`` steps with one loss and one seed.

    Convention:
        ``torch.manual_seed(seed)`` before the model is built; the model's initialisation, the
        batches (:class:`TrainSampler`) and everything random in training then follow from the
        seed (bit-identical on the CPU with the same thread count). Adam with ``config.lr``,
        cosine decay to 5% of it over the run. The loss is :class:`RestorationLoss`
        (``weight`` is the auxiliary term's weight). ``seconds`` is the wall time of the
        training steps (data, forward, backward, update), model creation excluded.

    Args:
        config: the benchmark settings.
        loss: one of :data:`LOSSES`.
        seed: random seed.
        weight: weight of the auxiliary term (ignored for ``"l1"``).
        device: where to train.
        log_every: record the running loss terms every this many steps (and at the last).
        progress: called with each record.

    Returns:
        A :class:`RestorationResult` (model in eval mode, on ``device``).
    """
    device = torch.device(device)
    criterion = RestorationLoss(loss, weight)
    torch.manual_seed(seed)
    model = RestorationNet(config.encoder, 1, config.decoder_width).to(device)
    sampler = TrainSampler(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(s, config.steps) / max(1, config.steps)))
    )
    history: List[Dict[str, float]] = []
    acc: Dict[str, float] = {}
    count = 0
    model.train()
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        blurry, sharp = sampler.sample()
        blurry, sharp = blurry.to(device), sharp.to(device)
        total = criterion(model(blurry), sharp)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        for k, v in {"total": float(total.detach()), **criterion.last_terms}.items():
            acc[k] = acc.get(k, 0.0) + v
        count += 1
        if step % log_every == 0 or step == config.steps:
            rec = {"step": float(step), **{k: v / count for k, v in acc.items()}, "seconds": time.perf_counter() - start}
            if not all(math.isfinite(v) for v in rec.values()):
                raise FloatingPointError(f"non-finite loss at step {step}: {rec}")
            history.append(rec)
            if progress is not None:
                progress(rec)
            acc, count = {}, 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    model.eval()
    return RestorationResult(model, loss, seed, weight if loss != "l1" else 0.0, seconds, history)


@torch.no_grad()
def restore(model: nn.Module, blurry: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Run ``model`` (in eval mode) over ``blurry`` in batches; the result is quantised to 8 bits.

    Examples:
        >>> restore(nn.Identity(), torch.full((1, 1, 4, 4), 0.4)).unique()
        tensor([0.4000])
    """
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    out = [model(blurry[i : i + batch_size].to(device)).float().cpu() for i in range(0, blurry.shape[0], batch_size)]
    model.train(was_training)
    return quantize(torch.cat(out))


def write_pngs(images: torch.Tensor, folder: PathLike, names: Sequence[str]) -> Path:
    """Write (B, 1, H, W) images in [0, 1] as 8-bit grayscale PNG files ``folder/names[i]``.

    Examples:
        >>> import tempfile
        >>> d = write_pngs(torch.zeros(1, 1, 4, 4), tempfile.mkdtemp(), ["a.png"])
        >>> sorted(p.name for p in d.iterdir())
        ['a.png']
    """
    from PIL import Image

    if len(names) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(names)} names")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = (images.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    for a, name in zip(arr, names):
        Image.fromarray(a[0]).save(folder / name)
    return folder


def evaluate_restored(
    images_dir: PathLike, sharp_dir: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu"
) -> Dict[str, Any]:
    """PSNR, SSIM and LPC-SI of a folder against the sharp folder, as ``stftblur eval`` computes them.

    :func:`stftblur.evaluate.evaluate_folder` with metrics ``lpc_si, psnr, ssim`` (``lpc_si``
    alone when ``sharp_dir`` is None); returns the summary (count, mean, std, median, min, max
    per metric) and the per-image values. Raises :class:`RuntimeError` if a file is unreadable
    or unpaired.

    Examples:
        >>> import tempfile
        >>> d = write_pngs(torch.full((2, 1, 16, 16), 0.4), tempfile.mkdtemp(), ["a.png", "b.png"])
        >>> evaluate_restored(d)["summary"]["lpc_si"]["mean"]
        0.0
    """
    from stftblur.evaluate import evaluate_folder

    metrics = ("lpc_si",) if sharp_dir is None else ("lpc_si", "psnr", "ssim")
    report = evaluate_folder(images_dir, sharp_dir, metrics=metrics, device=device)
    if report.bad or report.unpaired_images:
        raise RuntimeError(f"evaluation of {images_dir} found problems: {report.bad + report.unpaired_images}")
    return {"summary": report.summary(), "per_image": {r.path: r.values for r in report.results}}


def plot_before_after(
    rows: Sequence[str],
    columns: Sequence[Tuple[str, PathLike]],
    path: PathLike,
    zoom: Optional[int] = None,
    values: Optional[Dict[str, Dict[str, Dict[str, float]]]] = None,
    row_labels: Optional[Sequence[str]] = None,
) -> Path:
    """A grid of images: one row per image name, one column per (title, folder).

    ``values[column title][image name]`` (e.g. PSNR and LPC-SI) are written under each image;
    ``row_labels`` replace the image names at the left.
    ``zoom`` shows only the central ``zoom`` x ``zoom`` pixels, enlarged without interpolation.
    Uses matplotlib's object API (no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(2.0 * len(columns), 2.15 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, name in enumerate(rows):
        for c, (title, folder) in enumerate(columns):
            ax = axes[r][c]
            img = np.asarray(Image.open(Path(folder) / name))
            if zoom is not None:
                h, w = img.shape[:2]
                y0, x0 = (h - zoom) // 2, (w - zoom) // 2
                img = img[y0 : y0 + zoom, x0 : x0 + zoom]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r] if row_labels is not None else name.rsplit(".", 1)[0], fontsize=8)
            v = (values or {}).get(title, {}).get(name)
            if v:
                ax.set_xlabel("  ".join(f"{k} {x:.3g}" for k, x in v.items()), fontsize=7)
    fig.savefig(path, dpi=110)
    return path
