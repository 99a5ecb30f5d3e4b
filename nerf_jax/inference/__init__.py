"""Rendering whole images and sequences from a trained model."""
