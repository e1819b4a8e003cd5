"""Media: what clipseek reads from video files, with ffmpeg and PyAV, and nothing else.

    roots.py        the media folders a Flow may read (paths resolved, then checked)
    ffmpeg_cmd.py   ffprobe/ffmpeg argv built by pure functions; parsing ffprobe's answer
    video.py        probe, content hash, streaming decode at the encoder's size, thumbnails
    keyscan.py      the keyframe-guided decoder (decodes between keyframes only where something happens)
    cuts.py         the cut detectors (adaptive content test, colour test) on small frames
    shots.py        shots and the frames chosen in them (independent of how a video is split in ranges)
    scan.py         one time range: decode what is needed, find shots, choose frames
    imaging.py      letterboxing and JPEG helpers
    hardware.py     hardware decode (ffmpeg -hwaccel cuda) chosen when present, with a fallback
"""
