"""Procedural head-and-shoulders avatars, rendered headless with moderngl, written as multi-view datasets."""
