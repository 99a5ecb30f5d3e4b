"""Cameras: intrinsics, ray casting, lens distortion, NDC, poses, paths."""
