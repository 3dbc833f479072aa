"""LocalPhaseConfig: every option of the local-phase loss, validated once, and its presets.

:func:`~stftblur.losses.local_phase_loss`, :class:`~stftblur.losses.LocalPhaseLoss`,
:class:`~stftblur.losses.FourierLoss`, the VAE objective and the ``stftblur`` command line take
their options from this one frozen dataclass: the option names, defaults, choices and checks
live here and nowhere else. A new option is one field, its check in :meth:`_validate`, and its
use in the loss.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Union

import torch

from stftblur._checks import check_choice, check_positive_float, check_positive_int
from stftblur.transforms import WINDOWS, WindowSpec, normalize_window

__all__ = [
    "AGGREGATES",
    "FREQUENCY_WEIGHTINGS",
    "LocalPhaseConfig",
    "PHASE_DISTANCES",
    "PRESETS",
    "TRANSFORMS",
    "WINDOWS",
]

WeightSpec = Union[str, torch.Tensor]

#: How the phases of two coefficients are compared.
PHASE_DISTANCES = ("wrapped", "raw", "cosine")
#: The weight of each coefficient.
FREQUENCY_WEIGHTINGS = ("linear", "product", "none")
#: How the coefficients of one image are combined.
AGGREGATES = ("mean", "sum")
#: The transform: the 2-D STFT, or the authors' 1-D FFT along patch rows.
TRANSFORMS = ("2d", "rows")


@dataclasses.dataclass(frozen=True, eq=False)
class LocalPhaseConfig:
    r"""The options of the local-phase loss (everything but the batch ``reduction``).

    Convention:
        Frozen and validated on construction: a config that exists is valid (a tensor window
        or weighting is checked against the coefficient grid when the loss first sees an
        image). ``window=None`` is the one spelling of "no window" (a boxcar); ``"none"`` is
        accepted where text is needed (command line, JSON) and stored as ``None``.
        :meth:`replace` returns a validated copy with some options changed, :meth:`to_dict`
        the options as keyword arguments, :meth:`from_preset` the presets of :data:`PRESETS`.
        Two configs are equal when every option is (tensors by value).

    Args:
        window_size: STFT window side; None for one window over the whole image (global DFT).
        stride: step between windows.
        phase_weight: :math:`\lambda`, the weight of the phase term.
        amplitude_weight: :math:`\alpha`, the weight of the amplitude term.
        frequency_weighting: ``"linear"``, ``"product"``, ``"none"`` or a tensor broadcast
            against the (P, Q) coefficient grid.
        phase_distance: ``"wrapped"``, ``"raw"`` or ``"cosine"``.
        window: ``"hann"`` (periodic), ``"sqrt-hann"``, ``None`` (no window) or a tensor; see
            :func:`stftblur.make_window`.
        aggregate: ``"mean"`` | ``"sum"`` over the coefficients of one image.
        normalized: divide the transform by the window's sum (amplitudes in units of pixel
            intensity; :func:`stftblur.stft2d` is unnormalised by default, like the paper's
            formula).
        transform: ``"2d"`` (:func:`stftblur.stft2d`) or ``"rows"`` (the authors' code: a 1-D
            FFT along the first ``window_size // 2`` rows of every un-windowed patch, first
            ``window_size // 2`` frequencies).
        phase_offset: :math:`\delta`, added to the real part before taking angles (``"raw"``).
        eps: amplitude below which the phase gradient is tapered.

    Examples:
        >>> cfg = LocalPhaseConfig(window_size=8)
        >>> cfg.window_size, cfg.stride, cfg.window
        (8, 4, 'hann')
        >>> cfg.replace(window="none").window is None
        True
        >>> LocalPhaseConfig.from_preset("paper-code").transform
        'rows'
        >>> LocalPhaseConfig(phase_distance="unwrapped")
        Traceback (most recent call last):
        ...
        ValueError: phase_distance must be one of ('wrapped', 'raw', 'cosine'), got 'unwrapped'
    """

    window_size: Optional[int] = 16
    stride: int = 4
    phase_weight: float = 3.0
    amplitude_weight: float = 1.0
    frequency_weighting: WeightSpec = "linear"
    phase_distance: str = "wrapped"
    window: WindowSpec = "hann"
    aggregate: str = "mean"
    normalized: bool = True
    transform: str = "2d"
    phase_offset: float = 0.0
    eps: float = 1e-4

    #: The allowed values of the options that take a name (a tensor is also allowed for
    #: ``window`` and ``frequency_weighting``).
    CHOICES: ClassVar[Mapping[str, Tuple[str, ...]]] = types.MappingProxyType(
        {
            "frequency_weighting": FREQUENCY_WEIGHTINGS,
            "phase_distance": PHASE_DISTANCES,
            "window": WINDOWS,
            "aggregate": AGGREGATES,
            "transform": TRANSFORMS,
        }
    )

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if self.window_size is not None:
            check_positive_int(self.window_size, "window_size")
        check_positive_int(self.stride, "stride")
        for name in ("phase_weight", "amplitude_weight", "phase_offset"):
            check_positive_float(getattr(self, name), name, allow_zero=True)
        check_positive_float(self.eps, "eps")
        if not isinstance(self.frequency_weighting, torch.Tensor):
            check_choice(self.frequency_weighting, "frequency_weighting", FREQUENCY_WEIGHTINGS)
        check_choice(self.phase_distance, "phase_distance", PHASE_DISTANCES)
        object.__setattr__(self, "window", normalize_window(self.window))
        check_choice(self.aggregate, "aggregate", AGGREGATES)
        if not isinstance(self.normalized, bool):
            raise TypeError(f"normalized must be a bool, got {type(self.normalized).__name__}")
        check_choice(self.transform, "transform", TRANSFORMS)
        if self.transform == "rows" and self.window_size is not None and self.window_size < 2:
            raise ValueError(f"transform='rows' needs window_size >= 2, got {self.window_size}")

    # ------------------------------------------------------------------ construction

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        """The option names, in declaration order.

        Examples:
            >>> LocalPhaseConfig.field_names()[:3]
            ('window_size', 'stride', 'phase_weight')
        """
        return _FIELD_NAMES

    def replace(self, **changes: Any) -> "LocalPhaseConfig":
        """A validated copy with ``changes`` applied; unknown names are a :class:`TypeError`.

        Examples:
            >>> LocalPhaseConfig().replace(stride=8).stride
            8
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise TypeError(f"unknown local-phase options {unknown}; known: {', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LocalPhaseConfig":
        """The configuration of :data:`PRESETS` ``[name]``, with single options overridden.

        Examples:
            >>> LocalPhaseConfig.from_preset("paper-text", window_size=8).window_size
            8
        """
        check_choice(name, "preset", tuple(PRESETS))
        return cls().replace(**{**PRESETS[name], **overrides})

    @classmethod
    def fourier(cls, **overrides: Any) -> "LocalPhaseConfig":
        """The global Fourier loss: one window over the whole image, no analysis window, equal
        phase and amplitude weights (Fuoli et al. 2021; the "DFT+SSIM" row of the paper).

        Examples:
            >>> LocalPhaseConfig.fourier().window_size is None
            True
        """
        base = cls(window_size=None, window=None, phase_weight=1.0)
        fixed = [k for k, v in overrides.items()
                 if (k == "window_size" and v is not None) or (k == "window" and normalize_window(v) is not None)]
        if fixed:
            raise TypeError(f"the Fourier loss has one window over the whole image and no analysis window; "
                            f"{', '.join(fixed)} cannot be set")
        return base.replace(**overrides)

    # ------------------------------------------------------------------ views

    def to_dict(self) -> Dict[str, Any]:
        """The options as keyword arguments (``LocalPhaseConfig(**c.to_dict()) == c``).

        Examples:
            >>> LocalPhaseConfig().to_dict()["window"]
            'hann'
        """
        return {name: getattr(self, name) for name in self.field_names()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LocalPhaseConfig):
            return NotImplemented
        for name in self.field_names():
            a, b = getattr(self, name), getattr(other, name)
            if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
                if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                        and torch.equal(a, b)):
                    return False
            elif a != b:
                return False
        return True

    def __hash__(self) -> int:
        return hash(tuple(id(v) if isinstance(v, torch.Tensor) else v for v in self.to_dict().values()))

    def __repr__(self) -> str:
        return f"LocalPhaseConfig({format_options(self.to_dict())})"


# The field names, computed once: torch.compile traces a config built inside a compiled function
# (the functional loss with single options), and Dynamo handles dataclasses.fields() only on
# instances, not on the class.
_FIELD_NAMES: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(LocalPhaseConfig))


def format_options(options: Mapping[str, Any]) -> str:
    """``name=value`` pairs, tensors as their shape (for reprs)."""
    return ", ".join(
        f"{k}={v!r}" if not isinstance(v, torch.Tensor) else f"{k}=<tensor {tuple(v.shape)}>" for k, v in options.items()
    )


#: Named configurations: the options each preset changes from :class:`LocalPhaseConfig`'s defaults.
PRESETS: Mapping[str, Mapping[str, Any]] = types.MappingProxyType(
    {
        # Section 3.1 of the paper, read literally: 2-D STFT with a Hann window, linear frequency
        # weighting, phase weighted higher than amplitude (lambda > 1; the released checkpoint's
        # 0.9 : 0.1 ratio), raw phase difference, coefficients summed.
        "paper-text": types.MappingProxyType(
            dict(
                window_size=16,
                stride=4,
                phase_weight=0.9,
                amplitude_weight=0.1,
                frequency_weighting="linear",
                phase_distance="raw",
                window="hann",
                aggregate="sum",
                normalized=False,
                transform="2d",
                phase_offset=0.0,
            )
        ),
        # Exactly what the authors' released code computes (author-code-notes.md).
        "paper-code": types.MappingProxyType(
            dict(
                window_size=16,
                stride=4,
                phase_weight=0.9,
                amplitude_weight=0.1,
                frequency_weighting="product",
                phase_distance="raw",
                window=None,
                aggregate="sum",
                normalized=False,
                transform="rows",
                phase_offset=1e-6,
            )
        ),
        # This project's defaults (see docs/losses.md for why).
        "default": types.MappingProxyType({}),
    }
)


def options_signature(leading: Tuple[inspect.Parameter, ...], trailing: Tuple[inspect.Parameter, ...] = (),
                      defaults: Optional[LocalPhaseConfig] = None, exclude: Tuple[str, ...] = ()) -> inspect.Signature:
    """A signature listing the options as keyword-only parameters with their defaults, for
    functions and modules that take ``**options`` (so that ``help()`` and the API reference
    show every option)."""
    defaults = defaults or LocalPhaseConfig()
    params = list(leading)
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value)
        for name, value in defaults.to_dict().items()
        if name not in exclude
    ]
    params += list(trailing)
    return inspect.Signature(params)
