"""The PyTorch learner (never imports taichi)."""
