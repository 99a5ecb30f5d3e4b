"""Pair selection for large captures (nerf_jax/sfm/retrieval.py,
matching.py) and the stages' progress lines (report.py): neighbours found
by VLAD retrieval, pair counts linear in the number of images, the 'auto'
matcher, and a small shuffled capture registered through retrieval pairs."""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib

import numpy as np
import pytest

from nerf_jax.sfm import colmap
from nerf_jax.sfm import matching
from nerf_jax.sfm import report
from nerf_jax.sfm import retrieval

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _place_descriptors(rng, num_places=5, per_place=4, words=300):
  """Images of ``num_places`` places: each sees 60 % of its place's
  descriptors (with noise) and 40 distractors seen nowhere else. Returns
  (u8[m_i, 128] per image, place of each image), in a shuffled order."""
  places = rng.integers(0, 256, (num_places, words, 128))
  images, labels = [], []
  for place in range(num_places):
    for _ in range(per_place):
      seen = places[place][rng.random(words) < 0.6]
      noisy = seen + rng.normal(0, 12, seen.shape)
      clutter = rng.integers(0, 256, (40, 128))
      images.append(np.clip(np.concatenate([noisy, clutter]), 0, 255
                            ).astype(np.uint8))
      labels.append(place)
  order = rng.permutation(len(images))
  return [images[i] for i in order], np.array(labels)[order]


def test_retrieval_finds_images_of_the_same_place():
  rng = np.random.default_rng(0)
  descriptors, place = _place_descriptors(rng)
  vectors = retrieval.image_vectors(descriptors, seed=1, num_words=16)
  assert vectors.shape == (20, 16 * 128)
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
  near = retrieval.nearest_neighbours(vectors, 3)
  assert near.shape == (20, 3)
  assert (place[near] == place[:, None]).all()  # the 3 others of its place
  assert not (near == np.arange(20)[:, None]).any()


def test_nearest_neighbours_are_the_most_similar_outside_the_window():
  rng = np.random.default_rng(2)
  vectors = rng.normal(size=(40, 8))
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  near = retrieval.nearest_neighbours(vectors, 4, min_index_distance=3)
  sim = vectors @ vectors.T
  for i in range(40):
    allowed = [j for j in range(40) if abs(i - j) >= 3]
    expect = sorted(allowed, key=lambda j: -sim[i, j])[:4]
    assert near[i].tolist() == expect
  # Fewer images than the window leaves: as many as every image has.
  assert retrieval.nearest_neighbours(vectors[:5], 4, 3).shape == (5, 0)
  assert retrieval.nearest_neighbours(vectors[:7], 9, 3).shape == (7, 2)


def test_kmeans_recovers_separated_clusters():
  rng = np.random.default_rng(3)
  centres = rng.normal(0, 10, (4, 16)).astype(np.float32)
  x = np.concatenate([c + rng.normal(0, 0.1, (50, 16)) for c in centres]
                     ).astype(np.float32)
  found = retrieval.kmeans(x, 4, rng)
  match = np.argmin(((found[:, None] - centres[None]) ** 2).sum(-1), axis=1)
  assert sorted(match) == [0, 1, 2, 3]
  means = x.reshape(4, 50, 16).mean(1)
  np.testing.assert_allclose(found, means[match], atol=1e-4)


def test_walkaround_pairs_are_unique_ordered_and_linear():
  assert retrieval.sequential_pairs(5, 2).tolist() == [
      [0, 1], [0, 2], [1, 2], [1, 3], [2, 3], [2, 4], [3, 4]]
  rng = np.random.default_rng(4)
  for n in (30, 300, 3000):
    # Neighbours that repeat sequential pairs, each other and the image.
    near = rng.integers(0, n, (n, 6))
    near[:, 0] = np.arange(n)
    near[:, 1] = np.minimum(np.arange(n) + 1, n - 1)
    pairs = retrieval.walkaround_pairs(n, 5, near)
    assert (pairs[:, 0] < pairs[:, 1]).all()  # no self pair, i < j
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    assert len(pairs) <= n * (5 + 6)
    expect = {(i, j) for i in range(n) for j in range(i + 1, min(i + 6, n))}
    expect |= {tuple(sorted((i, int(j)))) for i in range(n) for j in near[i]
               if j != i}
    assert set(map(tuple, pairs.tolist())) == expect


def test_auto_matcher_and_vocab_tree_options(tmp_path):
  limit = matching.AUTO_EXHAUSTIVE_MAX
  assert matching.choose_matcher('auto', limit) == 'exhaustive'
  assert matching.choose_matcher('auto', limit + 1) == 'retrieval'
  for m in ('exhaustive', 'sequential', 'retrieval'):
    assert matching.choose_matcher(m, 1000) == m
    matching.check_matcher(m, None)
  tree = tmp_path / 'tree.bin'
  tree.write_bytes(b'')
  matching.check_matcher('vocab_tree', str(tree))
  for matcher, path, message in (
      ('vocab_tree', None, 'needs --vocab_tree FILE'),
      ('retrieval', str(tree), 'used only with --matcher vocab_tree'),
      ('vocab_tree', str(tmp_path / 'nope'), 'no such file'),
      ('nearest', None, 'must be one of')):
    with pytest.raises(report.SfmError, match=message):
      matching.check_matcher(matcher, path)


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_progress_lines_with_the_time_left(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(report.time, 'perf_counter', clock)
  log = io.StringIO()
  stages = report.Stages(log)
  with stages.stage('matching', 'retrieval, 300 pairs') as r:
    clock.now = 1.0
    stages.progress(10, 300, 'pairs')  # too soon after the start
    clock.now = report.LOG_INTERVAL
    stages.progress(100, 300, 'pairs')  # a third in 15 s: 30 s left
    clock.now += 1
    stages.progress(200, 300, 'pairs')  # too soon after the last
    clock.now = 45.0
    r['result'] = 'done'
  assert log.getvalue() == ('matching: retrieval, 300 pairs ... 100/300 '
                            'pairs, about 30 s left ... done (45.0 s)\n')
  # A terminal's line is rewritten, and its end covers the longest progress.
  tty = io.StringIO()
  stages = report.Stages(tty, tty=True)
  with stages.stage('features', 'SIFT on 250 images') as r:
    clock.now += report.TTY_INTERVAL
    stages.progress(50, 250, 'images')
    r['result'] = 'ok'
  head = 'features: SIFT on 250 images ...'
  progress = ' 50/250 images, about 2 s left'
  assert tty.getvalue() == (
      f'{head}\r{head}{progress}\r{head}'
      f'{" ok (0.5 s)":<{len(progress)}}\n')
  assert report.duration(5400) == '1.5 h' and report.duration(600) == '10 min'


def _walkaround_module():
  path = ROOT / 'benchmarks' / 'prepare_walkaround.py'
  spec = importlib.util.spec_from_file_location('prepare_walkaround', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_a_shuffled_capture_registers_through_retrieval_pairs(
    tmp_path, monkeypatch):
  # 16 textured photos over 75 degrees around the objects, named in a
  # random order: with one sequential neighbour per image (pairs of random
  # views) the views join up only through the pairs that retrieval finds.
  walk = _walkaround_module()
  photos = tmp_path / 'photos'
  truth = walk.make_photos(str(photos), 16, 160, 120, shuffle=True, laps=1,
                           arc_deg=75.0)
  monkeypatch.setattr(matching, 'OVERLAP', 1)
  models = []
  for neighbours in (3, 0):  # the capture, then a control without retrieval
    monkeypatch.setattr(matching, 'NUM_NEIGHBOURS', neighbours)
    log = io.StringIO()
    rec, stats = colmap.run_colmap(
        str(photos), str(tmp_path / f'work{neighbours}'), matcher='retrieval',
        num_threads=1, stages=report.Stages(log))
    assert 'retrieval: similar images of 16 ...' in log.getvalue()
    assert stats.num_pairs <= 16 * (1 + neighbours)
    models.append(rec)
  assert models[0].num_reg_images() == 16  # from 44 of the 120 pairs
  assert sorted(im.name for im in models[0].images.values()) == sorted(truth)
  assert models[1].num_reg_images() < 8  # 3 here
