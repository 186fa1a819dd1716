"""Pixel data: decoding frames and rendering previews (numpy + pillow)."""
