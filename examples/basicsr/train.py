"""Train a BasicSR model with stftblur's LocalPhaseLoss, validated with PSNR and LPC-SI.

    python examples/basicsr/train.py -opt examples/basicsr/train_local_phase_x2.yml
    python examples/basicsr/train.py -opt <options.yml> --auto_resume
    python -m torch.distributed.run --nproc_per_node 4 examples/basicsr/train.py -opt <options.yml> --launcher pytorch

The pattern of Real-ESRGAN's ``train.py``: import what registers the extra components (here
``stftblur.integrations.basicsr``: ``LocalPhaseLoss`` in BasicSR's ``LOSS_REGISTRY`` and
``calculate_lpcsi`` in its ``METRIC_REGISTRY``), then hand over to BasicSR's ``train_pipeline``,
which takes BasicSR's own command-line options (``-opt``, ``--launcher``, ``--auto_resume``,
``--debug``, ``--force_yml``). BasicSR's ``root_path`` is the current folder: the run is written
to ``experiments/<name>/`` (models, training states, the ``train_<name>_<time>.log`` log) and
``tb_logger/`` below it, and ``--auto_resume`` looks there.

BasicSR's ``SRModel`` has one pixel-loss slot (``pixel_opt``). ``LocalPhaseSRModel`` below
(``model_type: LocalPhaseSRModel``) adds a second, ``local_phase_opt``, so that the objective is
``pixel_opt + local_phase_opt`` (L1 plus a small weight of LocalPhaseLoss, as the restoration
benchmark of docs/restoration.md trains) and both terms are logged. With ``model_type: SRModel``
``LocalPhaseLoss`` can also be the ``pixel_opt`` itself.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import stftblur.integrations.basicsr  # noqa: F401  (registers LocalPhaseLoss and calculate_lpcsi)
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.train import train_pipeline
from basicsr.utils.registry import MODEL_REGISTRY


@MODEL_REGISTRY.register()
class LocalPhaseSRModel(SRModel):
    """BasicSR's SRModel with a second loss, ``train: local_phase_opt``, added to ``pixel_opt``."""

    def init_training_settings(self) -> None:
        super().init_training_settings()
        opt = self.opt["train"].get("local_phase_opt")
        self.cri_local_phase = build_loss(opt).to(self.device) if opt else None

    def optimize_parameters(self, current_iter: int) -> None:
        if self.cri_local_phase is None:
            super().optimize_parameters(current_iter)
            return
        if self.cri_perceptual is not None:
            raise ValueError("LocalPhaseSRModel combines pixel_opt and local_phase_opt; perceptual_opt is not supported")
        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        terms = OrderedDict()
        if self.cri_pix is not None:
            terms["l_pix"] = self.cri_pix(self.output, self.gt)
        terms["l_local_phase"] = self.cri_local_phase(self.output, self.gt)
        sum(terms.values()).backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(terms)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)


if __name__ == "__main__":
    train_pipeline(os.getcwd())
