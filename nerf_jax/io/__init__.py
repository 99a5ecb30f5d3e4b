"""Files: checked inputs, owned outputs, images and videos."""
