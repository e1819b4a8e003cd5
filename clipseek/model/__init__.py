"""The model: CLIP loading (one place, one tower per encoder) and embedding of frames and texts.

    spec.py         which model: ModelSpec, names and presets, input size (no torch needed)
    clip.py         ClipModel: load once per process, embed frames and texts, precisions
    towers.py       building only the tower an encoder needs, weights read one tensor at a time
    query_cache.py  an LRU cache of query embeddings
    tokenize.py     open_clip's tokenizers without torch (the same token ids, as numpy)
    onnx_text.py    the text tower on ONNX Runtime (no torch in the text encoder), its export cache
    onnx_image.py   the image tower on ONNX Runtime, for picture queries in that text encoder
    onnx_export.py  the child process that exports a tower to ONNX (with torch)
"""
