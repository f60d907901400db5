"""Dataset formats (COCO JSON, Pascal VOC XML): one parser each, pure Python, no server state.

Shared by the service's importers, the engine's dataset readers and the simulated oracle.
Boxes come out as ``[x1, y1, x2, y2]`` absolute pixels; COCO ``[x, y, w, h]`` exists only here.
"""

from formats.errors import FormatError

__all__ = ["FormatError"]
