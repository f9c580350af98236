"""``unmask serve``: a local web page to unmask a photo and correct each face's map by hand.

``editing`` holds what the page edits (the uploaded photo, its faces and their maps, in a small LRU
cache) and everything about maps (their size on the page, an edit carried onto each face's crop map,
reading an edited one); ``app`` is the HTTP side (routes, upload limits, errors as JSON); ``static/`` is the page.
Needs the ``serve`` extra (starlette, uvicorn); the rest of ``unmask`` never imports this package.
"""
