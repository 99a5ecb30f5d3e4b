"""notebooks/colab.ipynb runs top to bottom on a CPU kernel (nbclient)."""

from __future__ import annotations

import base64
import json
import os
import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / 'notebooks' / 'colab.ipynb'

# tiny.py and tiny_fast.py as they are (the fast model's grids smaller; 4
# hash levels rather than 16: each level is a Python loop in the compiled
# programs, and 12 fewer save about 10 s of compilation), on a small
# built-in scene (no download) and for a few steps.
OVERRIDES = {
    'data.kind': 'procedural', 'data.width': 16, 'data.height': 16,
    'data.num_train': 8, 'data.num_val': 1, 'data.num_test': 1,
    'train.batch_rays': 256, 'train.log_every': 10, 'eval.every': 0,
    'eval.max_views': 1, 'checkpoint.every': 1000,
    'model.fast.levels': 4, 'model.fast.log2_table': 12,
    'model.fast.max_resolution': 64,
    'model.fast.occupancy_resolution': 16,
}


@pytest.mark.slow
def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch):
  runs = tmp_path / 'runs'
  for name, value in dict(STEPS='8', FRAMES='3', RUNS=str(runs),
                          OVERRIDES=json.dumps(OVERRIDES)).items():
    monkeypatch.setenv(f'NERF_JAX_NOTEBOOK_{name}', value)
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.setenv('NERF_JAX_CACHE', str(tmp_path / 'cache'))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  assert not any(cell.get('outputs') for cell in notebook.cells
                 if cell.cell_type == 'code'), 'commit the notebook without outputs'
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(NOTEBOOK.parent)}}
                          ).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code'
             for o in cell.outputs]
  text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert 'device(s): cpu' in text.lower()
  assert text.count('held-out PSNR') == 2
  for kind in ('tiny', 'tiny_fast'):
    run = runs / f'colab_{kind}'
    assert (run / 'checkpoints' / '8').is_dir(), kind
    assert (run / 'render' / 'orbit_side.mp4').stat().st_size > 0
  # Previews and the progress plot shown as PNGs; the videos embedded.
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) >= 3
  assert base64.b64decode(images[0]['data']['image/png'])[:4] == b'\x89PNG'
  videos = [o['data']['text/html'] for o in outputs
            if 'text/html' in o.get('data', {}) and '<video' in o['data']['text/html']]
  assert len(videos) == 2 and all('base64' in v for v in videos)
