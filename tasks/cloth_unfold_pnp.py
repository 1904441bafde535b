"""cloth-unfold-pnp: cloth-unfold with DaXBench's pick-and-place macro actions (its Unfold-Cloth setting).

Start and goal as cloth-unfold (folded in half, to be spread flat); an action picks the cloth at
one x-y point and places it at another (tasks/_cloth.py, ClothPickPlaceTask); 3 macro steps per
episode by default (DaXBench's Unfold-Cloth1/3 allow 15: episode_length=15).
"""
from ._cloth import ClothPickPlaceTask
from .cloth_unfold import ClothUnfold


class ClothUnfoldPnP(ClothPickPlaceTask, ClothUnfold):
    name = "cloth-unfold-pnp"
    description = "cloth-unfold with DaXBench's pick-and-place macro actions (pick x-y, place x-y); 3 pick-and-places per episode; reward exp(-10 chamfer)"
