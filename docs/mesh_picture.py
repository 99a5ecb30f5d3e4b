"""Draws an exported mesh (PLY/OBJ/GLB with vertex colours) as the README's
picture: faces sorted far to near (painter's algorithm), back faces culled,
Lambert shading of the vertex colours, seen from the classic orbit.

  .venv/bin/python export.py --ckpt runs/demo --mesh runs/demo/mesh.ply --components 1
  .venv/bin/python docs/mesh_picture.py runs/demo/mesh.ply docs/mesh.png
"""

import os
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib.collections import PolyCollection  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import trimesh  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nerf_jax.cameras import camera  # pylint: disable=g-import-not-at-top


def main(path: str, out: str) -> None:
  mesh = trimesh.load(path, process=False, force='mesh')
  faces = np.asarray(mesh.faces)
  colours = np.asarray(mesh.visual.vertex_colors[:, :3], np.float64) / 255
  w2c = np.linalg.inv(camera.pose_spherical(35.0, -35.0, 4.6))
  points = np.asarray(mesh.vertices) @ w2c[:3, :3].T + w2c[:3, 3]
  image_xy = 2.3 * points[:, :2] / -points[:, 2:3]
  tri = points[faces]
  normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
  centres = tri.mean(axis=1)
  facing = np.sum(normals * centres, axis=1) < 0  # the camera is at 0
  light = np.array([0.3, 0.6, 0.75]) / np.linalg.norm([0.3, 0.6, 0.75])
  shade = 0.35 + 0.65 * np.clip(normals @ light, 0, 1)
  face_colours = np.clip(colours[faces].mean(axis=1) * shade[:, None], 0, 1)
  order = np.argsort(centres[:, 2])  # farthest (most negative z) first
  order = order[facing[order]]
  fig = plt.figure(figsize=(6.4, 4.8), dpi=100)
  ax = fig.add_axes([0, 0, 1, 1])
  ax.add_collection(PolyCollection(image_xy[faces[order]],
                                   facecolors=face_colours[order],
                                   edgecolors='face', linewidths=0.2))
  ax.set_xlim(-0.95, 0.95)
  ax.set_ylim(-1.0, 0.42)
  ax.set_aspect('equal')
  ax.axis('off')
  fig.savefig(out, facecolor='white')
  print(f'{len(mesh.vertices):,} vertices, {len(faces):,} faces: {out}')


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
