"""What a viewer panel needs from nerfstudio's viewer: the viewer hook, a status line, redrawable scene groups.

:class:`PanelBase` is an ``nn.Module`` without parameters. nerfstudio's viewer finds its GUI elements
(``ViewerElement`` attributes of every ``nn.Module`` reachable from the pipeline) and its ``ViewerControl``
on its own and installs them under "Custom Elements"; the control's ``_setup`` hands over the viewer, which
attaches the pipeline. Until then the panel has no :class:`relationfield.query.FieldQuery`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement
from torch import nn
from viser import ViserServer

from relationfield.query import FieldQuery

SCENE_ROOT = "/relationfield"
"""Scene-tree folder of everything the panel draws in the 3D view."""


class ViewerMarkdown(ViewerElement[str]):
    """Read-only markdown in the GUI panel (status messages); updating it triggers no callback."""

    def __init__(self, name: str, content: str = "") -> None:
        super().__init__(name)
        self._content = content

    def _create_gui_handle(self, viser_server: ViserServer) -> None:
        self.gui_handle = viser_server.gui.add_markdown(self._content)  # type: ignore[assignment]

    def install(self, viser_server: ViserServer) -> None:
        self._create_gui_handle(viser_server)

    @property
    def content(self) -> str:
        """The current text."""
        return self._content

    @content.setter
    def content(self, text: str) -> None:
        self._content = text
        if self.gui_handle is not None:
            self.gui_handle.content = text  # type: ignore[union-attr]


class _ViewerHook(ViewerControl):
    """nerfstudio calls ``_setup`` with the viewer once the GUI is built; pass it on."""

    def __init__(self, on_setup: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_setup = on_setup

    def _setup(self, viewer: Any) -> None:
        super()._setup(viewer)
        self._on_setup(viewer)


class PanelBase(nn.Module):
    """A panel attached to a pipeline (and to nerfstudio's viewer, when there is one), with a status line."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self.status = ViewerMarkdown("Status", status)
        self.viewer_hook = _ViewerHook(self._setup_from_viewer)
        # No attribute may hold the pipeline or the model directly: nn.Module would register it as a
        # submodule (a cycle through the model) and the viewer's discovery would walk into it.
        self.viewer: Any | None = None
        self.run_dir: Path | None = None
        self._query: FieldQuery | None = None
        self._scene_handles: dict[str, list[Any]] = {}

    def attach(self, pipeline: Any, viewer: Any | None = None, run_dir: Path | None = None) -> None:
        """Answer queries on ``pipeline``, draw in ``viewer``'s 3D view; ``run_dir`` defaults to the viewer's."""
        self._query = FieldQuery(pipeline)
        self.viewer = viewer
        if viewer is not None and getattr(self.viewer_hook, "viewer", None) is not viewer:
            ViewerControl._setup(self.viewer_hook, viewer)  # pointer callbacks need the viser server
        if run_dir is None and viewer is not None and getattr(viewer, "log_filename", None) is not None:
            run_dir = Path(viewer.log_filename).parent
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._scene_handles = {}

    def _setup_from_viewer(self, viewer: Any) -> None:
        self.attach(viewer.pipeline, viewer)

    @property
    def attached(self) -> bool:
        """Whether a pipeline is attached (only then are outputs added)."""
        return self._query is not None

    @property
    def query(self) -> FieldQuery | None:
        """The attached pipeline's :class:`FieldQuery` (it loads encoders only when a query is typed)."""
        return self._query

    def say(self, message: str, attention: bool = False) -> None:
        """Show ``message`` in the status line (and as a notification when it needs attention)."""
        self.status.content = f"**RelationField:** {message}"
        CONSOLE.log(f"[relationfield viewer] {message}")
        server = self._server()
        if attention and server is not None:
            for client in server.get_clients().values():
                client.add_notification(title="RelationField", body=message, auto_close=8000)

    def _server(self) -> ViserServer | None:
        return getattr(self.viewer, "viser_server", None)

    def _require_query(self) -> FieldQuery | None:
        query = self.query
        if query is None:
            self.say("No trained pipeline is attached to the viewer controls yet.", attention=True)
        return query

    def _replace_drawing(self, group: str, draw: Callable[[ViserServer, str], list[Any]]) -> None:
        """Remove what was drawn under ``group`` and draw it again (no-op without a viser server)."""
        server = self._server()
        if server is None:
            return
        for handle in self._scene_handles.pop(group, []):
            handle.remove()
        self._scene_handles[group] = draw(server, f"{SCENE_ROOT}/{group}")
