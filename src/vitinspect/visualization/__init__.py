"""Figures for people, and the offline page for dvc plots."""
