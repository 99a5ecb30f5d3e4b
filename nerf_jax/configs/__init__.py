"""The built-in configs, shipped with the package.

``<name>.py`` defines ``get_config()`` returning an
``ml_collections.ConfigDict``; ``base.py`` holds every field with its default
and meaning, and each named config (demo, tiny, tiny_fast, keras_example,
lego, lego_fast, llff, llff_fast, fox) changes what it needs. The command
lines find them by name through this package (``--config tiny.py``), and a
run directory's saved config is merged onto ``base.get_config()``.
"""
