"""Geometry of the API: request areas (bounded, valid, antimeridian-aware) and footprints as RFC 7946 wants them."""
