"""Files: checked inputs, owned outputs, images."""
