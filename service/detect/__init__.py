"""Detection: every item whose score passes a threshold, as tiles and as polygons dissolved from their footprints.

The score is the feedback search's one query vector (rocchio or probe) ranked through the image index; the
threshold is a score, or the score of the N-th best item, since a raw cosine means little to a user.
"""
