"""Bundled meshes (.obj) and robot models (.xml) (imported as ``mbmix_taichi.assets``)."""
from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent


def path(name: str, ext: str = "") -> Path | None:
    """The bundled file ``name`` (``ext``, e.g. ".xml", is appended when ``name`` has no such
    ending), or None when there is none."""
    for cand in (FOLDER / name, FOLDER / (name + ext)) if ext and not name.endswith(ext) else (FOLDER / name,):
        if cand.is_file():
            return cand
    return None


def names(ext: str) -> list[str]:
    """Stems of the bundled files ending in ``ext`` (e.g. ".obj")."""
    return sorted(p.stem for p in FOLDER.glob(f"*{ext}"))
