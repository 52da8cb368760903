"""`ns-export scene-graph`: a subcommand added to nerfstudio's exporter, and nothing else changed.

nerfstudio 1.1.5 has no entry-point group for exporters: ``nerfstudio.scripts.exporter`` builds a fixed
``Commands`` union and its ``entrypoint()`` calls ``tyro.cli(Commands)``. Method plugins are loaded while that
module is still running its own imports (``eval_utils`` -> ``method_configs`` -> the plugins' entry points), so
:func:`install` runs before ``Commands`` exists and cannot edit it. It changes the class of the half-imported
module instead (Python allows a module's ``__class__`` to be a ``ModuleType`` subclass): attribute reads of
``entrypoint`` from outside the module, such as the ``ns-export`` console script's
``from nerfstudio.scripts.exporter import entrypoint``, get :func:`_entrypoint`, which offers nerfstudio's own
subcommands unchanged plus ``scene-graph`` (:class:`relationfield.commands.export.ExportSceneGraph`). The module's
namespace is untouched, so tyro resolves the stock subcommands' annotations as before.

Fail soft: when ``Commands`` is not the union described above (a future nerfstudio), :func:`_entrypoint` runs
nerfstudio's own ``entrypoint``. The shim acts only while the exporter is being imported, so no other ns-*
command sees it, and ``RELATIONFIELD_NS_EXPORT=0`` turns it off. ``relationfield export scene-graph`` is the
stable spelling.
"""

from __future__ import annotations

import os
import sys
import types
import typing
from typing import Any

EXPORTER = "nerfstudio.scripts.exporter"
SUBCOMMAND = "scene-graph"
OPT_OUT = "RELATIONFIELD_NS_EXPORT"

__all__ = ["EXPORTER", "OPT_OUT", "SUBCOMMAND", "extended_commands", "install"]


class _Exporter(types.ModuleType):
    """nerfstudio's exporter module, whose ``entrypoint`` seen from outside also offers ``scene-graph``."""

    def __getattribute__(self, name: str) -> Any:
        if name == "entrypoint":
            return _entrypoint
        return super().__getattribute__(name)


def install() -> bool:
    """Add ``scene-graph`` to ``ns-export`` when nerfstudio's exporter is being imported (True if added)."""
    module = sys.modules.get(EXPORTER)
    if os.environ.get(OPT_OUT, "1") == "0" or module is None or type(module) is not types.ModuleType:
        return False  # not ns-export, turned off, or installed already
    if "Commands" in vars(module):
        return False  # imported before us: the console script may hold its entrypoint already
    module.__class__ = _Exporter
    return True


def extended_commands(commands: Any) -> Any | None:
    """nerfstudio's ``Commands`` with ``scene-graph`` added, or None when it is not the expected
    ``FlagConversionOff[Union[Annotated[..., subcommand], ...]]``."""
    import tyro

    from relationfield.commands.export import ExportSceneGraph

    if typing.get_origin(commands) is not typing.Annotated:
        return None
    union, *markers = typing.get_args(commands)
    members = typing.get_args(union)
    if typing.get_origin(union) is not typing.Union or not members:
        return None
    # Each stock subcommand keeps the markers the union had (flag conversion off), so it parses as before;
    # scene-graph takes its flags as `relationfield export scene-graph` does (--all-pairs, not --all-pairs True).
    stock = [typing.Annotated[(member, *markers)] for member in members]
    ours = typing.Annotated[ExportSceneGraph, tyro.conf.subcommand(name=SUBCOMMAND)]
    return typing.Union[(*stock, ours)]  # noqa: UP007 (a union built at run time)


def _entrypoint() -> None:
    """ns-export with ``scene-graph``; nerfstudio's own entrypoint when its module is not as expected."""
    namespace = vars(sys.modules[EXPORTER])
    commands = extended_commands(namespace.get("Commands"))
    if commands is None:
        return namespace["entrypoint"]()
    import tyro

    from relationfield.cli import run_command

    tyro.extras.set_accent_color("bright_yellow")
    run_command(tyro.cli(commands))
    return None
