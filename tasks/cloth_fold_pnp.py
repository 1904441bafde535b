"""cloth-fold-pnp: cloth-fold with DaXBench's pick-and-place macro actions (its Fold-Cloth setting).

Start and goal as cloth-fold (a flat cloth, to be folded in half over x = x_mid); an action picks
the cloth at one x-y point and places it at another (tasks/_cloth.py, ClothPickPlaceTask); 3
macro steps per episode (DaXBench's Fold-Cloth1; episode_length=4 for Fold-Cloth3).
"""
from ._cloth import ClothPickPlaceTask
from .cloth_fold import ClothFold


class ClothFoldPnP(ClothPickPlaceTask, ClothFold):
    name = "cloth-fold-pnp"
    description = "cloth-fold with DaXBench's pick-and-place macro actions (pick x-y, place x-y); 3 pick-and-places per episode; reward exp(-10 chamfer)"
