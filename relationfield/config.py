"""Method presets registered with nerfstudio (entry point ``nerfstudio.method_configs``).

* ``relationfield``: paper scale, for a GPU (30k steps, 4096 rays, large hash grids, mixed precision).
* ``relationfield-lite``: small hash grids and batches; trains on a 2-core CPU.

Both choose the CPU by themselves when no GPU is present. nerfstudio imports this module for every
``ns-*`` command, so it stays light: it imports nerfstudio's config classes and our model, data manager
and pipeline (torch, nerfstudio and its viewer's elements only; encoders, SAM, CLIP and HDBSCAN are
imported where they are used).
Importing it also lets ``torch.load`` read nerfstudio checkpoints (see :mod:`relationfield.compat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from relationfield.compat import allow_nerfstudio_checkpoints
from relationfield.datamanager import RelationFieldDataManagerConfig
from relationfield.devices import default_device
from relationfield.heads import GridSpec
from relationfield.model import RelationFieldModelConfig
from relationfield.pipeline import RelationFieldPipelineConfig

allow_nerfstudio_checkpoints()


RELATION_OFFSET_FREQUENCIES = 6
"""Octaves of Fourier features of z - x in both presets (the model's default, 0, keeps older runs loadable)."""


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """nerfstudio's Adam with torch's fused kernel: the same updates up to float rounding, in one pass over all of a
    group's tensors (a lite step's four Adam steps took about 8 ms on a 2-core CPU, fused about 2 ms)."""

    fused: bool = True
    """Use torch's fused Adam (CPU and CUDA; it works with the mixed-precision grad scaler)."""


def _optimizers(max_steps: int, lr: float = 1e-2) -> dict:
    def adam(rate: float, final: float, steps: int) -> dict:
        return {
            "optimizer": FusedAdamOptimizerConfig(lr=rate, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=final, max_steps=steps),
        }

    return {
        "proposal_networks": adam(lr, 1e-4, 200000),
        "fields": adam(lr, 1e-4, 200000),
        "relationfield_heads": adam(lr, 1e-3, max_steps),
        "camera_opt": adam(1e-3, 1e-4, 5000),
    }


def relationfield_config() -> TrainerConfig:
    """Paper-scale preset (GPU)."""
    steps = 30000
    return TrainerConfig(
        method_name="relationfield",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=steps,
        mixed_precision=True,  # nerfstudio's trainer turns it off on CPU
        machine=MachineConfig(device_type=default_device()),
        pipeline=RelationFieldPipelineConfig(
            datamanager=RelationFieldDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
                images_per_batch=16,
            ),
            model=RelationFieldModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
                relation_offset_frequencies=RELATION_OFFSET_FREQUENCIES,
            ),
        ),
        optimizers=_optimizers(steps),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


LITE_GRID = GridSpec(num_levels=8, min_res=16, max_res=256, log2_hashmap_size=15, features_per_level=2, hidden_dim=64)


def relationfield_lite_config() -> TrainerConfig:
    """Small preset that trains on a 2-core CPU in minutes (synthetic scenes, tests, the demo)."""
    steps = 2000
    return TrainerConfig(
        method_name="relationfield-lite",
        steps_per_eval_batch=500,
        steps_per_eval_image=100000,
        steps_per_eval_all_images=1000000,
        steps_per_save=500,
        max_num_iterations=steps,
        mixed_precision=True,
        machine=MachineConfig(device_type=default_device()),
        pipeline=RelationFieldPipelineConfig(
            datamanager=RelationFieldDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
                images_per_batch=8,
                depth_supervision=True,
            ),
            model=RelationFieldModelConfig(
                eval_num_rays_per_chunk=1 << 12,
                average_init_density=0.01,
                implementation="torch",
                num_levels=8,
                max_res=512,
                log2_hashmap_size=16,
                hidden_dim=32,
                hidden_dim_color=32,
                # 16 field samples train the demo as well as 24 (223 s against 254 s); 32 + 16 proposal
                # samples are faster still at the same demo recalls, but the tests' one-thread tiny run then
                # falls under its bars (reference learning with 16 field samples, a floor query with 24):
                # that run's Reference R@1 spreads from 0.19 to 0.49 over seeds whatever the counts
                num_proposal_samples_per_ray=(64, 32),
                num_nerf_samples_per_ray=16,
                proposal_net_args_list=[
                    {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 64, "use_linear": False},
                    {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 128, "use_linear": False},
                ],
                proposal_warmup=500,
                camera_optimizer=CameraOptimizerConfig(mode="off"),
                semantic_grid=LITE_GRID,
                instance_grid=LITE_GRID,
                relation_grid=LITE_GRID,
                feature_samples=4,
                relation_offset_frequencies=RELATION_OFFSET_FREQUENCIES,
            ),
        ),
        optimizers=_optimizers(steps),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


def lite_run_config(
    data: Path, labels_dir: Path, output_dir: Path, steps: int, device: str | None = None
) -> TrainerConfig:
    """relationfield-lite set up for a scripted run: no viewer, a learning-rate schedule fitted to
    ``steps``, and one checkpoint at the end (the demo and the tests train with this)."""
    config = relationfield_lite_config()
    config.pipeline.datamanager.data = Path(data)
    config.pipeline.datamanager.labels_dir = Path(labels_dir)
    config.output_dir = Path(output_dir)
    config.vis = "tensorboard"
    config.max_num_iterations = steps
    config.steps_per_save = steps
    config.optimizers = _optimizers(steps)
    config.machine.device_type = device or default_device()
    return config


relationfield_method = MethodSpecification(
    config=relationfield_config(),
    description="RelationField: open-vocabulary objects, instances and pairwise relations (paper scale, GPU).",
)

relationfield_lite_method = MethodSpecification(
    config=relationfield_lite_config(),
    description="RelationField with small hash grids and batches; trains on a CPU in minutes.",
)
