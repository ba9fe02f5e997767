"""Datasets of multi-view avatars: the on-disk format, importers, checks and previews."""
