"""COLMAP through pycolmap: SIFT features, matching and incremental mapping,
retried while the model disagrees with the matches.

Written against pycolmap 4.2 (``extract_features``, ``match_image_pairs`` /
``match_sequential``, ``incremental_mapping``, ``Image.cam_from_world()`` as
a method, poses held by frames and rigs). pycolmap is imported when first
needed (``import_pycolmap``). Features are extracted a chunk of images at a
time and pairs matched a chunk at a time (``matching``), so that each stage
shows how far it is and the time left; mapping shows the images registered.

A model that contradicts many of the verified pairwise matches
(``pair_agreement``) is mapped again with other seeds (a guard against
wrong poses; ``checks`` holds the others).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
from typing import Optional

import numpy as np

from nerf_jax.sfm import images
from nerf_jax.sfm import matching as matching_lib
from nerf_jax.sfm import report
from nerf_jax.sfm import transforms

# Mapping is retried with other seeds while fewer of the verified matches
# than this agree with the model (see pair_agreement); measured on the fox:
# 0.93-0.95 for right models, 0.82-0.83 for two wrong ones.
MIN_AGREEMENT = 0.9
MAPPING_ATTEMPTS = 3
# The focal length SfM starts from, over the longest image side, for images
# whose EXIF gives none (all video frames): 0.8 is a phone's main camera
# (26 mm equivalent: 26 / 36 = 0.72, more with video stabilisation's crop).
# COLMAP's own default, 1.2, is a 43 mm lens; SfM refines either, but a poor
# start can send incremental mapping down a wrong initial pair (the fox at
# 1600 px does with 1.2 and not with 0.8).
DEFAULT_FOCAL_FACTOR = 0.8
# Images per feature-extraction call: a progress update each (a call costs
# about 0.1 s more than its share of one call for all).
FEATURE_CHUNK = 16


@dataclasses.dataclass
class SfmStats:
  """What COLMAP made of a capture (counts, errors, mapping attempts)."""
  num_images: int = 0
  matcher: str = ''               # the one used ('auto' resolved)
  num_keypoints: int = 0
  num_pairs: int = 0
  num_verified_pairs: int = 0
  num_registered: int = 0
  num_points: int = 0
  reprojection_error: float = float('nan')
  num_models: int = 0
  agreement: float = float('nan')  # see pair_agreement
  attempts: int = 0                # incremental mapping runs


def import_pycolmap():
  """pycolmap, with SIGTERM and SIGINT left to Python's handlers.

  Importing pycolmap installs glog's failure signal handler, which answers
  SIGTERM with a native stack dump (about 25 lines) and kills the process
  before Python can remove what it made (prepare_scene's temporary folder
  beside ``out``). Python's handlers are put back at once, so SIGTERM
  raises in Python as Ctrl-C does, once pycolmap returns or checks for
  signals (feature extraction and mapping do, matching does not: see
  ``child.run_colmap_apart``). The crash signals (SIGSEGV, SIGABRT, ...) keep
  glog's stack dump.

  Raises ImportError when pycolmap is not installed.
  """
  import signal  # pylint: disable=g-import-not-at-top
  import pycolmap  # pylint: disable=g-import-not-at-top
  for signum in (signal.SIGTERM, signal.SIGINT):
    handler = signal.getsignal(signum)  # Python's, whatever glog set since
    if handler is None:  # set outside Python: not ours to restore
      continue
    try:
      signal.signal(signum, handler)
    except ValueError:  # not the main thread: it cannot have handlers
      pass
  return pycolmap


@contextlib.contextmanager
def colmap_logging(verbose: bool):
  """Silences COLMAP's log (glog, on stderr) unless ``verbose``."""
  pycolmap = import_pycolmap()
  old = pycolmap.logging.minloglevel
  pycolmap.logging.minloglevel = 0 if verbose else 3
  try:
    yield
  finally:
    pycolmap.logging.minloglevel = old


def run_colmap(image_dir: str, work_dir: str, *, camera_model: str = 'OPENCV',
               single_camera: bool = True, matcher: str = 'auto',
               vocab_tree: Optional[str] = None,
               focal_factor: float = DEFAULT_FOCAL_FACTOR,
               num_threads: int = -1, seed: int = 0, verbose: bool = False,
               stages: Optional[report.Stages] = None) -> tuple:
  """Features, matching and incremental mapping on every image in a folder.

  Writes ``work_dir/database.db`` and the largest reconstruction to
  ``work_dir/sparse/0``. ``matcher`` is one of ``matching.MATCHERS`` ('auto'
  picks by the number of images); 'vocab_tree' needs ``vocab_tree``, a
  COLMAP vocabulary tree file. Returns (pycolmap.Reconstruction or None,
  SfmStats).
  """
  try:
    pycolmap = import_pycolmap()
  except ImportError:
    raise report.SfmError('pycolmap is not installed (pip install -r '
                          'requirements.txt, or pip install pycolmap)'
                          ) from None
  if camera_model not in transforms.CAMERA_MODELS:
    raise report.SfmError(f'camera model {camera_model!r} is not one of '
                          f'{", ".join(transforms.CAMERA_MODELS)}')
  matching_lib.check_matcher(matcher, vocab_tree)
  stages = stages or report.Stages(None)
  names = sorted((n for n in os.listdir(image_dir) if images.is_image_file(n)),
                 key=images.natural_key)
  stats = SfmStats(num_images=len(names),
                   matcher=matching_lib.choose_matcher(matcher, len(names)))
  os.makedirs(work_dir, exist_ok=True)
  database = os.path.join(work_dir, 'database.db')
  pycolmap.set_random_seed(seed)
  with colmap_logging(verbose):
    _extract_features(pycolmap, database, image_dir, names, camera_model,
                      single_camera, focal_factor, num_threads, stats, stages)
    _match(pycolmap, database, names, vocab_tree, num_threads, seed, stats,
           stages)
    rec = _map_best(pycolmap, database, image_dir, work_dir, num_threads,
                    seed, stats, stages)
    if rec is not None and stats.agreement < MIN_AGREEMENT:
      stages.line(
          f'warning: only {100 * stats.agreement:.0f} % of the verified '
          'matches agree with the best of '
          f'{stats.attempts} reconstructions; poses may be wrong (try more '
          'photos with more overlap, or another --seed)')
  return rec, stats


def _extract_features(pycolmap, database, image_dir, names, camera_model,
                      single_camera, focal_factor, num_threads, stats,
                      stages):
  """SIFT features of ``names`` into the database; sets num_keypoints."""
  n = len(names)
  with stages.stage('features', f'SIFT on {n} images') as r:
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    reader.default_focal_length_factor = focal_factor
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = num_threads
    mode = (pycolmap.CameraMode.SINGLE if single_camera
            else pycolmap.CameraMode.PER_IMAGE)
    for start in range(0, n, FEATURE_CHUNK):
      pycolmap.extract_features(
          database, image_dir, image_names=names[start:start + FEATURE_CHUNK],
          camera_mode=mode, reader_options=reader,
          extraction_options=extraction, device=pycolmap.Device.auto)
      if single_camera and start == 0:  # the later chunks share its camera
        with pycolmap.Database.open(database) as db:
          reader.existing_camera_id = db.read_all_cameras()[0].camera_id
      stages.progress(min(start + FEATURE_CHUNK, n), n, 'images')
    with pycolmap.Database.open(database) as db:
      stats.num_keypoints = int(db.num_keypoints())
      if db.num_images() != n:
        raise report.SfmError(f'COLMAP read {db.num_images()} of the {n} '
                              f'images in {image_dir}')
    r['result'] = f'{stats.num_keypoints} keypoints'


def _match(pycolmap, database, names, vocab_tree, num_threads, seed, stats,
           stages):
  """Matching with geometric verification by ``stats.matcher``; sets
  num_pairs and num_verified_pairs."""
  matcher = stats.matcher
  matching = pycolmap.FeatureMatchingOptions()
  matching.num_threads = num_threads
  pairs = None
  if matcher == 'retrieval':
    with stages.stage('retrieval', f'similar images of {len(names)}') as r:
      pairs = matching_lib.image_pairs(pycolmap, database, matcher, names,
                                       seed)
      r['result'] = f'{len(pairs)} pairs'
  elif matcher == 'exhaustive':
    pairs = matching_lib.image_pairs(pycolmap, database, matcher, names)
  stats.num_pairs = len(pairs) if pairs is not None else -1
  what = f'{stats.num_pairs} pairs' if pairs is not None else 'neighbours'
  with stages.stage('matching', f'{matcher}, {what}') as r:
    if pairs is not None:
      matching_lib.match_pairs(pycolmap, database, names, pairs, matching,
                               stages)
    elif matcher == 'vocab_tree':
      matching_lib.match_vocab_tree(pycolmap, database, vocab_tree, matching,
                                    num_threads)
    else:
      pairing = pycolmap.SequentialPairingOptions()
      pairing.num_threads = num_threads
      pycolmap.match_sequential(database, matching_options=matching,
                                pairing_options=pairing,
                                device=pycolmap.Device.auto)
    with pycolmap.Database.open(database) as db:
      _, inliers = db.read_two_view_geometry_num_inliers()
      if pairs is None:
        stats.num_pairs = int(db.num_matched_image_pairs())
    # Pairs the mapper can use (its min_num_matches, 15 by default).
    min_inliers = pycolmap.IncrementalPipelineOptions().min_num_matches
    stats.num_verified_pairs = int(sum(k >= min_inliers for k in inliers))
    r['result'] = (f'{stats.num_verified_pairs} of {stats.num_pairs} pairs '
                   f'with {min_inliers}+ verified matches')


def _map_best(pycolmap, database, image_dir, work_dir, num_threads, seed,
              stats, stages):
  """Incremental mapping, retried with seed+1, seed+2 while the model
  disagrees with the matches; writes the best model to ``work_dir/sparse/0``
  and returns it (None when mapping made none)."""
  n = stats.num_images
  with stages.stage('mapping', f'incremental, {n} images') as r:
    rec = None
    for attempt in range(MAPPING_ATTEMPTS):
      model, num_models = _map_once(
          pycolmap, database, image_dir, work_dir, num_threads,
          seed + attempt, progress=lambda k: stages.progress(
              min(k + 2, n), n, 'images registered', estimate=False))
      stats.attempts = attempt + 1
      if model is None:
        break
      agreement = pair_agreement(database, model)
      if rec is None or agreement > stats.agreement:
        rec, stats.agreement, stats.num_models = model, agreement, num_models
      if agreement >= MIN_AGREEMENT:
        break
    if rec is not None:
      stats.num_registered = int(rec.num_reg_images())
      stats.num_points = int(rec.num_points3D())
      stats.reprojection_error = float(rec.compute_mean_reprojection_error())
      sparse = os.path.join(work_dir, 'sparse', '0')
      os.makedirs(sparse, exist_ok=True)
      rec.write(sparse)
    r['result'] = f'{stats.num_registered} of {n} images registered'
    if rec is not None:
      r['result'] += (f', {stats.num_points} points, reprojection error '
                      f'{stats.reprojection_error:.2f} px, '
                      f'{100 * stats.agreement:.0f} % of matches agree')
    if stats.num_models > 1:
      r['result'] += f', {stats.num_models} models (kept the largest)'
    if stats.attempts > 1:
      r['result'] += f', {stats.attempts} attempts'
  return rec


def _map_once(pycolmap, database, image_dir, work_dir, num_threads, seed,
              progress=None):
  """One incremental mapping run: (largest model or None, number of models).
  ``progress(k)`` is called as the k-th image after the initial pair is
  registered."""
  options = pycolmap.IncrementalPipelineOptions()
  options.min_model_size = 3
  options.num_threads = num_threads
  options.random_seed = seed
  pycolmap.set_random_seed(seed)
  mapper_dir = os.path.join(work_dir, 'mapper')
  os.makedirs(mapper_dir, exist_ok=True)
  calls = itertools.count(1)

  def next_image():  # pycolmap calls it as each image is registered
    if progress is not None:
      progress(next(calls))

  try:
    models = pycolmap.incremental_mapping(
        database, image_dir, mapper_dir, options,
        next_image_callback=next_image)
  finally:
    shutil.rmtree(mapper_dir, ignore_errors=True)
  rec = max(models.values(), key=lambda m: m.num_reg_images(), default=None)
  return rec, len(models)


def pair_agreement(database: str, rec, max_error_px: float = 4.0,
                   min_inliers: int = 15) -> float:
  """Share of the verified matches that agree with the model's poses.

  For every pair of registered images with at least ``min_inliers`` verified
  matches (two-view geometry from matching, before mapping), the model's
  relative pose and intrinsics give an essential matrix; a match agrees when
  its Sampson error is below ``max_error_px`` pixels. A right model agrees
  with nearly all matches except those of wrongly verified pairs (repeated
  texture); a model that placed part of the images wrongly (a bad initial
  pair) contradicts whole groups of good pairs.

  Returns the share over all such matches (nan when there are none).
  """
  pycolmap = import_pycolmap()
  agree = total = 0
  with pycolmap.Database.open(database) as db:
    pair_ids, geometries = db.read_two_view_geometries()
    keypoints = {}
    for pair_id, geometry in zip(pair_ids, geometries):
      matches = np.asarray(geometry.inlier_matches)
      if len(matches) < min_inliers:
        continue
      ids = pycolmap.pair_id_to_image_pair(pair_id)
      if not all(rec.exists_image(i) and rec.image(i).has_pose for i in ids):
        continue
      for i in ids:
        if i not in keypoints:
          keypoints[i] = db.read_keypoints(i)[:, :2].astype(np.float64)
      im1, im2 = rec.image(ids[0]), rec.image(ids[1])
      x1 = im1.camera.cam_from_img(keypoints[ids[0]][matches[:, 0]])
      x2 = im2.camera.cam_from_img(keypoints[ids[1]][matches[:, 1]])
      cam2_from_cam1 = im2.cam_from_world() * im1.cam_from_world().inverse()
      error = np.asarray(pycolmap.compute_squared_sampson_error(
          x1, x2, pycolmap.essential_matrix_from_pose(cam2_from_cam1)))
      # Sampson error in normalised coordinates: pixels over the focal.
      focal = np.sqrt(im1.camera.mean_focal_length()
                      * im2.camera.mean_focal_length())
      agree += int(np.sum(error < (max_error_px / focal) ** 2))
      total += len(matches)
  return agree / total if total else float('nan')
