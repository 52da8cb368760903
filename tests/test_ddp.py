"""RelationField under torch DDP, as `ns-train relationfield --machine.num-devices N` runs it, on 2 CPU processes.

nerfstudio 1.1.5 cannot launch DDP without CUDA (its `_distributed_worker` asserts CUDA), and its pipeline wraps
the model as `DDP(model, device_ids=[local_rank])` and calls `dist.barrier(device_ids=[local_rank])`, which a CPU
module and the gloo backend refuse. So the test starts the processes itself (gloo), builds our pipeline with
world size 2 and each process's rank, and lets nerfstudio's pipeline code wrap the model with `device_ids=None`
(the one argument CPU DDP needs changed). A few optimisation steps follow; the ranks must have drawn different
batches and end with identical parameters, and the wrapped model's checkpoint must load as a single-device run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
WORLD_SIZE = 2
STEPS = 3


def _cpu_ddp(pipeline_module) -> None:
    """nerfstudio's pipeline module with DDP and barrier calls that a CPU module on gloo accepts."""
    from types import SimpleNamespace

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    class CpuDDP(DistributedDataParallel):
        def __init__(self, module, device_ids=None, **kwargs):
            super().__init__(module, device_ids=None, **kwargs)

    pipeline_module.DDP = CpuDDP
    pipeline_module.dist = SimpleNamespace(barrier=lambda device_ids=None: dist.barrier())


def _worker(rank: int, capture: str, labels: str, out: str, init_file: str) -> None:
    import torch.distributed as dist
    from nerfstudio.engine.optimizers import Optimizers
    from nerfstudio.pipelines import base_pipeline

    from relationfield.config import lite_run_config

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    _cpu_ddp(base_pipeline)
    config = lite_run_config(Path(capture), Path(labels), Path(out) / "runs", STEPS, device="cpu")
    from nerfstudio.scripts.train import _set_random_seed

    _set_random_seed(config.machine.seed + rank)  # as nerfstudio's train_loop seeds each rank; DDP syncs rank 0's
    pipeline = config.pipeline.setup(device="cpu", test_mode="val", world_size=WORLD_SIZE, local_rank=rank)
    assert isinstance(pipeline._model, torch.nn.parallel.DistributedDataParallel)
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
    batches = []
    next_train = pipeline.datamanager.next_train

    def recorded(step):
        ray_bundle, batch = next_train(step)
        batches.append(hashlib.sha1(batch["indices"].numpy().tobytes()).hexdigest())
        return ray_bundle, batch

    pipeline.datamanager.next_train = recorded
    torch.save({k: v.detach().clone() for k, v in pipeline.state_dict().items()}, Path(out) / f"initial{rank}.pt")
    for step in range(STEPS):
        optimizers.zero_grad_all()
        _, losses, _ = pipeline.get_train_loss_dict(step)
        sum(losses.values()).backward()
        optimizers.optimizer_step_all()
    state = {k: v.detach().clone() for k, v in pipeline.state_dict().items()}
    torch.save(state, Path(out) / f"state{rank}.pt")
    seed = pipeline.datamanager.train_pixel_sampler.pair_sampler.generator.initial_seed()
    (Path(out) / f"batches{rank}.json").write_text(json.dumps({"batches": batches, "pair_seed": seed}))
    dist.destroy_process_group()


def test_two_ranks_draw_different_batches_and_end_identical(synth_capture, labels_dir, tmp_path):
    import torch.multiprocessing as mp

    from relationfield.config import lite_run_config

    args = (str(synth_capture), str(labels_dir), str(tmp_path), str(tmp_path / "init"))
    mp.start_processes(_worker, args=args, nprocs=WORLD_SIZE, join=True, start_method="spawn")
    drawn = [json.loads((tmp_path / f"batches{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert all(a != b for a, b in zip(*(d["batches"] for d in drawn))), "the ranks drew the same batch"
    assert [d["pair_seed"] for d in drawn] == [0, 1]  # the pair sampler is seeded by rank, not only the images
    states = [torch.load(tmp_path / f"state{r}.pt") for r in range(WORLD_SIZE)]
    heads = [k for k in states[0] if "relation_head" in k or "semantic_head" in k or "instance_head" in k]
    assert heads and all(torch.equal(states[0][k], states[1][k]) for k in states[0]), "parameters differ"
    initial = torch.load(tmp_path / "initial0.pt")
    assert any(not torch.equal(initial[k], states[0][k]) for k in heads), "the steps changed no head parameter"
    # the DDP-wrapped model's checkpoint (keys prefixed "_model.module.") loads into a single-device pipeline
    assert any(k.startswith("_model.module.") for k in states[0])
    single = lite_run_config(synth_capture, labels_dir, tmp_path / "single", 1, device="cpu").pipeline.setup(
        device="cpu", test_mode="val"
    )
    single.load_pipeline(states[0], step=STEPS)
    loaded = single.state_dict()
    assert all(torch.equal(loaded[k.replace("module.", "", 1)], v) for k, v in states[0].items() if k in heads)
