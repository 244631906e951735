"""Parts: their geometry and splits, the 2-D and Blender renderers, users' folders, image decoding, Arrow data sets."""
