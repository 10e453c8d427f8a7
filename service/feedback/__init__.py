"""Find more like these: similar items of one stored item, and relevance-feedback search over labelled items.

Both end as one query vector ranked by the image index, through the text search's own filter selection,
ranking and overlap suppression (`service.search`), so a filter means the same thing on every route.
"""
