"""Saved searches over HTTP: API keys, the searches' vectors, their matches and Atom feeds (state in monitor/)."""
