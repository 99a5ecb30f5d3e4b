"""Rendering math: sampling along rays, occupancy marching, compositing."""
