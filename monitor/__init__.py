"""Saved searches that watch each newly published index version: state database, matching, feeds, webhooks.

It sits above `index/` (reads versions through `index.store`) and beside `service/`; `index/` never imports it.
"""
