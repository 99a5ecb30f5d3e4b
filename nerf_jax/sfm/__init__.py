"""Photos or a video to a posed scene (COLMAP through pycolmap)."""
