"""Feature matching for ``colmap.run_colmap``: which image pairs, then
matching and geometric verification in chunks that report progress.

Matchers (``MATCHERS``):

  exhaustive  every pair, n (n - 1) / 2 of them;
  sequential  pycolmap's: each image with its neighbours in name order
              (10, and 2^k further with its quadratic overlap);
  retrieval   each image with the next ``OVERLAP`` images in name order and
              its ``NUM_NEIGHBOURS`` most similar further ones by a VLAD
              vector of its own SIFT descriptors (``retrieval``): at most
              n (OVERLAP + NUM_NEIGHBOURS) pairs, for ordered and unordered
              photos alike, with no vocabulary file;
  vocab_tree  pycolmap's vocabulary-tree retrieval, with a vocabulary file
              the user gives (COLMAP's are downloaded, never by us);
  auto        exhaustive up to ``AUTO_EXHAUSTIVE_MAX`` images, retrieval
              above (measured: BENCHMARKS.md, "prepare.py at 250 photos").

Exhaustive and retrieval pairs are matched by pycolmap's
``match_image_pairs`` a chunk at a time, sized to take about
``CHUNK_SECONDS``, so that the stage can show the pairs done and the time
left; pycolmap is passed in by the caller (imported on first use).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Optional, Sequence

import numpy as np

from nerf_jax.sfm import report
from nerf_jax.sfm import retrieval

MATCHERS = ('auto', 'exhaustive', 'sequential', 'retrieval', 'vocab_tree')
AUTO_EXHAUSTIVE_MAX = 60    # auto: exhaustive up to this many images
OVERLAP = 10                # retrieval: the next images in name order
NUM_NEIGHBOURS = 10         # retrieval: the most similar other images
CHUNK_SECONDS = 5.0         # matching time per progress update
FIRST_CHUNK = 64            # pairs in the first chunk, to learn the rate


def choose_matcher(matcher: str, num_images: int) -> str:
  """The matcher 'auto' stands for with ``num_images`` images (others are
  returned as they are)."""
  if matcher != 'auto':
    return matcher
  return 'exhaustive' if num_images <= AUTO_EXHAUSTIVE_MAX else 'retrieval'


def check_matcher(matcher: str, vocab_tree: Optional[str]):
  """Raises SfmError for an unknown matcher or a vocabulary file that is
  missing where it is needed (or given where it is not used)."""
  if matcher not in MATCHERS:
    raise report.SfmError(f'--matcher must be one of {", ".join(MATCHERS)}')
  if matcher == 'vocab_tree' and not vocab_tree:
    raise report.SfmError('--matcher vocab_tree needs --vocab_tree FILE '
                          "(a COLMAP vocabulary tree, e.g. from COLMAP's "
                          'website); --matcher retrieval needs none')
  if vocab_tree and matcher != 'vocab_tree':
    raise report.SfmError('--vocab_tree is used only with --matcher '
                          'vocab_tree')
  if vocab_tree and not os.path.isfile(vocab_tree):
    raise report.SfmError(f'--vocab_tree {vocab_tree}: no such file')


def image_pairs(pycolmap, database: str, matcher: str, names: Sequence[str],
                seed: int = 0) -> np.ndarray:
  """The pairs to match, as indices into ``names`` (name order): i64[p, 2]
  with i < j, for 'exhaustive' or 'retrieval'."""
  n = len(names)
  if matcher == 'exhaustive':
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1).astype(np.int64)
  with pycolmap.Database.open(database) as db:
    ids = {im.name: im.image_id for im in db.read_all_images()}
    descriptors = [db.read_descriptors(ids[name]).data for name in names]
  vectors = retrieval.image_vectors(descriptors, seed=seed)
  neighbours = retrieval.nearest_neighbours(
      vectors, NUM_NEIGHBOURS, min_index_distance=OVERLAP + 1)
  return retrieval.walkaround_pairs(n, OVERLAP, neighbours)


def match_pairs(pycolmap, database: str, names: Sequence[str],
                pairs: np.ndarray, matching, stages: report.Stages):
  """Matches and verifies ``pairs`` (indices into ``names``) in chunks of
  about CHUNK_SECONDS, showing the pairs done and the time left.

  COLMAP's pair list splits a line at spaces, so while matching, the
  database names each image by its id ('id7'); the names are put back
  after, whatever happens (the database is only ever read by name after
  matching, by mapping).
  """
  pair_file = os.path.join(os.path.dirname(database), 'pairs.txt')
  pairing = pycolmap.ImportedPairingOptions()
  pairing.match_list_path = pair_file
  with _names_by_id(pycolmap, database, names) as labels:
    done, chunk, start = 0, FIRST_CHUNK, time.perf_counter()
    while done < len(pairs):
      part = pairs[done:done + chunk]
      with open(pair_file, 'w') as f:
        f.writelines(f'{labels[i]} {labels[j]}\n' for i, j in part)
      pycolmap.match_image_pairs(database, matching_options=matching,
                                 pairing_options=pairing,
                                 device=pycolmap.Device.auto)
      done += len(part)
      stages.progress(done, len(pairs), 'pairs')
      rate = done / max(time.perf_counter() - start, 1e-3)  # pairs a second
      chunk = max(FIRST_CHUNK, int(rate * CHUNK_SECONDS))
  os.remove(pair_file)


@contextlib.contextmanager
def _names_by_id(pycolmap, database: str, names: Sequence[str]):
  """A context in which the database's images are named 'id<image id>';
  yields those labels in the order of ``names``."""
  with pycolmap.Database.open(database) as db:
    old = {im.image_id: im.name for im in db.read_all_images()}
  _rename(pycolmap, database, lambda image_id: f'id{image_id}')
  try:
    by_name = {name: f'id{i}' for i, name in old.items()}
    yield [by_name[name] for name in names]
  finally:
    _rename(pycolmap, database, old.get)


def _rename(pycolmap, database: str, new_name):
  """Renames every image of the database to ``new_name(image_id)``."""
  with pycolmap.Database.open(database) as db:
    for image in db.read_all_images():
      image.name = new_name(image.image_id)
      db.update_image(image)


def match_vocab_tree(pycolmap, database: str, vocab_tree: str, matching,
                     num_threads: int):
  """pycolmap's vocabulary-tree matching with the user's vocabulary file."""
  pairing = pycolmap.VocabTreePairingOptions()
  pairing.vocab_tree_path = vocab_tree
  pairing.num_threads = num_threads
  pycolmap.match_vocabtree(database, matching_options=matching,
                           pairing_options=pairing,
                           device=pycolmap.Device.auto)
