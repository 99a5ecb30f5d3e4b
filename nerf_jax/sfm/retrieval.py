"""Which image pairs to match in a large capture: neighbours in file order
plus the most similar images by a global descriptor (pure NumPy).

Exhaustive matching tries all n (n - 1) / 2 pairs, which grows past an
hour for a few hundred photos on a laptop. ``walkaround_pairs`` keeps a
number of pairs linear in n: each image with the next ``overlap`` images in
file order (videos and phone captures are ordered) and with its
``num_neighbours`` most similar images further away in that order (the
loop closures of a walk-around, and all the pairs of unordered photos).

Similarity is the cosine of VLAD vectors (Jegou et al. 2010, "Aggregating
local descriptors into a compact image representation"): k-means on a
subset of the capture's own SIFT descriptors gives ``num_words`` visual
words; an image's vector is the sum of its descriptors' residuals to their
nearest word, per word, with signed square roots and per-word and global L2
normalisation (Arandjelovic and Zisserman 2013, "All about VLAD"). No
vocabulary file is needed: the words are learnt from the capture itself.

Symbols: n images; d = 128, the SIFT descriptor length; k words.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

NUM_WORDS = 64               # VLAD's k-means words
SAMPLE_PER_IMAGE = 128       # descriptors per image that k-means learns from
MAX_SAMPLES = 32768          # of all images together
KMEANS_ITERATIONS = 12
_BLOCK = 4096                # rows per block of a distance matrix (memory)


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """Index of the nearest centre of each row: i64[m] for x f32[m, d],
  centres f32[k, d] (squared Euclidean distance, in row blocks)."""
  c2 = np.sum(centres * centres, axis=1)
  out = np.empty(len(x), np.int64)
  for start in range(0, len(x), _BLOCK):
    block = x[start:start + _BLOCK]
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin.
    out[start:start + _BLOCK] = np.argmin(c2 - 2.0 * block @ centres.T, axis=1)
  return out


def kmeans(x: np.ndarray, num_words: int, rng: np.random.Generator,
           iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
  """Lloyd's k-means from k-means++ seeds (Arthur and Vassilvitskii 2007).

  Args:
    x: f32[m, d], the samples (m >= num_words).
    num_words: k, the number of centres.
    rng: picks the seeds.
    iterations: assignment and update rounds.

  Returns:
    f32[k, d], the centres; a centre that loses all its samples keeps its
    place.
  """
  centres = _seeds(x, num_words, rng)
  for _ in range(iterations):
    label = _nearest(x, centres)
    sums = np.zeros_like(centres)
    np.add.at(sums, label, x)
    counts = np.bincount(label, minlength=num_words)
    filled = counts > 0
    centres[filled] = sums[filled] / counts[filled, None]
  return centres


def _seeds(x: np.ndarray, num_words: int,
           rng: np.random.Generator) -> np.ndarray:
  """k-means++ seeds: each a row drawn with probability proportional to its
  squared distance from the nearest seed so far: f32[k, d]."""
  seeds = [x[rng.integers(len(x))]]
  dist = np.sum((x - seeds[0]) ** 2, axis=1)
  for _ in range(1, num_words):
    total = float(dist.sum())
    pick = (rng.choice(len(x), p=dist / total) if total > 0
            else rng.integers(len(x)))
    seeds.append(x[pick])
    dist = np.minimum(dist, np.sum((x - x[pick]) ** 2, axis=1))
  return np.stack(seeds).astype(np.float32)


def vlad(descriptors: np.ndarray, words: np.ndarray) -> np.ndarray:
  """One image's VLAD vector.

  Args:
    descriptors: f32[m, d], the image's descriptors (m may be 0).
    words: f32[k, d], the visual words.

  Returns:
    f32[k * d], unit length (all zeros for an image without descriptors).
  """
  k, d = words.shape
  residual = np.zeros((k, d), np.float32)
  if len(descriptors):
    label = _nearest(descriptors, words)
    np.add.at(residual, label, descriptors - words[label])
  # Signed square root tames bursts of repeated texture ("All about VLAD").
  residual = np.sign(residual) * np.sqrt(np.abs(residual))
  norms = np.linalg.norm(residual, axis=1, keepdims=True)
  residual = residual / np.maximum(norms, 1e-12)  # intra-normalisation
  flat = residual.reshape(-1)
  return flat / max(float(np.linalg.norm(flat)), 1e-12)


def image_vectors(descriptors: Sequence[np.ndarray], seed: int = 0,
                  num_words: int = NUM_WORDS) -> np.ndarray:
  """VLAD vectors of a capture's images, words learnt from the capture.

  Args:
    descriptors: per image, f32[m_i, d] or u8[m_i, d] SIFT descriptors (any
      common scale: each row is normalised to unit length).
    seed: seeds the descriptor sample and k-means' start.
    num_words: k; fewer when the capture has fewer descriptors.

  Returns:
    f32[n, k * d], unit rows (zero rows for images without descriptors).
  """
  rng = np.random.default_rng(seed)
  unit = []
  for x in descriptors:
    x = np.asarray(x, np.float32)
    unit.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True),
                               1e-12))
  per_image = min(SAMPLE_PER_IMAGE, max(1, MAX_SAMPLES // max(len(unit), 1)))
  sample = np.concatenate(
      [x[rng.choice(len(x), min(per_image, len(x)), replace=False)]
       for x in unit if len(x)] or [np.zeros((0, 128), np.float32)])
  num_words = min(num_words, len(sample))
  if num_words == 0:
    return np.zeros((len(unit), 0), np.float32)
  words = kmeans(sample, num_words, rng)
  return np.stack([vlad(x, words) for x in unit])


def nearest_neighbours(vectors: np.ndarray, num_neighbours: int,
                       min_index_distance: int = 1) -> np.ndarray:
  """Each image's most similar images by cosine similarity.

  Args:
    vectors: f32[n, D], unit rows.
    num_neighbours: how many per image (fewer when fewer images qualify).
    min_index_distance: only images j with |i - j| >= this (1: all but
      the image itself; overlap + 1 skips the sequential neighbours).

  Returns:
    i64[n, m], m = min(num_neighbours, qualifying images), most similar
    first.
  """
  n = len(vectors)
  m = max(0, min(num_neighbours, n - min(n, 2 * min_index_distance - 1)))
  out = np.zeros((n, m), np.int64)
  if m == 0:
    return out
  index = np.arange(n)
  for start in range(0, n, _BLOCK):
    rows = index[start:start + _BLOCK]
    sim = vectors[rows] @ vectors.T
    near = np.abs(rows[:, None] - index[None, :]) < min_index_distance
    sim = np.where(near, -np.inf, sim)
    top = np.argpartition(-sim, m - 1, axis=1)[:, :m]
    order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1,
                       kind='stable')
    out[rows] = np.take_along_axis(top, order, axis=1)
  return out


def sequential_pairs(n: int, overlap: int) -> np.ndarray:
  """Each image with the next ``overlap`` images: i64[m, 2], rows (i, j)
  with i < j <= i + overlap, sorted."""
  i, step = np.meshgrid(np.arange(n), np.arange(1, overlap + 1),
                        indexing='ij')
  pairs = np.stack([i.ravel(), (i + step).ravel()], axis=1)
  return pairs[pairs[:, 1] < n]


def walkaround_pairs(n: int, overlap: int,
                     neighbours: np.ndarray) -> np.ndarray:
  """Sequential pairs and retrieval pairs together, each pair once.

  Args:
    n: number of images, in file order.
    overlap: each image is paired with the next ``overlap`` images.
    neighbours: i64[n, m], image i's retrieved images (any order).

  Returns:
    i64[p, 2], unique rows (i, j) with i < j, sorted; p <= n (overlap + m).
  """
  rows = np.repeat(np.arange(n), neighbours.shape[1])
  retrieved = np.stack([rows, neighbours.reshape(-1)], axis=1)
  pairs = np.concatenate([sequential_pairs(n, overlap), retrieved])
  pairs = np.sort(pairs, axis=1)  # (j, i) and (i, j) are the same pair
  pairs = pairs[pairs[:, 0] != pairs[:, 1]]
  return np.unique(pairs, axis=0)
