"""RelationField's pipeline: nerfstudio's VanillaPipeline that gives the model the viewer's query panel.

The model imports no GUI code; the pipeline builds :class:`relationfield.viewer.RelationViewerControls`
once the model exists and sets it as ``model.viewer_controls``. nerfstudio's viewer then finds the
panel's elements by walking the pipeline's ``nn.Module`` attributes, under
"Custom Elements/model/viewer_controls/". Runs saved with a plain ``VanillaPipelineConfig`` still load
(queries, export, the viewer) but without the panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch.amp import GradScaler

from relationfield.viewer import RelationViewerControls


@dataclass
class RelationFieldPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline whose model carries RelationField's viewer panel."""

    _target: type = field(default_factory=lambda: RelationFieldPipeline)


class RelationFieldPipeline(VanillaPipeline):
    """VanillaPipeline that sets the viewer's query panel on the model after building it."""

    config: RelationFieldPipelineConfig

    def __init__(
        self,
        config: RelationFieldPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: GradScaler | None = None,
    ) -> None:
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        # On the model (not the pipeline) so the GUI path stays "model/viewer_controls"; the panel is an
        # nn.Module without parameters, so the checkpoint's state_dict is unchanged.
        self.model.viewer_controls = RelationViewerControls()
