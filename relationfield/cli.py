"""The ``relationfield`` command: one entry point, one subcommand per job.

Every subcommand is a small typed dataclass (tyro turns its fields and docstrings into flags and help
text, as nerfstudio's CLIs do), in :mod:`relationfield.commands` (the preprocessing stages' here, as
their configs live in :mod:`relationfield.preprocess`). The modules that do the work are imported inside
``main`` so that ``relationfield --help`` stays fast and a broken optional dependency only affects the
command that needs it.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Union

import tyro

from relationfield.commands.ask import Ask
from relationfield.commands.convert import ConvertTarget
from relationfield.commands.data import LabelGt, Synth
from relationfield.commands.demo import Demo
from relationfield.commands.doctor import Doctor
from relationfield.commands.evaluate import Eval
from relationfield.commands.export import ExportTarget
from relationfield.commands.query import Query
from relationfield.commands.render import Render
from relationfield.errors import UserError


def _preprocess_commands() -> dict[str, object]:
    """The preprocessing stages' configs with a ``main`` that runs them and prints their summary."""
    from relationfield.preprocess import embed, masks, relation_summary, relations

    @dataclass
    class Masks(masks.MasksConfig):
        """Segment the capture's frames with SAM's automatic mask generator (resumable; writes the
        preprocessing workspace's masks/, whose mask numbers are the Set-of-Mark tags)."""

        def main(self) -> None:
            print(masks.summary_text(masks.run_masks(self)))

    @dataclass
    class Relations(relations.RelationsConfig):
        """Ask a vision model (GPT-4o or any OpenAI-compatible server) to name the masked objects and the
        relations between them, through Set-of-Mark overlays (resumable; key from OPENAI_API_KEY only)."""

        def main(self) -> None:
            print(relation_summary.summary_text(relations.run_relations(self)))

    @dataclass
    class Embed(embed.EmbedConfig):
        """Embed the masks (CLIP crops, or the vision model's object names) and the relation texts
        (jina-embeddings-v3 by default) and write the label store that training reads."""

        def main(self) -> None:
            print(embed.summary_text(embed.run_embed(self)))

    return {"masks": Masks, "relations": Relations, "embed": Embed}


SUBCOMMANDS: dict[str, object] = {
    "demo": Demo,
    "synth": Synth,
    "label-gt": LabelGt,
    "convert": ConvertTarget,
    **_preprocess_commands(),
    "export": ExportTarget,
    "eval": Eval,
    "query": Query,
    "render": Render,
    "ask": Ask,
    "doctor": Doctor,
}


def quiet_known_library_warnings() -> None:
    """Hide warnings that nerfstudio and torch print on every run and that users can do nothing about
    (nerfstudio's camera indexing under torch 2.8, torch.jit.script's deprecation)."""
    warnings.filterwarnings(
        "ignore", message="Using a non-tuple sequence for multidimensional indexing", category=UserWarning
    )
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)


def entrypoint(argv: list | None = None) -> None:
    """Console entry point of ``relationfield``."""
    descriptions = {
        "export": "Export a trained run: the 3D scene graph, or the instance point cloud.",
        "convert": "Convert a 3RScan, ScanNet++ or Replica scan into a capture with depth and ground truth.",
    }
    choices = tuple(
        Annotated[Any, tyro.conf.subcommand(name=name, constructor=kind, description=descriptions.get(name))]
        for name, kind in SUBCOMMANDS.items()
    )
    command = tyro.cli(
        Union[choices],  # type: ignore[valid-type]  # noqa: UP007
        args=argv,
        description="RelationField: relations and 3D scene graphs from radiance fields.",
    )
    run_command(command)


def run_command(command: Any) -> None:
    """``command.main()``: a user error is one line on stderr and exit status 2, Ctrl-C exit status 130."""
    quiet_known_library_warnings()
    try:
        command.main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; finished work is kept on disk", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
