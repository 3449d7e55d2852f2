"""Pipelines: plain functions over a loaded Platform. The CLI, UI and API are thin over these."""
