"""The interactive web viewer (viser)."""
