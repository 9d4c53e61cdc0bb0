"""Telling relatives of changes: composing alerts, the dispatcher and its pacing, the digest, delivery reports."""
