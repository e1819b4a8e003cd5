"""The model: CLIP loading (one place, one tower per encoder) and embedding of frames and texts.

    spec.py         which model: ModelSpec, names and presets, input size (no torch needed)
    clip.py         ClipModel: load once per process, embed frames and texts, precisions
    towers.py       building only the tower an encoder needs, weights read one tensor at a time
    query_cache.py  an LRU cache of query embeddings
"""
