"""Exporting a trained field: meshes, point clouds, depth maps."""
